// The real agent (bin/edgeproxy.js) in the node namespace, with a generated manifests dir.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster } from '../../test/support/cluster.ts';
import { startAgent, writeConfig, type RunningAgent } from '../../test/support/agent.ts';
import { SERVICE_PORTS } from './topology.ts';

export interface BenchServicePort {
  name: string;
  protocol: 'TCP' | 'UDP';
  port: number;
  targetPort: number;
}

export interface BenchService {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: BenchServicePort[];
  endpoints: string[];
}

/** A Service and its EndpointSlice as API objects. */
export function serviceObjects(s: BenchService): object[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: s.name, namespace: s.namespace },
      spec: { clusterIP: s.clusterIP, ports: s.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port, targetPort: p.targetPort })) },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${s.name}-1`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      ports: s.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.targetPort })),
      endpoints: s.endpoints.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    },
  ];
}

/** Writes services as JSON List files of at most perFile services each; returns the dir. */
export async function writeManifests(services: readonly BenchService[], perFile = 1000): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-bench-manifests-'));
  for (let i = 0; i < services.length; i += perFile) {
    const items = services.slice(i, i + perFile).flatMap(serviceObjects);
    await writeFile(join(dir, `services-${String(i / perFile).padStart(3, '0')}.json`), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  }
  return dir;
}

/**
 * `count` one-port HTTP services in namespace bench (svc-0, svc-1, ...), ClusterIPs from
 * 10.97.0.1, each with one endpoint: the bench's memory step and bench/memoryQuick.ts.
 */
export function manyServices(count: number, endpoint: string, targetPort: number): BenchService[] {
  const services: BenchService[] = [];
  for (let i = 0; i < count; i++) {
    services.push({
      namespace: 'bench',
      name: `svc-${i}`,
      clusterIP: `10.97.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort }],
      endpoints: [endpoint],
    });
  }
  return services;
}

/** The edgeproxy path's service: iperf, http and dns ports to the server pod. */
export function edgeService(clusterIP: string, serverIp: string, backend: { iperf: number; http: number; dns: number }): BenchService {
  return {
    namespace: 'bench',
    name: 'edge',
    clusterIP,
    ports: [
      { name: 'iperf', protocol: 'TCP', port: SERVICE_PORTS.iperf, targetPort: backend.iperf },
      { name: 'http', protocol: 'TCP', port: SERVICE_PORTS.http, targetPort: backend.http },
      { name: 'dns', protocol: 'UDP', port: SERVICE_PORTS.dns, targetPort: backend.dns },
    ],
    endpoints: [serverIp],
  };
}

/** Starts the agent; waits (bounded) for its first sync. */
export async function startBenchAgent(
  cluster: Cluster,
  manifests: string,
  opts: { readyTimeoutMs?: number; config?: Record<string, unknown>; nodeFlags?: readonly string[]; args?: readonly string[] } = {},
): Promise<{ agent: RunningAgent; configFile: string; readyMs: number }> {
  const configFile = await writeConfig({ iptables: { syncPeriod: '5s', minSyncPeriod: '1s' }, ...opts.config });
  const t0 = performance.now();
  const agent = await startAgent(cluster, { manifests, config: configFile, waitReady: false, ...(opts.nodeFlags !== undefined && { nodeFlags: opts.nodeFlags }), ...(opts.args !== undefined && { args: opts.args }) });
  await agent.waitForLog((l) => l.msg === 'initial sync done', opts.readyTimeoutMs ?? 15_000, 'initial sync');
  return { agent, configFile, readyMs: performance.now() - t0 };
}

export interface ProcessFootprint {
  rssMB: number;
  hwmMB: number;
  fds: number;
}

/** VmRSS / VmHWM from /proc/<pid>/status and the number of entries in /proc/<pid>/fd. */
export async function footprint(pid: number): Promise<ProcessFootprint> {
  const { readFile, readdir } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024, fds };
}
