// The agent in a namespace "node" beside a real kube-proxy ruleset, with real clients.
// Needs root and iptables: without them these tests fail (they never skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { kubeProxyRulesFile, nodeBin, type Cluster } from '../support/cluster.ts';
import { edgeproxy, kubeProxyRules, ourRules, portMetric, setupAgentCluster, startAgent, startKubeProxyAfterAgent, stopAndCheckClean } from '../support/agent.ts';

// kube-proxy's service chains in the fixture (see test/fixtures/README.md).
const KP = {
  web: 'KUBE-SVC-CDGGSHYLG3RE2FKL',
  dnsUdp: 'KUBE-SVC-TCOU7JCQXEZGVUNU',
  kubernetes: 'KUBE-SVC-NPX46M4PTMTKRN6Y',
  grafana: 'KUBE-SVC-AWA2CQSXVI7X2GE5',
};
const WEB = 'http://10.96.10.10/';
/** Connects to web's ClusterIP, prints "connected", sends one request when stdin says so, prints the answer. */
const HELD_CLIENT = `
const s = require('node:net').connect(80, '10.96.10.10', () => console.log('connected'));
process.stdin.once('data', () => s.write('GET / HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n'));
s.on('data', (d) => process.stdout.write(d));
s.on('end', () => process.exit(0));
`;

async function bodies(cluster: Cluster, fromNs: string, url: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await cluster.curl(fromNs, url));
  return out;
}

/** Polls until fn() is true; the agent applies manifest edits within one sync. */
async function eventually(what: string, fn: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(150);
  }
  assert.fail(`not within ${timeoutMs} ms: ${what}`);
}

