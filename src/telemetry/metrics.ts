// Prometheus metrics (prom-client), on a registry of our own. Proxy counters are read from the
// proxy at scrape time, so the hot path only bumps plain numbers.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProxyPortStats } from '../proxy/manager.ts';

export interface AgentMetrics {
  registry: Registry;
  syncDuration: Histogram;
  syncErrors: Counter;
  rulesWritten: Counter;
  chainOrderRepairs: Counter;
  lastSyncSuccess: Gauge;
}

export function createMetrics(proxyStats: () => readonly ProxyPortStats[]): AgentMetrics {
  const registry = new Registry();
  const labelNames = ['service_port', 'protocol'] as const;
  const perPort = (name: string, help: string, pick: (s: ProxyPortStats) => number, kind: 'counter' | 'gauge') => {
    const collect = function (this: Counter | Gauge) {
      this.reset();
      for (const s of proxyStats()) {
        const labels = { service_port: s.portName, protocol: s.protocol };
        if (this instanceof Counter) this.inc(labels, pick(s));
        else this.set(labels, pick(s));
      }
    };
    const config = { name, help, labelNames, registers: [registry], collect };
    return kind === 'counter' ? new Counter(config) : new Gauge(config);
  };
  perPort('edgeproxy_connections_accepted_total', 'Client connections accepted per service port.', (s) => s.counters.accepted, 'counter');
  perPort('edgeproxy_connections_active', 'Open proxied connections per service port.', (s) => s.counters.active, 'gauge');
  perPort('edgeproxy_connections_failed_total', 'Client connections refused: no usable backend or every dial failed.', (s) => s.counters.failed, 'counter');
  perPort('edgeproxy_dial_errors_total', 'Backend dial attempts that failed.', (s) => s.counters.dialErrors, 'counter');
  perPort('edgeproxy_bytes_in_total', 'Bytes received from clients.', (s) => s.counters.bytesIn, 'counter');
  perPort('edgeproxy_bytes_out_total', 'Bytes received from backends and sent to clients.', (s) => s.counters.bytesOut, 'counter');
  perPort('edgeproxy_usable_backends', 'Backends traffic can go to (ready, else serving).', (s) => s.usableBackends.length, 'gauge');

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
