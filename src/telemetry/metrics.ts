// Prometheus metrics: prom-client, on a registry of our own, for the agent's own metrics; the
// per-service-port families are streamed after them (portMetrics.ts), or summed per protocol
// (portTotals.ts). Proxy counters are read
// from the proxy at scrape time, so the hot path only bumps plain numbers.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProxyPortStats } from '../proxy/manager.ts';
import { portCountText, portMetricsText } from './portMetrics.ts';
import { PortTotals } from './portTotals.ts';

export interface AgentMetrics {
  registry: Registry;
  /** The Prometheus text format's media type, for /metrics. */
  contentType: string;
  /**
   * One scrape, in chunks: the registry's metrics, then the per-port families with the proxy
   * stats read once. Pull it as the response drains: the per-port text is made piece by piece.
   */
  scrape(): AsyncGenerator<string, void, undefined>;
  syncDuration: Histogram;
  syncErrors: Counter;
  rulesWritten: Counter;
  chainOrderRepairs: Counter;
  lastSyncSuccess: Gauge;
}

export interface MetricsOptions {
  /** TCP worker threads restarted so far. */
  workerRestarts?: () => number;
  /**
   * Config metricsPerServicePort: one series per service port (default), or false for the same
   * families summed per protocol, a fixed handful of series at any port count.
   */
  perServicePort?: boolean;
}

export function createMetrics(proxyStats: () => readonly ProxyPortStats[], opts: MetricsOptions = {}): AgentMetrics {
  const { workerRestarts = () => 0, perServicePort = true } = opts;
  const totals = perServicePort ? undefined : new PortTotals();
  const registry = new Registry();
  new Counter({
    name: 'edgeproxy_worker_restarts_total',
    help: 'TCP proxy worker threads restarted after they died (proxy.workers > 1).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(workerRestarts());
    },
  });
  async function* scrape(): AsyncGenerator<string, void, undefined> {
    yield await registry.metrics();
    const stats = proxyStats();
    yield portCountText(stats);
    if (totals === undefined) yield* portMetricsText(stats);
    else yield totals.text(stats);
  }

  return {
    registry,
    contentType: registry.contentType,
    scrape,
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