test('portals layout beside kube-proxy', async (t) => {
  const env = await setupAgentCluster(t, { config: { layout: 'portals' }, start: false });
  const { cluster, manifests } = env;
  const kubeProxyBefore = kubeProxyRules(await cluster.iptablesSave());
  const agent = (env.agent = await startAgent(cluster, { manifests, config: env.configFile }));
  const podA = cluster.pod('pod-a').ns;

  await t.test('our jumps come first, before KUBE-SERVICES', async () => {
    const saved = await cluster.iptablesSave();
    const prerouting = saved.split('\n').filter((l) => l.startsWith('-A PREROUTING'));
    const output = saved.split('\n').filter((l) => l.startsWith('-A OUTPUT'));
    assert.match(prerouting[0]!, /-j KUBE-PORTALS-CONTAINER$/);
    assert.match(prerouting[1]!, /-j KUBE-SERVICES$/);
    assert.match(output[0]!, /-j KUBE-PORTALS-HOST$/);
    assert.match(prerouting[0]!, /--comment "handle ClusterIPs; NOTE: this must be before the NodePort rules"/);
    const status = await edgeproxy(cluster, ['status']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, /PREROUTING -> KUBE-PORTALS-CONTAINER: position 1, KUBE-SERVICES at 2 ok/);
  });

  await t.test('a proxied service answers through the agent, round robin over both pods, from the node and from a pod', async () => {
    const kubeProxyWeb = await cluster.chainPackets(KP.web);
    const before = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http');
    const fromNode = await bodies(cluster, cluster.nodeNs, WEB, 6);
    const fromPod = await bodies(cluster, podA, WEB, 6);
    for (const answers of [fromNode, fromPod]) {
      // Strict alternation: round robin, not kube-proxy's random choice.
      for (let i = 1; i < answers.length; i++) assert.notEqual(answers[i], answers[i - 1], `not alternating: ${answers}`);
      assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
    }
    const afterCount = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http');
    assert.equal(afterCount - before, 12);
    assert.equal(await cluster.chainPackets(KP.web), kubeProxyWeb, "kube-proxy's web chain must see none of it");
  });

  await t.test('kube-dns, default/kubernetes and a labelled service go through kube-proxy', async () => {
    const dns = await cluster.chainPackets(KP.dnsUdp);
    const api = await cluster.chainPackets(KP.kubernetes);
    const grafana = await cluster.chainPackets(KP.grafana);
    const answer = await cluster.dig(podA, '10.96.0.10', 'web.default.svc.cluster.local');
    assert.ok(['10.0.0.7', '10.0.0.8'].includes(answer[0]!), `dig answered ${answer}`);
    assert.equal(await cluster.curl(podA, 'http://10.96.0.1:443/'), 'apiserver');
    assert.equal(await cluster.curl(cluster.nodeNs, 'http://10.96.20.20:3000/'), 'pod-a');
    assert.ok((await cluster.chainPackets(KP.dnsUdp)) > dns);
    assert.ok((await cluster.chainPackets(KP.kubernetes)) > api);
    assert.ok((await cluster.chainPackets(KP.grafana)) > grafana);
    const m = await agent.metrics();
    assert.equal(portMetric(m, 'edgeproxy_connections_accepted_total', 'monitoring/grafana:http'), 0);
  });

  await t.test('a service without endpoints is refused at once, not left hanging', async () => {
    const started = Date.now();
    const r = await cluster.exec(podA, 'curl', ['-sS', '--max-time', '5', 'http://10.96.10.14:84/']);
    // curl: 7 refused, 52 empty reply, 56 connection reset.
    assert.ok([7, 52, 56].includes(r.code), `curl exit ${r.code}: ${r.stderr}`);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  });

  await t.test('manifest edits apply without restart: endpoint removed and added, label added', async () => {
    const webFile = join(manifests, 'web.yaml');
    const original = await readFile(webFile, 'utf8');
    // Drop pod-b from the web slice: every answer comes from pod-a.
    await writeFile(webFile, original.replace(/  - addresses: \[10\.244\.8\.2\]\n    conditions: \{ ready: true \}\n    nodeName: edge-node-1\n    targetRef: \{ kind: Pod, name: web-1 \}\n/, ''));
    await eventually('web served by pod-a only', async () => (await bodies(cluster, podA, WEB, 4)).every((b) => b === 'pod-a'));
    // Put it back: both answer again.
    await writeFile(webFile, original);
    await eventually('web served by both pods again', async () => new Set(await bodies(cluster, podA, WEB, 4)).size === 2);
    // Label web for kube-proxy: its traffic moves to kube-proxy's chain.
    await writeFile(webFile, original.replace('  labels:\n    app: web\n', '  labels:\n    app: web\n    service.edgemesh.kubeedge.io/service-proxy-name: ""\n'));
    await eventually('web rule removed', async () => !ourRules(await cluster.iptablesSave()).some((l) => l.includes('default/web:http')));
    const kubeProxyWeb = await cluster.chainPackets(KP.web);
    await bodies(cluster, podA, WEB, 3);
    assert.equal((await cluster.chainPackets(KP.web)) - kubeProxyWeb, 3);
    await agent.waitForLog((l) => l.msg === 'service left to kube-proxy' && l.service === 'default/web', 2000, 'log of the filter change');
    await writeFile(webFile, original);
    await eventually('web rule back', async () => ourRules(await cluster.iptablesSave()).some((l) => l.includes('default/web:http')));
  });

  await t.test('an invalid manifest is reported and the last good content keeps serving', async () => {
    const webFile = join(manifests, 'web.yaml');
    const original = await readFile(webFile, 'utf8');
    await writeFile(webFile, original.replace('port: 80,', 'port: 70000,'));
    await agent.waitForLog((l) => l.level === 40 && JSON.stringify(l).includes('70000'), 5000, 'warning naming the bad port');
    assert.equal(new Set(await bodies(cluster, podA, WEB, 4)).size, 2);
    await writeFile(webFile, original);
  });

  await t.test('SIGTERM: rules go first, an open connection may still finish, then the agent exits clean', async () => {
    // A client with a connection open through the agent, which sends its request only when told.
    const client = cluster.spawn(podA, nodeBin, ['-e', HELD_CLIENT], { stdin: true });
    let output = '';
    client.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    await eventually('client connected', async () => output.includes('connected'));

    const exited = agent.stop('SIGTERM', 15_000);
    await agent.waitForLog((l) => l.msg === 'listeners closed; waiting for open connections to end', 5000, 'the drain');
    assert.deepEqual(ourRules(await cluster.iptablesSave()), [], 'rules are removed before the drain');
    client.stdin!.write('go\n');
    await eventually('the held connection got its answer', async () => /pod-[ab]$/.test(output));
    assert.equal(await exited, 0, agent.stderr());
    // Traffic falls back to kube-proxy.
    await stopAndCheckClean(cluster, agent, kubeProxyBefore, podA, WEB);
  });
});

