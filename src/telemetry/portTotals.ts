// The per-port families summed per protocol, for `metricsPerServicePort: false`: a fixed handful
// of series however many ports a node proxies (at 10,000 ports the per-port text is ~100,000
// series a scrape). Same family names and help, `protocol` as the only port label.
//
// A counter must never go down, or Prometheus reads a reset and rate() jumps. A sum over the
// ports that exist now would go down each time a port is removed, so a port that disappears, or
// whose counters go back (a new listener for the same id), leaves its last scraped counts in the
// sum. What it counted between that scrape and its removal is not seen, as with per-port series.
import type { ProxyPortStats } from '../proxy/manager.ts';
import { formatValue, portSamples, type PortSample } from './portMetrics.ts';

type Protocol = ProxyPortStats['protocol'];
const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP'];

/** A protocol's samples with their series names (`name{protocol="TCP",reason="limit"}`). */
interface SampleTable {
  samples: readonly PortSample[];
  series: readonly string[];
  /** Counts left by ports that are gone, per sample (gauges stay 0). */
  retired: Float64Array;
}

interface LastScrape {
  protocol: Protocol;
  /** The port's samples at its last scrape, in table order. */
  values: Float64Array;
  scrape: number;
}

export class PortTotals {
  readonly #tables = new Map<Protocol, SampleTable>(
    PROTOCOLS.map((protocol) => {
      const samples = portSamples(protocol);
      const series = samples.map((s) => `${s.family}{protocol="${protocol}"${s.extraLabels}}`);
      return [protocol, { samples, series, retired: new Float64Array(samples.length) }];
    }),
  );
  /** Every port's samples at the last scrape, by port id (arrays reused from scrape to scrape). */
  readonly #last = new Map<string, LastScrape>();
  #scrapes = 0;

  /** The summed families in the text format, for the ports in `stats` and those seen before. */
  text(stats: readonly ProxyPortStats[]): string {
    const scrape = ++this.#scrapes;
    const sums = new Map<Protocol, Float64Array>();
    for (const s of stats) {
      const table = this.#tables.get(s.protocol)!;
      let sum = sums.get(s.protocol);
      if (sum === undefined) sums.set(s.protocol, (sum = new Float64Array(table.samples.length)));
      let last = this.#last.get(s.id);
      if (last === undefined || last.protocol !== s.protocol) {
        if (last !== undefined) this.#retire(last);
        last = { protocol: s.protocol, values: new Float64Array(table.samples.length), scrape };
        this.#last.set(s.id, last);
      } else {
        let wentBack = false;
        for (let i = 0; i < table.samples.length; i++) {
          if (table.samples[i]!.type === 'counter' && table.samples[i]!.pick(s) < last.values[i]!) wentBack = true;
        }
        if (wentBack) this.#retire(last);
      }
      last.scrape = scrape;
      for (let i = 0; i < table.samples.length; i++) {
        const v = table.samples[i]!.pick(s);
        last.values[i] = v;
        sum[i]! += v;
      }
    }
    for (const [id, last] of this.#last) {
      if (last.scrape === scrape) continue;
      this.#retire(last);
      this.#last.delete(id);
    }
    return this.#format(sums);
  }

  /** Adds a gone (or replaced) port's counters to the retired sums. */
  #retire(last: LastScrape): void {
    const table = this.#tables.get(last.protocol)!;
    table.samples.forEach((sample, i) => {
      if (sample.type === 'counter') table.retired[i]! += last.values[i]!;
    });
  }

  /**
   * Families in the per-port order, TCP before UDP within one. A protocol is written when it
   * has a port now; with none, only its counters are, if gone ports left counts.
   */
  #format(sums: ReadonlyMap<Protocol, Float64Array>): string {
    const lines = new Map<string, string>();
    for (const protocol of PROTOCOLS) {
      const table = this.#tables.get(protocol)!;
      const sum = sums.get(protocol);
      const everCounted = table.retired.some((v) => v !== 0);
      if (sum === undefined && !everCounted) continue;
      table.samples.forEach((sample, i) => {
        if (sum === undefined && sample.type === 'gauge') return;
        const value = (sum?.[i] ?? 0) + table.retired[i]!;
        lines.set(sample.family, `${lines.get(sample.family) ?? sample.header}${table.series[i]} ${formatValue(value)}\n`);
      });
    }
    return [...lines.values()].join('');
  }
}
