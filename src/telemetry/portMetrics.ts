// The per-service-port metrics, written in the Prometheus text format as a stream of chunks.
// A node may proxy 10,000 ports: through prom-client, one scrape built ~170,000 sample objects
// and an 8.6 MB string at once, blocked the event loop (all proxied traffic) ~230 ms and, every
// scrape surviving into V8's old space, took the agent from ~180 to ~500 MB RSS under a 5 s
// scrape interval. Here a scrape reads the stats once and yields 64 KB pieces as the HTTP
// response asks for them, so the text is never whole in memory and the loop runs in between.
import type { ProxyPortStats, TcpPortStats, UdpPortStats } from '../proxy/manager.ts';

type Pick<S> = (s: S) => number;
/** One sample per value of an extra label. */
type Labeled<S> = { label: string; values: Record<string, Pick<S>> };

interface PortFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  /** The ports this family has samples for; `value` is only called for those. */
  only: (s: ProxyPortStats) => boolean;
  value: Pick<ProxyPortStats> | Labeled<ProxyPortStats>;
}

const isTcp = (s: ProxyPortStats): s is TcpPortStats => s.protocol === 'TCP';
const isUdp = (s: ProxyPortStats): s is UdpPortStats => s.protocol === 'UDP';
const anyPort = (_s: ProxyPortStats): _s is ProxyPortStats => true;

/** Families of the ports `only` admits, whose values may read that kind's counters. */
const familiesOf =
  <S extends ProxyPortStats>(only: (s: ProxyPortStats) => s is S) =>
  (name: string, help: string, type: 'counter' | 'gauge', value: Pick<S> | Labeled<S>): PortFamily => ({
    name,
    help,
    type,
    only,
    value: value as Pick<ProxyPortStats> | Labeled<ProxyPortStats>,
  });
const tcp = familiesOf(isTcp);
const udp = familiesOf(isUdp);
const both = familiesOf(anyPort);

// Help texts stay ASCII: one other character would make every chunk a two-byte string.
const FAMILIES: readonly PortFamily[] = [
  tcp('edgeproxy_connections_accepted_total', 'Client connections accepted per service port.', 'counter', (s) => s.counters.accepted),
  tcp('edgeproxy_connections_active', 'Open proxied connections per service port.', 'gauge', (s) => s.counters.active),
  tcp('edgeproxy_connections_failed_total', 'Client connections refused: no usable backend or every dial failed.', 'counter', (s) => s.counters.failed),
  tcp('edgeproxy_dial_errors_total', 'Backend dial attempts that failed.', 'counter', (s) => s.counters.dialErrors),
  both('edgeproxy_bytes_in_total', 'Bytes received from clients.', 'counter', (s) => s.counters.bytesIn),
  both('edgeproxy_bytes_out_total', 'Bytes received from backends and sent to clients.', 'counter', (s) => s.counters.bytesOut),
  both('edgeproxy_usable_backends', 'Backends traffic can go to (ready, else serving).', 'gauge', (s) => s.usableBackends.length),
  tcp('edgeproxy_endpoint_ejections_total', 'Endpoints ejected by passive health after a failed dial.', 'counter', (s) => s.counters.ejections),
  tcp('edgeproxy_connections_idle_closed_total', 'Connections closed by proxy.tcpIdleTimeout.', 'counter', (s) => s.counters.idleClosed),
  tcp('edgeproxy_connections_refused_total', 'Clients reset on arrival, by reason (limit: proxy.maxConnectionsPerPort or proxy.maxConnections reached).', 'counter', {
    label: 'reason',
    values: { limit: (s) => s.counters.refused },
  }),
  // UDP flows (src/proxy/udpPort.ts); bytes are in edgeproxy_bytes_{in,out}_total with protocol="UDP".
  udp('edgeproxy_udp_flows_active', 'Open UDP flows (client address:port to endpoint, one socket each).', 'gauge', (s) => s.counters.flowsActive),
  udp('edgeproxy_udp_flows_created_total', 'UDP flows opened.', 'counter', (s) => s.counters.flowsCreated),
  udp('edgeproxy_udp_flows_expired_total', 'UDP flows closed after udp.idleTimeout without a datagram.', 'counter', (s) => s.counters.flowsExpired),
  udp('edgeproxy_udp_flow_evictions_total', 'UDP flows evicted (least recently used) at udp.maxFlowsPerPort.', 'counter', (s) => s.counters.evictions),
  udp('edgeproxy_udp_flows_rerouted_total', 'UDP flows closed because their endpoint was removed; the next datagram re-picks.', 'counter', (s) => s.counters.flowsRerouted),
  udp('edgeproxy_udp_upstream_errors_total', 'UDP upstream socket errors (e.g. ICMP port unreachable); the flow is closed.', 'counter', (s) => s.counters.upstreamErrors),
  udp('edgeproxy_udp_datagrams_total', 'UDP datagrams: in from clients, out from endpoints to clients.', 'counter', {
    label: 'direction',
    values: { in: (s) => s.counters.datagramsIn, out: (s) => s.counters.datagramsOut },
  }),
  udp('edgeproxy_udp_datagrams_dropped_total', 'UDP datagrams dropped: no usable endpoint, or lost in the proxy (send failed, connect queue full).', 'counter', {
    label: 'reason',
    values: { no_backend: (s) => s.counters.drops, send_failed: (s) => s.counters.sendErrors },
  }),
];

