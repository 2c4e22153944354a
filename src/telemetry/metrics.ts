// Prometheus metrics (prom-client), on a registry of our own. Proxy counters are read from the
// proxy at scrape time, so the hot path only bumps plain numbers.
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { ProxyPortStats, TcpPortStats, UdpPortStats } from '../proxy/manager.ts';

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
}

/**
 * A metric whose samples are computed at scrape time and then dropped. prom-client's Counter and
 * Gauge keep every label set they were given until the next reset, which for the per-port
 * metrics is one object and one key string per port per metric (10,000 ports × 17 metrics).
 * The registry only calls get() (and reset()), so this is all a registered metric needs.
 */
class ScrapeTimeMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly aggregator = 'sum';
  readonly #samples: () => Sample[];

  constructor(registry: Registry, name: string, help: string, type: 'counter' | 'gauge', samples: () => Sample[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.#samples = samples;
    registry.registerMetric(this as unknown as Metric);
  }

  get(): { name: string; help: string; type: 'counter' | 'gauge'; aggregator: 'sum'; values: Sample[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.#samples() };
  }

  reset(): void {}
}

/**
 * f's result, shared by every call until pending microtasks have run. The registry calls get()
 * on all its metrics synchronously, one after another, before it awaits any of them, so one
 * scrape computes the proxy stats once and the next scrape computes them afresh.
 */
export function oncePerScrape<T>(f: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (cached === undefined) {
      cached = { value: f() };
      queueMicrotask(() => {
        cached = undefined;
      });
    }
    return cached.value;
  };
}

export interface AgentMetrics {
  registry: Registry;
  syncDuration: Histogram;
  syncErrors: Counter;
  rulesWritten: Counter;
  chainOrderRepairs: Counter;
  lastSyncSuccess: Gauge;
}