test('edge-mesh layout: RETURN for ignored services, per-protocol sub-chains', async (t) => {
  const { cluster, agent } = await setupAgentCluster(t, { config: { layout: 'edge-mesh', serviceCIDR: '10.96.0.0/16' } });
  assert.ok(agent);
  const podA = cluster.pod('pod-a').ns;

  const ours = ourRules(await cluster.iptablesSave());
  const root = ours.filter((l) => l.startsWith('-A EDGE-MESH '));
  assert.deepEqual(root, [
    '-A EDGE-MESH -d 10.96.0.1/32 -m comment --comment "ignore default/kubernetes service" -j RETURN',
    '-A EDGE-MESH -d 10.96.0.10/32 -m comment --comment "ignore kube-system/kube-dns service" -j RETURN',
    '-A EDGE-MESH -d 10.96.20.20/32 -m comment --comment "ignore monitoring/grafana service" -j RETURN',
    '-A EDGE-MESH -d 10.96.0.0/16 -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP',
    '-A EDGE-MESH -d 10.96.0.0/16 -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP',
  ]);
  for (const chain of ['PREROUTING', 'OUTPUT']) {
    const first = (await cluster.iptablesSave()).split('\n').find((l) => l.startsWith(`-A ${chain} `));
    assert.equal(first, `-A ${chain} -m comment --comment "edgemesh root chain" -j EDGE-MESH`);
  }
  assert.ok(ours.some((l) => l.startsWith('-A EDGE-MESH-TCP -d 10.96.10.10/32 ') && l.includes('REDIRECT')));

  const web = await cluster.chainPackets(KP.web);
  const answers = await bodies(cluster, podA, WEB, 4);
  assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
  assert.equal(await cluster.chainPackets(KP.web), web);
  assert.equal(portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http'), 4);

  const dns = await cluster.chainPackets(KP.dnsUdp);
  await cluster.dig(podA, '10.96.0.10', 'example.org');
  assert.ok((await cluster.chainPackets(KP.dnsUdp)) > dns);
  const grafana = await cluster.chainPackets(KP.grafana);
  assert.equal(await cluster.curl(podA, 'http://10.96.20.20:3000/'), 'pod-a');
  assert.ok((await cluster.chainPackets(KP.grafana)) > grafana);

  assert.equal(await agent.stop('SIGTERM'), 0, agent.stderr());
  assert.deepEqual(ourRules(await cluster.iptablesSave()), []);
});

test('FilterIfLabelDoesNotExists: only labelled services are proxied (metrics summed per protocol)', async (t) => {
  const { cluster, agent } = await setupAgentCluster(t, { config: { serviceFilterMode: 'FilterIfLabelDoesNotExists', metricsPerServicePort: false } });
  assert.ok(agent);
  const podA = cluster.pod('pod-a').ns;

  // grafana carries the label: now it is ours.
  const grafana = await cluster.chainPackets(KP.grafana);
  assert.equal(await cluster.curl(podA, 'http://10.96.20.20:3000/'), 'pod-a');
  assert.equal(await cluster.chainPackets(KP.grafana), grafana);
  const metrics = await agent.metrics();
  assert.equal(metrics.get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 1);
  assert.equal(metrics.get('edgeproxy_service_ports{protocol="TCP"}'), 1);
  assert.ok(![...metrics.keys()].some((k) => k.includes('service_port=')), 'no per-port series');
  // web does not: kube-proxy's.
  const web = await cluster.chainPackets(KP.web);
  await bodies(cluster, podA, WEB, 3);
  assert.equal((await cluster.chainPackets(KP.web)) - web, 3);
  assert.deepEqual(ourRules(await cluster.iptablesSave()).filter((l) => l.includes('--to-ports')).map((l) => l.match(/--comment "([^"]+)"/)![1]), [
    'monitoring/grafana:http',
    'monitoring/grafana:http',
  ]);
});