/** The names of the per-port metric families, in the order they are written. */
export const PORT_METRIC_NAMES: readonly string[] = FAMILIES.map((f) => f.name);

/** One sample a family writes per port: its extra label (`reason="limit"`, or none) and its value. */
export interface PortSample {
  family: string;
  type: 'counter' | 'gauge';
  /** The family's HELP and TYPE lines. */
  header: string;
  /** `,reason="limit"`-style text to append to the port's labels; '' when the family has none. */
  extraLabels: string;
  pick: Pick<ProxyPortStats>;
}

/** The samples a port of `protocol` has, family by family in the order they are written. */
export function portSamples(protocol: ProxyPortStats['protocol']): readonly PortSample[] {
  const probe = { protocol } as ProxyPortStats;
  const samples: PortSample[] = [];
  for (const f of FAMILIES) {
    if (!f.only(probe)) continue;
    const base = { family: f.name, type: f.type, header: helpAndType(f.name, f.help, f.type) };
    if (typeof f.value === 'function') samples.push({ ...base, extraLabels: '', pick: f.value });
    else for (const [value, pick] of Object.entries(f.value.values)) samples.push({ ...base, extraLabels: `,${f.value.label}="${value}"`, pick });
  }
  return samples;
}

/**
 * How many service ports are proxied, and how many of them have no usable backend (their
 * clients are refused), per protocol: two families whatever the port count, in either mode.
 */
export function portCountText(stats: readonly ProxyPortStats[]): string {
  const ports = { TCP: 0, UDP: 0 };
  const noBackend = { TCP: 0, UDP: 0 };
  for (const s of stats) {
    ports[s.protocol]++;
    if (s.usableBackends.length === 0) noBackend[s.protocol]++;
  }
  const family = (name: string, help: string, counts: Record<string, number>): string =>
    helpAndType(name, help, 'gauge') + Object.entries(counts).map(([protocol, n]) => `${name}{protocol="${protocol}"} ${n}\n`).join('');
  return (
    family('edgeproxy_service_ports', 'Service ports proxied (one listener each).', ports) +
    family('edgeproxy_service_ports_without_usable_backends', 'Proxied service ports with no usable backend: new clients are refused (TCP) or dropped (UDP).', noBackend)
  );
}

/** A family's HELP and TYPE lines, as the text format writes them. */
function helpAndType(name: string, help: string, type: 'counter' | 'gauge'): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

const CHUNK = 64 * 1024;

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
export function escapeLabelValue(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

export function formatValue(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
}

/**
 * The per-port families for `stats`, in ~64 KB chunks of the text format: HELP and TYPE, then
 * one line per port (per extra label value), ports in the given order. A family with no port
 * to report is left out.
 */
export function* portMetricsText(stats: readonly ProxyPortStats[]): Generator<string, void, undefined> {
  const labels = stats.map((s) => `service_port="${escapeLabelValue(s.portName)}",protocol="${s.protocol}"`);
  let chunk = '';
  for (const f of FAMILIES) {
    let header = helpAndType(f.name, f.help, f.type);
    for (let i = 0; i < stats.length; i++) {
      const s = stats[i]!;
      if (!f.only(s)) continue;
      chunk += header;
      header = '';
      if (typeof f.value === 'function') {
        chunk += `${f.name}{${labels[i]}} ${formatValue(f.value(s))}\n`;
      } else {
        for (const [value, pick] of Object.entries(f.value.values)) chunk += `${f.name}{${labels[i]},${f.value.label}="${value}"} ${formatValue(pick(s))}\n`;
      }
      if (chunk.length >= CHUNK) {
        yield chunk;
        chunk = '';
      }
    }
  }
  if (chunk !== '') yield chunk;
}
