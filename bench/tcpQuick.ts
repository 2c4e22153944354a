// `node bench/tcpQuick.ts [--prof DIR] [--workers N] [--only short|bulk|transfer] [--seconds S]`
// (root): the TCP steps of `npm run bench` only (HAProxy and edgeproxy, DNAT with --dnat), for
// iterating on the proxy's data path. The agent runs with proxy.workers auto unless --workers N.
//   --prof DIR        the agent runs with `--cpu-prof` into DIR (one profile per thread)
//   --strace          strace the agent, then the peer, under 3 s of short connections each, into
//                     /tmp/strace-agent.txt and /tmp/strace-peer.txt (`-c` unless STRACE_ARGS says
//                     otherwise, e.g. STRACE_ARGS="-tt -e trace=network" for every call)
//   --plain           a plain Node pipe() proxy in HAProxy's place; --plain-file F: F instead
//                     (e.g. bench/lib/handleProxy.ts)
//   --env K=V         extra agent environment; --node-flags "...": flags for the agent's Node
//   --agent-log FILE  the agent's output
//   --nstat           the node namespace's TCP counters per accepted connection, per short run
// Each short run prints the proxy's CPU time per connection (utime + stime from /proc, all threads).
import { execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createCluster, nodeBin, repoRoot, type Cluster } from '../test/support/cluster.ts';
import { writeConfig } from '../test/support/agent.ts';
import { PATHS, natTable, path, tuneNamespaces } from './lib/topology.ts';
import { startHaproxy, startIperfServers, startNginxHttp, waitTcp } from './lib/servers.ts';
import { edgeService, writeManifests } from './lib/edgeAgent.ts';
import { bulk, settle, shortConnections, transfers } from './traffic.ts';
import { fmt, sleep } from './lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const prof = opt('--prof');
const workers = opt('--workers');
const only = opt('--only');
const seconds = Number(opt('--seconds') ?? 5);
const paths = PATHS.filter((p) => p.name !== 'dnat' || argv.includes('--dnat'));
/** utime + stime of a process (all threads), ms. */
const cpuMs = (pid: number | undefined, which: 'user' | 'sys' | 'all' = 'all'): number => {
  if (pid === undefined) return 0;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const user = Number(f[11]);
  const sys = Number(f[12]);
  return ((which === 'user' ? user : which === 'sys' ? sys : user + sys) * 1000) / 100;
};
/** The node namespace's absolute TCP counters (nstat -az: Tcp* and TcpExt*). */
const tcpCounters = async (c: Cluster, ns: string): Promise<Map<string, number>> => {
  const r = await c.exec(ns, 'nstat', ['-a', '-z', '-s']);
  const m = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k !== undefined && /^Tcp/.test(k)) m.set(k, Number(v));
  }
  return m;
};
const log = (m: string): void => void process.stderr.write(`${m}\n`);

