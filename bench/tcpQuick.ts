// `node bench/tcpQuick.ts [--prof DIR] [--workers N] [--only short|bulk|transfer] [--seconds S]`
// (root): the TCP steps of `npm run bench` only (HAProxy and edgeproxy, DNAT with --dnat), for
// iterating on the proxy's data path. The agent runs with proxy.workers auto unless --workers N.
// --prof DIR: the agent runs with `--cpu-prof` into DIR (one profile per thread). --strace: a
// `strace -c -f` of the agent under 3 s of short connections into /tmp/strace-agent.txt. --plain:
// a plain Node pipe() proxy in HAProxy's place. --env K=V: extra agent environment. --node-flags
// "...": flags for the agent's Node (V8 flags included). --agent-log FILE: the agent's output. Each short
// run prints the proxy's CPU time per connection (utime + stime from /proc, all threads).
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
  const haproxy = argv.includes('--plain')
    ? c.spawn(c.nodeNs, nodeBin, [join(repoRoot, 'bench', 'lib', 'plainProxy.ts'), String(path('haproxy').listen!.http), server.ip, String(path('haproxy').backend.http)], { stdio: 'ignore' })
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
    const st = c.spawn(c.nodeNs, 'strace', ['-c', '-f', '-p', String(agent.pid), '-o', '/tmp/strace-agent.txt'], { stdio: 'ignore' });
    await sleep(1000);
    const r = await shortConnections(c, client.ns, path('edgeproxy'), 3, 32);
    log(`strace run: ${fmt(r.connPerSec * 3)} connections`);
    st.kill('SIGINT');
    await sleep(1000);
  }
  log(`agent pid ${agent.pid}; measuring ${paths.map((p) => p.name).join(', ')}`);
  for (const round of [paths, [...paths].reverse()]) {
    for (const p of round) {
      if (only === undefined || only === 'short') {
        const pid = p.name === 'haproxy' ? haproxy.pid : p.name === 'edgeproxy' ? agent.pid : undefined;
        const cpu0 = cpuMs(pid);
        const user0 = cpuMs(pid, 'user');
        const r = await shortConnections(c, client.ns, p, seconds, 32);
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
