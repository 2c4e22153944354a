// The bench topology on top of the e2e cluster: pod-a is the client, pod-b the server, the node
// namespace holds the nat rules, HAProxy / nginx stream and the agent. Each compared path has
// its own ClusterIP and its own backend ports, so no path inherits another's 4-tuples.
import type { Cluster } from '../../test/support/cluster.ts';

export type PathName = 'dnat' | 'haproxy' | 'edgeproxy';

export interface BenchPath {
  name: PathName;
  label: string;
  clusterIP: string;
  /** Backend ports on pod-b. */
  backend: { iperf: number; http: number; dns: number };
  /** User-space proxy listen ports in the node namespace (HAProxy / nginx stream only). */
  listen?: { iperf: number; http: number; dns: number };
}

/** Service ports on every ClusterIP. */
export const SERVICE_PORTS = { iperf: 5201, http: 80, dns: 53 } as const;

export const PATHS: readonly BenchPath[] = [
  { name: 'dnat', label: 'kernel DNAT', clusterIP: '10.96.100.1', backend: { iperf: 5301, http: 8001, dns: 5401 } },
  {
    name: 'haproxy',
    label: 'HAProxy',
    clusterIP: '10.96.100.2',
    backend: { iperf: 5302, http: 8002, dns: 5402 },
    listen: { iperf: 15302, http: 18002, dns: 15402 },
  },
  { name: 'edgeproxy', label: 'edgeproxy', clusterIP: '10.96.100.3', backend: { iperf: 5303, http: 8003, dns: 5403 } },
];

export function path(name: PathName): BenchPath {
  return PATHS.find((p) => p.name === name)!;
}

/** kube-proxy-style chains for one service port: KUBE-SERVICES → KUBE-SVC → KUBE-SEP (DNAT). */
function kubeProxyService(tag: string, ip: string, proto: 'tcp' | 'udp', port: number, endpoint: string): { chains: string[]; rules: string[] } {
  const svc = `KUBE-SVC-BENCH${tag}`;
  const sep = `KUBE-SEP-BENCH${tag}`;
  return {
    chains: [svc, sep],
    rules: [
      `-A KUBE-SERVICES -d ${ip}/32 -p ${proto} -m comment --comment "bench/${tag.toLowerCase()} cluster IP" -m ${proto} --dport ${port} -j ${svc}`,
      `-A ${svc} -m comment --comment "bench/${tag.toLowerCase()} -> ${endpoint}" -j ${sep}`,
      `-A ${sep} -p ${proto} -m comment --comment "bench/${tag.toLowerCase()}" -m ${proto} -j DNAT --to-destination ${endpoint}`,
    ],
  };
}

/**
 * The node's nat table: kube-proxy DNAT for the DNAT path and (shadowed by the agent's jump)
 * for the edgeproxy path, and for HAProxy the same kind of REDIRECT the agent writes, in a
 * chain jumped from PREROUTING position 1.
 */
export function natTable(serverIp: string): string {
  const chains = ['KUBE-SERVICES', 'BENCH-PORTALS'];
  const rules: string[] = [
    '-A PREROUTING -m comment --comment "bench user-space proxy portals" -j BENCH-PORTALS',
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  ];
  for (const p of PATHS) {
    if (p.name === 'haproxy') continue;
    const n = p.name === 'dnat' ? 'D' : 'E';
    for (const [tag, proto, port, backend] of [
      [`${n}IPERF`, 'tcp', SERVICE_PORTS.iperf, p.backend.iperf],
      [`${n}HTTP`, 'tcp', SERVICE_PORTS.http, p.backend.http],
      [`${n}DNS`, 'udp', SERVICE_PORTS.dns, p.backend.dns],
    ] as const) {
      const s = kubeProxyService(tag, p.clusterIP, proto, port, `${serverIp}:${backend}`);
      chains.push(...s.chains);
      rules.push(...s.rules);
    }
  }
  const hp = path('haproxy');
  for (const [proto, port, to] of [
    ['tcp', SERVICE_PORTS.iperf, hp.listen!.iperf],
    ['tcp', SERVICE_PORTS.http, hp.listen!.http],
    ['udp', SERVICE_PORTS.dns, hp.listen!.dns],
  ] as const) {
    rules.push(`-A BENCH-PORTALS -d ${hp.clusterIP}/32 -p ${proto} -m comment --comment "bench/haproxy" -m ${proto} --dport ${port} -j REDIRECT --to-ports ${to}`);
  }
  return natRestoreText(chains, rules);
}

/** A whole nat table as iptables-restore input (without --noflush it replaces the table): built-in chains, `chains`, `rules`. */
export function natRestoreText(chains: readonly string[], rules: readonly string[]): string {
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

/** TIME_WAIT reuse where connections start (client, and the node for the proxies' dials). */
export async function tuneNamespaces(cluster: Cluster): Promise<void> {
  for (const ns of [cluster.nodeNs, ...cluster.pods.map((p) => p.ns)]) {
    await cluster.run(ns, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096', 'net.ipv4.tcp_max_syn_backlog=4096']);
  }
}
