// `node bench/memoryQuick.ts [--services N] [--node-flags "..."] [--watch S] [--scrape S [--summed]]
// [--snapshot DIR] [--agent-log FILE] [--kubernetes [--bookkeeping]]` (root): the
// memory step of `npm run bench` only, for iterating on the agent's footprint. Starts the agent
// with N (default 10,000) proxied service ports in a node namespace, waits for its first sync and
// 3 s more, and prints its RSS, peak RSS and fds. --snapshot DIR: the agent runs with
// --heapsnapshot-signal=SIGUSR2 and writes a heap snapshot into DIR at that point.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createCluster, nodeBin, repoRoot, type Cluster } from '../test/support/cluster.ts';
import { writeKubeconfig } from '../test/support/fakeApiServer.ts';
import { METRICS_ADDRESS, type RunningAgent } from '../test/support/agent.ts';
import { footprint, manyServices, startBenchAgent, writeManifests } from './lib/edgeAgent.ts';
import { fmt, sleep } from './lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const count = Number(opt('--services') ?? 10_000);
const snapshotDir = opt('--snapshot');
const scrapeEvery = Number(opt('--scrape') ?? 0);
const nodeFlags = [...(opt('--node-flags') ?? '').split(' ').filter(Boolean), ...(snapshotDir === undefined ? [] : ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`])];

/** A copy of the bench's manifests whose objects carry what kubectl apply and the controllers add. */
async function withBookkeeping(dir: string): Promise<string> {
  const out = await mkdtemp(join(tmpdir(), 'edgeproxy-bench-bookkeeping-'));
  for (const file of readdirSync(dir)) {
    const list = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { items: Array<{ metadata: Record<string, unknown> }> };
    for (const item of list.items) {
      const lastApplied = JSON.stringify(item);
      item.metadata['annotations'] = { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied };
      item.metadata['managedFields'] = [
        { manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2026-11-23T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} }, 'f:labels': { '.': {} } }, 'f:spec': { 'f:ports': { '.': {}, 'k:{"port":80,"protocol":"TCP"}': { '.': {}, 'f:name': {}, 'f:port': {}, 'f:protocol': {}, 'f:targetPort': {} } }, 'f:selector': {}, 'f:sessionAffinity': {}, 'f:type': {} } } },
        { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-11-23T10:00:01Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:endpointslice.kubernetes.io/managed-by': {} } }, 'f:endpoints': {}, 'f:ports': {} } },
      ];
    }
    writeFileSync(join(out, file), JSON.stringify(list));
  }
  return out;
}

let cluster: Cluster | undefined;
let agent: RunningAgent | undefined;
const dirs: string[] = [];
try {
  cluster = await createCluster({ startServers: false });
  const server = cluster.pod('pod-b');
  const manifests = await writeManifests(manyServices(count, server.ip, 8080));
  dirs.push(manifests);
  // --kubernetes: the services come from a fake API server in the node namespace (the cluster
  // source, with the client library's informer caches), the manifests folder stays empty.
  let args: string[] = [];
  let agentManifests = manifests;
  if (argv.includes('--kubernetes')) {
    // --bookkeeping: objects as a real cluster serves them, with managedFields and kubectl's last-applied copy.
    const apiManifests = argv.includes('--bookkeeping') ? await withBookkeeping(manifests) : manifests;
    if (apiManifests !== manifests) dirs.push(apiManifests);
    const api = cluster.spawn(cluster.nodeNs, nodeBin, [join(repoRoot, 'test', 'support', 'fakeApiServerMain.ts'), '--port', '6443', '--manifests', apiManifests], { stdio: 'pipe' });
    api.stderr!.resume();
    await new Promise<void>((resolve, reject) => {
      let out = '';
      api.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening ')) resolve();
      });
      api.once('exit', (code) => reject(new Error(`fake API server exited ${code}`)));
    });
    const kubeconfig = await writeKubeconfig('http://127.0.0.1:6443');
    dirs.push(dirname(kubeconfig));
    agentManifests = await mkdtemp(join(tmpdir(), 'edgeproxy-empty-'));
    dirs.push(agentManifests);
    args = ['--kubeconfig', kubeconfig];
  }
  const started = await startBenchAgent(cluster, agentManifests, {
    args,
    readyTimeoutMs: 240_000,
    // --scrape S: /metrics on (the default address) and fetched every S s (a multiple of 5) during --watch, as Prometheus would.
    // --summed: metricsPerServicePort false, the per-port families summed per protocol.
    config: scrapeEvery > 0 ? (argv.includes('--summed') ? { metricsPerServicePort: false } : {}) : { metricsBindAddress: '' },
    nodeFlags,
  });
  agent = started.agent;
  dirs.push(dirname(started.configFile));
  await sleep(3000);
  const fp = await footprint(agent.process.pid!);
  process.stderr.write(`${count} services: ready after ${fmt(started.readyMs / 1000)} s; RSS ${fmt(fp.rssMB)} MB (peak ${fmt(fp.hwmMB)} MB), ${fp.fds} fds\n`);
  // --watch S: RSS every 5 s for S seconds more (V8 gives memory back only after a while).
  for (let t = 5; t <= Number(opt('--watch') ?? 0); t += 5) {
    await sleep(5000);
    let scraped = '';
    if (scrapeEvery > 0 && t % scrapeEvery === 0) {
      const r = await cluster.exec(cluster.nodeNs, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://${METRICS_ADDRESS}/metrics`]);
      scraped = `, scrape ${fmt(Number(r.stdout) / 1e6)} MB`;
    }
    const later = await footprint(agent.process.pid!);
    process.stderr.write(`  +${t} s: RSS ${fmt(later.rssMB)} MB${scraped}\n`);
  }
  if (snapshotDir !== undefined) {
    const before = new Set(readdirSync(snapshotDir));
    agent.process.kill('SIGUSR2');
    await sleep(15_000);
    const made = readdirSync(snapshotDir).filter((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    process.stderr.write(`heap snapshot: ${made.map((f) => join(snapshotDir, f)).join(', ') || 'none yet (a large heap takes longer to write)'}\n`);
  }
  // --agent-log FILE: what the agent printed: its JSON log (debug level) and other lines (e.g. --trace-gc).
  const agentLog = opt('--agent-log');
  if (agentLog !== undefined) writeFileSync(agentLog, agent.logs.map((l) => (Object.keys(l).length === 1 ? `${l.msg}\n` : `${JSON.stringify(l)}\n`)).join(''));
  await agent.stop('SIGTERM', 60_000);
  agent = undefined;
} finally {
  if (agent !== undefined) await agent.stop('SIGKILL', 10_000).catch(() => {});
  await cluster?.destroy();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}