const tmp = await mkdtemp(join(tmpdir(), 'edgeproxy-tcpq-'));
let cluster: Cluster | undefined;
/** The agent's manifests and config folders, removed at the end like `tmp`. */
const dirs: string[] = [];
try {
  cluster = await createCluster({ startServers: false });
  const c = cluster;
  const client = c.pod('pod-a');
  const server = c.pod('pod-b');
  await tuneNamespaces(c);
  await c.loadKubeProxyRules(natTable(server.ip));
  await startNginxHttp(c, server.ns, tmp);
  await startIperfServers(c, server.ns);
  // --plain: a plain Node pipe() proxy (bench/lib/plainProxy.ts) takes HAProxy's place, as a yardstick.
  const haproxy = argv.includes('--plain') || opt('--plain-file') !== undefined
    ? c.spawn(c.nodeNs, nodeBin, [opt('--plain-file') ?? join(repoRoot, 'bench', 'lib', 'plainProxy.ts'), String(path('haproxy').listen!.http), server.ip, String(path('haproxy').backend.http)], { stdio: 'ignore' })
    : await startHaproxy(c, server.ip, tmp);
  const edge = path('edgeproxy');
  const manifests = await writeManifests([edgeService(edge.clusterIP, server.ip, edge.backend)]);
  dirs.push(manifests);
  const config = await writeConfig({
    iptables: { syncPeriod: '5s', minSyncPeriod: '1s' },
    log: { level: 'info' },
    proxy: { workers: workers === undefined ? 'auto' : Number(workers) },
  });
  dirs.push(dirname(config));
  const env: Record<string, string> = prof !== undefined ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${prof}` } : {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--env') continue;
    const [k = '', v = ''] = (argv[i + 1] ?? '').split('=');
    env[k] = v;
  }
  const nodeFlags = (opt('--node-flags') ?? '').split(' ').filter(Boolean);
  // --agent-log FILE: the agent's stdout and stderr (its JSON log, and whatever --node-flags print).
  const agentLog = opt('--agent-log');
  const agent = c.spawn(c.nodeNs, nodeBin, [...nodeFlags, join(repoRoot, 'bin', 'edgeproxy.js'), 'run', '--manifests', manifests, '--config', config], {
    env,
    stdio: agentLog === undefined ? 'ignore' : 'pipe',
  });
  if (agentLog !== undefined) {
    const file = createWriteStream(agentLog);
    agent.stdout?.pipe(file);
    agent.stderr?.pipe(file);
  }
  for (const p of paths) await waitTcp(c, client.ns, p.clusterIP, 80, 20_000);
  await sleep(1500);
  if (argv.includes('--strace')) {
    for (const [name, pid] of [['agent', agent.pid], ['peer', haproxy.pid]] as const) {
      const st = c.spawn(c.nodeNs, 'strace', [...(process.env['STRACE_ARGS'] ?? '-c').split(' '), '-f', '-p', String(pid), '-o', `/tmp/strace-${name}.txt`], { stdio: 'ignore' });
      await sleep(1000);
      const r = await shortConnections(c, client.ns, path(name === 'agent' ? 'edgeproxy' : 'haproxy'), 3, 32);
      log(`strace ${name}: ${fmt(r.connPerSec * 3)} connections`);
      st.kill('SIGINT');
      await sleep(1000);
    }
  }
  log(`agent pid ${agent.pid}; measuring ${paths.map((p) => p.name).join(', ')}`);
  for (const round of [paths, [...paths].reverse()]) {
    for (const p of round) {
      if (only === undefined || only === 'short') {
        const pid = p.name === 'haproxy' ? haproxy.pid : p.name === 'edgeproxy' ? agent.pid : undefined;
        const cpu0 = cpuMs(pid);
        const user0 = cpuMs(pid, 'user');
        const tcp0 = argv.includes('--nstat') ? await tcpCounters(c, c.nodeNs) : undefined;
        const r = await shortConnections(c, client.ns, p, seconds, 32);
        if (tcp0 !== undefined) {
          const tcp1 = await tcpCounters(c, c.nodeNs);
          const conns = (tcp1.get('TcpPassiveOpens') ?? 0) - (tcp0.get('TcpPassiveOpens') ?? 0);
          const per = [...tcp1].filter(([k, v]) => v !== tcp0.get(k)).map(([k, v]) => `${k} ${fmt((v - (tcp0.get(k) ?? 0)) / Math.max(1, conns))}`);
          log(`node ns counters per accepted connection (${p.label}): ${per.join(', ')}`);
        }
        const cpu = cpuMs(pid) - cpu0;
        const user = cpuMs(pid, 'user') - user0;
        log(`short ${p.label}: ${fmt(r.connPerSec)} conn/s, p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms ${r.socketErrors}${r.error ?? ''}; proxy CPU ${fmt((cpu * 1000) / (r.connPerSec * seconds))} µs/conn (user ${fmt((user * 1000) / (r.connPerSec * seconds))})`);
        await sleep(2000);
      }
      if (only === undefined || only === 'bulk') {
        for (const streams of [1, 4]) {
          const r = await bulk(c, client.ns, p, streams, Math.min(seconds, 4));
          log(`bulk ${streams} ${p.label}: ${fmt(r.gbps)} Gbit/s ${r.error ?? ''}`);
          await settle();
        }
      }
      if (only === undefined || only === 'transfer') {
        const r = await transfers(c, client.ns, p, 200, 10_000);
        log(`4 MB ${p.label}: median ${fmt(r.medianMs)} ms, p99 ${fmt(r.p99Ms)} ms ${r.error ?? ''}`);
        await settle();
      }
    }
  }
  const status = readFileSync(`/proc/${agent.pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  log(`agent after the runs: RSS ${fmt(kb('VmRSS') / 1024)} MB, peak ${fmt(kb('VmHWM') / 1024)} MB`);
  agent.kill('SIGTERM');
  await new Promise((r) => agent.once('exit', r));
} finally {
  // nginx workers are not tracked by the cluster: kill every pid in our namespaces first.
  for (const ns of cluster ? [cluster.nodeNs, ...cluster.pods.map((p) => p.ns)] : []) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await cluster?.destroy();
  for (const dir of [tmp, ...dirs]) await rm(dir, { recursive: true, force: true });
}
