// `npm run demo` (root): a throw-away node built from network namespaces, kube-proxy's rules,
// the agent in front of them, and a few real requests. Everything is removed at the end.
import { createCluster, requirePrivileges, type Cluster } from '../test/support/cluster.ts';
import { edgeproxy, ourRules, portMetric, startAgent, writeConfig, removeDir, type RunningAgent } from '../test/support/agent.ts';
import { repoRoot } from '../test/support/cluster.ts';
import { join, dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const section = (title: string) => console.log(`\n${bold(`== ${title}`)}`);

async function request(cluster: Cluster, ns: string, label: string, url: string): Promise<void> {
  const r = await cluster.exec(ns, 'curl', ['-sS', '--max-time', '3', url]);
  console.log(`  ${label.padEnd(48)} ${r.code === 0 ? `-> ${r.stdout}` : `-> failed: ${r.stderr.trim()}`}`);
}

async function showRules(cluster: Cluster): Promise<void> {
  const saved = await cluster.iptablesSave();
  for (const line of saved.split('\n')) {
    if (/^-A (PREROUTING|OUTPUT) /.test(line) || ourRules(line).length > 0) console.log(`  ${line}`);
  }
}

async function main(): Promise<void> {
  requirePrivileges();
  const manifests = join(repoRoot, 'examples', 'manifests');
  const config = await writeConfig({ layout: 'portals' });
  const cluster = await createCluster();
  let agent: RunningAgent | undefined;
  try {
    console.log(`namespaces: node ${cluster.nodeNs}, pods ${cluster.pods.map((p) => `${p.name}=${p.ip}`).join(' ')}, router ${cluster.routerNs}`);
    section("kube-proxy's iptables-mode rules loaded in the node namespace");
    await cluster.loadKubeProxyRules();
    console.log(`  ${(await cluster.iptablesSave()).split('\n').filter((l) => l.startsWith('-A')).length} nat rules, KUBE-SERVICES jumped from PREROUTING and OUTPUT`);

    section('edgeproxy plan (what the agent will do with examples/manifests)');
    const plan = await edgeproxy(cluster, ['plan', '--manifests', manifests]);
    console.log(plan.stdout.split('\n\n')[0]!.replace(/^/gm, '  '));

    section('agent started: our jumps first, then KUBE-SERVICES');
    agent = await startAgent(cluster, { manifests, config });
    await showRules(cluster);

    const podA = cluster.pod('pod-a').ns;
    section('requests from pod-a');
    for (let i = 0; i < 4; i++) await request(cluster, podA, 'web 10.96.10.10:80 (edgeproxy, round robin)', 'http://10.96.10.10/');
    for (let i = 0; i < 3; i++) await request(cluster, podA, 'sticky 10.96.10.12:82 (edgeproxy, affinity)', 'http://10.96.10.12:82/');
    for (let i = 0; i < 2; i++) {
      const reply = await cluster.udp(podA, '10.96.30.30', 99).catch((err: Error) => `failed: ${err.message}`);
      console.log(`  ${'echo-udp 10.96.30.30:99/UDP (edgeproxy)'.padEnd(48)} -> ${reply}`);
    }
    await request(cluster, podA, 'grafana 10.96.20.20:3000 (labelled: kube-proxy)', 'http://10.96.20.20:3000/');
    await request(cluster, podA, 'kubernetes 10.96.0.1:443 (kube-proxy)', 'http://10.96.0.1:443/');
    const dig = await cluster.exec(podA, 'dig', ['+short', '+time=2', '+tries=1', '@10.96.0.10', 'web.default.svc.cluster.local']);
    console.log(`  ${'dig @10.96.0.10 (kube-dns: kube-proxy)'.padEnd(48)} -> ${dig.stdout.trim()}`);
    await request(cluster, podA, 'empty 10.96.10.14:84 (no endpoints: reset)', 'http://10.96.10.14:84/');
    const m = await agent.metrics();
    console.log(`  agent counters: web ${portMetric(m, 'edgeproxy_connections_accepted_total', 'default/web:http')} accepted, empty ${portMetric(m, 'edgeproxy_connections_failed_total', 'default/empty:p')} refused`);

    section('kube-proxy restarts and puts its jump in front; the agent repairs the order');
    await cluster.run(cluster.nodeNs, 'iptables', ['-t', 'nat', '-D', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
    await cluster.run(cluster.nodeNs, 'iptables', ['-t', 'nat', '-I', 'PREROUTING', '1', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
    console.log((await edgeproxy(cluster, ['status'])).stdout.replace(/^/gm, '  ').trimEnd());
    const repair = await agent.waitForLog((l) => l.msg === 'chain order repaired: our jump is first again', 5000, 'repair');
    console.log(`  agent log: ${repair.msg}: ${String(repair.repair)}`);
    console.log((await edgeproxy(cluster, ['status'])).stdout.replace(/^/gm, '  ').trimEnd());

    section('SIGTERM: the agent removes its rules; traffic falls back to kube-proxy');
    console.log(`  agent exited with ${await agent.stop('SIGTERM')}`);
    agent = undefined;
    await showRules(cluster);
    await request(cluster, podA, 'web 10.96.10.10:80 (kube-proxy now)', 'http://10.96.10.10/');
  } finally {
    await agent?.stop('SIGKILL');
    await cluster.destroy();
    await removeDir(dirname(config));
    await sleep(0);
    console.log('\nnamespaces and processes removed.');
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${(err as Error).message}`);
  process.exitCode = 1;
});
