// The traffic steps, each run once per path from the client pod: iperf3 bulk, 4 MB transfers,
// short connections (wrk), UDP request/response (dnsperf). Every command is bounded in time.
import { join } from 'node:path';
import type { Cluster } from '../test/support/cluster.ts';
import { nodeBin, repoRoot } from '../test/support/cluster.ts';
import { median, percentile, sleep } from './lib/stats.ts';
import { SERVICE_PORTS, type BenchPath } from './lib/topology.ts';
import { DNS_NAME, TRANSFER_BYTES } from './lib/servers.ts';
import { writeFile } from 'node:fs/promises';

export interface BulkResult {
  gbps: number;
  retransmits?: number;
  error?: string;
}

/** iperf3 client → ClusterIP; Gbit/s received. */
export async function bulk(cluster: Cluster, clientNs: string, p: BenchPath, streams: number, seconds: number): Promise<BulkResult> {
  const args = ['-c', p.clusterIP, '-p', String(SERVICE_PORTS.iperf), '-t', String(seconds), '-P', String(streams), '-J', '--connect-timeout', '3000'];
  const r = await cluster.exec(clientNs, 'iperf3', args, { timeoutMs: (seconds + 15) * 1000 });
  try {
    const json = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
    if (json.error) return { gbps: Number.NaN, error: json.error };
    const bps = json.end?.sum_received?.bits_per_second;
    if (bps === undefined) return { gbps: Number.NaN, error: 'no sum_received in iperf3 output' };
    const retransmits = json.end?.sum_sent?.retransmits;
    return { gbps: bps / 1e9, ...(retransmits === undefined ? {} : { retransmits }) };
  } catch {
    return { gbps: Number.NaN, error: `iperf3 exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}` };
  }
}

export interface TransferResult {
  n: number;
  medianMs: number;
  p99Ms: number;
  errors: number;
  error?: string;
}

/** Sequential 4 MB transfers from one Node process in the client pod. */
export async function transfers(cluster: Cluster, clientNs: string, p: BenchPath, count: number, maxMs: number): Promise<TransferResult> {
  const script = join(repoRoot, 'bench', 'lib', 'transferClient.ts');
  const args = [script, p.clusterIP, String(SERVICE_PORTS.http), '/4m', String(TRANSFER_BYTES), String(count), String(maxMs)];
  const r = await cluster.exec(clientNs, nodeBin, args, { timeoutMs: maxMs + 20_000 });
  try {
    const out = JSON.parse(r.stdout) as { times: number[]; errors: number; lastError: string };
    return {
      n: out.times.length,
      medianMs: median(out.times),
      p99Ms: percentile(out.times, 99),
      errors: out.errors,
      ...(out.errors > 0 ? { error: out.lastError } : {}),
    };
  } catch {
    return { n: 0, medianMs: Number.NaN, p99Ms: Number.NaN, errors: 1, error: `client exit ${r.code}: ${r.stderr.trim().slice(0, 300)}` };
  }
}

export interface ShortResult {
  connPerSec: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors: string;
  non2xx: number;
  error?: string;
}

/** "1.23ms" / "850.00us" / "1.02s" → ms. */
export function wrkDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

export function parseWrk(out: string): Omit<ShortResult, 'error'> {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1];
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1];
  const socketErrors = /Socket errors: (.*)/.exec(out)?.[1] ?? 'none';
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { connPerSec: rps, p50Ms: p50 ? wrkDurationMs(p50) : Number.NaN, p99Ms: p99 ? wrkDurationMs(p99) : Number.NaN, socketErrors, non2xx };
}

/** wrk with Connection: close: every request on a new connection, so requests/s = connections/s. */
export async function shortConnections(cluster: Cluster, clientNs: string, p: BenchPath, seconds: number, connections: number): Promise<ShortResult> {
  const url = `http://${p.clusterIP}:${SERVICE_PORTS.http}/ok`;
  const args = ['-s', 'KILL', String(seconds + 10), 'wrk', '-t', '2', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '3s', '--latency', '-H', 'Connection: close', url];
  const r = await cluster.exec(clientNs, 'timeout', args, { timeoutMs: (seconds + 15) * 1000 });
  const parsed = parseWrk(r.stdout);
  return r.code === 0 ? parsed : { ...parsed, error: `wrk exit ${r.code}: ${r.stderr.trim().slice(0, 300)}` };
}

export interface UdpResult {
  qps: number;
  lost: number;
  sent: number;
  avgLatencyMs: number;
  error?: string;
}

export function parseDnsperf(out: string): Omit<UdpResult, 'error'> {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? Number.NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
}

/** dnsperf (8 clients) against the path's ClusterIP:53. */
export async function udpRequests(cluster: Cluster, clientNs: string, p: BenchPath, seconds: number, queryFile: string): Promise<UdpResult> {
  const args = ['-s', p.clusterIP, '-p', String(SERVICE_PORTS.dns), '-d', queryFile, '-c', '8', '-l', String(seconds), '-t', '2'];
  const r = await cluster.exec(clientNs, 'dnsperf', args, { timeoutMs: (seconds + 15) * 1000 });
  const parsed = parseDnsperf(r.stdout);
  return r.code === 0 && Number.isFinite(parsed.qps) ? parsed : { ...parsed, error: `dnsperf exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(-300)}` };
}

export async function writeQueryFile(dir: string): Promise<string> {
  const file = join(dir, 'queries.txt');
  await writeFile(file, `${DNS_NAME} A\n`);
  return file;
}

/** Lets TIME_WAIT and the CPU settle between measurements. */
export async function settle(): Promise<void> {
  await sleep(1000);
}