test('agent started before kube-proxy: the order is repaired within one resync; SIGKILL then cleanup', async (t) => {
  // An empty nat table: the agent comes up first (the default config resyncs every second).
  const { cluster, agent } = await setupAgentCluster(t, { kubeProxyFirst: false });
  assert.ok(agent);
  const podA = cluster.pod('pod-a').ns;
  // kube-proxy starts: its jumps go in at position 1, in front of ours.
  await startKubeProxyAfterAgent(cluster);
  const firstJump = async () => (await cluster.iptablesSave()).split('\n').find((l) => l.startsWith('-A PREROUTING '));
  const repairedWithin = Date.now();
  await agent.waitForLog((l) => l.msg === 'chain order repaired: our jump is first again', 3000, 'chain order repair');
  assert.ok(Date.now() - repairedWithin < 2500);
  assert.match((await firstJump())!, /-j KUBE-PORTALS-CONTAINER$/);
  const status = await edgeproxy(cluster, ['status']);
  assert.equal(status.code, 0, status.stdout);
  assert.equal((await agent.metrics()).get('edgeproxy_chain_order_repairs_total'), 2); // PREROUTING and OUTPUT

  const web = await cluster.chainPackets(KP.web);
  assert.deepEqual(new Set(await bodies(cluster, podA, WEB, 4)), new Set(['pod-a', 'pod-b']));
  assert.equal(await cluster.chainPackets(KP.web), web);

  // `status` explains a wrong order: put KUBE-SERVICES in front by hand and ask before the next resync.
  await agent.stop('SIGKILL');
  await cluster.run(cluster.nodeNs, 'iptables', ['-t', 'nat', '-D', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
  await cluster.run(cluster.nodeNs, 'iptables', ['-t', 'nat', '-I', 'PREROUTING', '1', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
  const wrong = await edgeproxy(cluster, ['status']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, /KUBE-SERVICES \(position 1\) is before KUBE-PORTALS-CONTAINER \(position 2\)/);
  assert.match(wrong.stdout, /No route to host/);

  // After SIGKILL our rules are still there; `edgeproxy cleanup` removes them and nothing else.
  assert.ok(ourRules(await cluster.iptablesSave()).length > 0);
  const kubeProxyBefore = kubeProxyRules(await cluster.iptablesSave());
  const cleanup = await edgeproxy(cluster, ['cleanup']);
  assert.equal(cleanup.code, 0, cleanup.stderr);
  assert.deepEqual(ourRules(await cluster.iptablesSave()), []);
  assert.deepEqual(kubeProxyRules(await cluster.iptablesSave()), kubeProxyBefore);
  assert.match((await edgeproxy(cluster, ['cleanup'])).stdout, /nothing to remove/);
  assert.match(await cluster.curl(podA, WEB), /^pod-[ab]$/);
});

test('kube-proxy on iptables-legacy: the agent finds that backend and goes in front of it there', async (t) => {
  const env = await setupAgentCluster(t, { kubeProxyFirst: false, start: false });
  const { cluster } = env;
  const legacySave = async (counters = false) => cluster.run(cluster.nodeNs, 'iptables-legacy-save', counters ? ['-c', '-t', 'nat'] : ['-t', 'nat']);
  /** Packets through the jumps to `chain` in the legacy nat table. */
  const legacyPackets = async (chain: string) =>
    (await legacySave(true))
      .split('\n')
      .filter((l) => l.endsWith(` -j ${chain}`))
      .reduce((sum, l) => sum + Number(/^\[(\d+):/.exec(l)?.[1] ?? 0), 0);
  await cluster.run(cluster.nodeNs, 'iptables-legacy-restore', [], { input: await readFile(kubeProxyRulesFile, 'utf8') });
  const kubeProxyBefore = kubeProxyRules(await legacySave());
  const agent = (env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile }));
  const podA = cluster.pod('pod-a').ns;
  assert.ok(agent.logs.some((l) => l.msg === 'iptables backend' && l['backend'] === 'legacy'), 'backend logged');

  // Our jumps first in the legacy table; nothing of ours in nf_tables, where kube-proxy is not.
  const prerouting = (await legacySave()).split('\n').filter((l) => l.startsWith('-A PREROUTING'));
  assert.match(prerouting[0]!, /-j KUBE-PORTALS-CONTAINER$/);
  assert.match(prerouting[1]!, /-j KUBE-SERVICES$/);
  assert.deepEqual(ourRules(await cluster.iptablesSave()), []);
  const status = await edgeproxy(cluster, ['status']);
  assert.equal(status.code, 0, status.stdout + status.stderr);
  assert.match(status.stdout, /^iptables backend: legacy \(kube-proxy's KUBE-SERVICES is in the legacy backend's nat table\)$/m);
  assert.match(status.stdout, /PREROUTING -> KUBE-PORTALS-CONTAINER: position 1, KUBE-SERVICES at 2 ok/);

  // web through the agent (kube-proxy's chain sees nothing), kube-dns through kube-proxy's legacy DNAT.
  const web = await legacyPackets(KP.web);
  assert.deepEqual(new Set(await bodies(cluster, podA, WEB, 4)), new Set(['pod-a', 'pod-b']));
  assert.equal(await legacyPackets(KP.web), web);
  assert.equal(portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http'), 4);
  const dns = await legacyPackets(KP.dnsUdp);
  assert.ok(['10.0.0.7', '10.0.0.8'].includes((await cluster.dig(podA, '10.96.0.10', 'web.default.svc.cluster.local'))[0]!));
  assert.ok((await legacyPackets(KP.dnsUdp)) > dns);

  // SIGTERM cleans the legacy table back to kube-proxy's rules alone.
  assert.equal(await agent.stop('SIGTERM'), 0, agent.stderr());
  assert.deepEqual(ourRules(await legacySave()), []);
  assert.deepEqual(kubeProxyRules(await legacySave()), kubeProxyBefore);
  assert.match(await cluster.curl(podA, WEB), /^pod-[ab]$/);

  // A killed agent's rules: `edgeproxy cleanup` finds them in the legacy table too.
  const killed = (env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile }));
  await killed.stop('SIGKILL');
  assert.ok(ourRules(await legacySave()).length > 0);
  const cleanup = await edgeproxy(cluster, ['cleanup']);
  assert.equal(cleanup.code, 0, cleanup.stderr);
  assert.match(cleanup.stdout, /removed the edgeproxy chains and their jumps \(iptables legacy\)/);
  assert.deepEqual(ourRules(await legacySave()), []);
  assert.deepEqual(kubeProxyRules(await legacySave()), kubeProxyBefore);
});