export function createMetrics(proxyStats: () => readonly ProxyPortStats[], workerRestarts: () => number = () => 0): AgentMetrics {
  const registry = new Registry();
  const isTcp = (s: ProxyPortStats): s is TcpPortStats => s.protocol === 'TCP';
  const isUdp = (s: ProxyPortStats): s is UdpPortStats => s.protocol === 'UDP';
  const anyPort = (_s: ProxyPortStats): _s is ProxyPortStats => true;
  // Every per-port metric of one scrape reads the same stats (one pass over 10,000 ports, not one per metric).
  // Help texts stay ASCII: one other character would make the whole scrape text a two-byte string.
  const stats = oncePerScrape(proxyStats);
  const portLabels = (s: ProxyPortStats, extra?: Record<string, string>): Labels => ({ service_port: s.portName, protocol: s.protocol, ...extra });
  /** One sample per port that `only` admits: TCP ports unless told otherwise, so TCP counters type-check. */
  const perPort = <S extends ProxyPortStats = TcpPortStats>(
    name: string,
    help: string,
    pick: (s: S) => number,
    kind: 'counter' | 'gauge',
    only: (s: ProxyPortStats) => s is S = isTcp as (s: ProxyPortStats) => s is S,
  ) =>
    new ScrapeTimeMetric(registry, name, help, kind, () => {
      const rows: Sample[] = [];
      for (const s of stats()) if (only(s)) rows.push({ labels: portLabels(s), value: pick(s) });
      return rows;
    });
  perPort('edgeproxy_connections_accepted_total', 'Client connections accepted per service port.', (s) => s.counters.accepted, 'counter');
  perPort('edgeproxy_connections_active', 'Open proxied connections per service port.', (s) => s.counters.active, 'gauge');
  perPort('edgeproxy_connections_failed_total', 'Client connections refused: no usable backend or every dial failed.', (s) => s.counters.failed, 'counter');
  perPort('edgeproxy_dial_errors_total', 'Backend dial attempts that failed.', (s) => s.counters.dialErrors, 'counter');
  perPort('edgeproxy_bytes_in_total', 'Bytes received from clients.', (s) => s.counters.bytesIn, 'counter', anyPort);
  perPort('edgeproxy_bytes_out_total', 'Bytes received from backends and sent to clients.', (s) => s.counters.bytesOut, 'counter', anyPort);
  perPort('edgeproxy_usable_backends', 'Backends traffic can go to (ready, else serving).', (s) => s.usableBackends.length, 'gauge', anyPort);
  perPort('edgeproxy_endpoint_ejections_total', 'Endpoints ejected by passive health after a failed dial.', (s) => s.counters.ejections, 'counter');
  perPort('edgeproxy_connections_idle_closed_total', 'Connections closed by proxy.tcpIdleTimeout.', (s) => s.counters.idleClosed, 'counter');
  new ScrapeTimeMetric(
    registry,
    'edgeproxy_connections_refused_total',
    'Clients reset on arrival, by reason (limit: proxy.maxConnectionsPerPort or proxy.maxConnections reached).',
    'counter',
    () => stats().filter(isTcp).map((s) => ({ labels: portLabels(s, { reason: 'limit' }), value: s.counters.refused })),
  );

  // UDP flows (src/proxy/udpPort.ts); bytes are in edgeproxy_bytes_{in,out}_total with protocol="UDP".
  perPort('edgeproxy_udp_flows_active', 'Open UDP flows (client address:port to endpoint, one socket each).', (s) => s.counters.flowsActive, 'gauge', isUdp);
  perPort('edgeproxy_udp_flows_created_total', 'UDP flows opened.', (s) => s.counters.flowsCreated, 'counter', isUdp);
  perPort('edgeproxy_udp_flows_expired_total', 'UDP flows closed after udp.idleTimeout without a datagram.', (s) => s.counters.flowsExpired, 'counter', isUdp);
  perPort('edgeproxy_udp_flow_evictions_total', 'UDP flows evicted (least recently used) at udp.maxFlowsPerPort.', (s) => s.counters.evictions, 'counter', isUdp);
  perPort('edgeproxy_udp_flows_rerouted_total', 'UDP flows closed because their endpoint was removed; the next datagram re-picks.', (s) => s.counters.flowsRerouted, 'counter', isUdp);
  perPort('edgeproxy_udp_upstream_errors_total', 'UDP upstream socket errors (e.g. ICMP port unreachable); the flow is closed.', (s) => s.counters.upstreamErrors, 'counter', isUdp);
  const udpByLabel = (name: string, help: string, label: string, values: Record<string, (s: UdpPortStats) => number>) =>
    new ScrapeTimeMetric(registry, name, help, 'counter', () => {
      const rows: Sample[] = [];
      for (const s of stats()) {
        if (!isUdp(s)) continue;
        for (const [value, pick] of Object.entries(values)) rows.push({ labels: portLabels(s, { [label]: value }), value: pick(s) });
      }
      return rows;
    });
  udpByLabel('edgeproxy_udp_datagrams_total', 'UDP datagrams: in from clients, out from endpoints to clients.', 'direction', {
    in: (s) => s.counters.datagramsIn,
    out: (s) => s.counters.datagramsOut,
  });
  udpByLabel('edgeproxy_udp_datagrams_dropped_total', 'UDP datagrams dropped: no usable endpoint, or lost in the proxy (send failed, connect queue full).', 'reason', {
    no_backend: (s) => s.counters.drops,
    send_failed: (s) => s.counters.sendErrors,
  });

  new ScrapeTimeMetric(registry, 'edgeproxy_worker_restarts_total', 'TCP proxy worker threads restarted after they died (proxy.workers > 1).', 'counter', () => [
    { labels: {}, value: workerRestarts() },
  ]);

  return {
    registry,
    syncDuration: new Histogram({
      name: 'edgeproxy_sync_duration_seconds',
      help: 'Time to plan and apply one rule sync.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    syncErrors: new Counter({ name: 'edgeproxy_sync_errors_total', help: 'Rule syncs that failed.', registers: [registry] }),
    rulesWritten: new Counter({ name: 'edgeproxy_rules_written_total', help: 'Rules written by iptables-restore.', registers: [registry] }),
    chainOrderRepairs: new Counter({
      name: 'edgeproxy_chain_order_repairs_total',
      help: 'Times our jump was missing or behind KUBE-SERVICES and was put back first.',
      registers: [registry],
    }),
    lastSyncSuccess: new Gauge({ name: 'edgeproxy_last_sync_success_timestamp_seconds', help: 'Unix time of the last successful sync.', registers: [registry] }),
  };
}

/** What a watching source reports about itself (the Kubernetes source: one per resource). */
export interface SourceStatus {
  /** e.g. "kubernetes/services". */
  source: string;
  /** The initial list is in the store. */
  synced: boolean;
  /** The watch is down: the agent serves the last known state. */
  stale: boolean;
  staleSince?: number;
  /** ms epoch of the last list, event or bookmark. */
  lastEventAt?: number;
  /** Watch restarts by reason (error, watchdog, expired, closed, resync). */
  restarts: Record<string, number>;
  lastError?: string;
}

/** edgeproxy_source_* gauges and counters, read from the sources at scrape time. */
export function registerSourceMetrics(registry: Registry, statuses: () => readonly SourceStatus[], now: () => number = Date.now): void {
  const gauge = (name: string, help: string, pick: (s: SourceStatus) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['source'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of statuses()) {
          const v = pick(s);
          if (v !== undefined) this.set({ source: s.source }, v);
        }
      },
    });
  gauge('edgeproxy_source_synced', '1 once the source\'s initial list is in the store.', (s) => (s.synced ? 1 : 0));
  gauge('edgeproxy_source_stale', '1 while the source\'s watch is down and the last known state is served.', (s) => (s.stale ? 1 : 0));
  gauge('edgeproxy_source_last_event_timestamp_seconds', 'Unix time of the last list, watch event or bookmark.', (s) => (s.lastEventAt === undefined ? undefined : s.lastEventAt / 1000));
  gauge('edgeproxy_source_last_event_age_seconds', 'Seconds since the last list, watch event or bookmark.', (s) => (s.lastEventAt === undefined ? undefined : (now() - s.lastEventAt) / 1000));
  new Counter({
    name: 'edgeproxy_source_watch_restarts_total',
    help: 'Watch restarts by reason: error (backoff, relist), watchdog, expired (410 Gone, relist), closed (stream ended, resumed), resync.',
    labelNames: ['source', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of statuses()) for (const [reason, n] of Object.entries(s.restarts)) this.inc({ source: s.source, reason }, n);
    },
  });
}
