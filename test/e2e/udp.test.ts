// The UDP proxy in the namespace cluster: echo-udp and a DNS service answered through the agent's
// flows, many clients at once, an endpoint removed under live flows, and the edge-mesh layout.
// Needs root and iptables: without them these tests fail (they never skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { nodeBin, repoRoot, type Cluster } from '../support/cluster.ts';
import { ourRules, portMetric, setupAgentCluster, startAgent } from '../support/agent.ts';
import { spawnSync } from 'node:child_process';

const udpClientsScript = join(repoRoot, 'test', 'support', 'udpClients.ts');
/** kube-proxy's chain for default/echo-udp:p in the fixture. */
const KP_ECHO_UDP = 'KUBE-SVC-Y2LSNFHIJ2MNE4BJ';
const ECHO = { ip: '10.96.30.30', port: 99, portName: 'default/echo-udp:p' };
const DNS = { ip: '10.96.40.40', port: 53, portName: 'default/dns-edge:dns' };
const POD_A_DNS = '10.0.0.7';
const POD_B_DNS = '10.0.0.8';

/** A proxied DNS-like UDP service (kube-proxy's fixture has no rules for it). */
const DNS_EDGE_MANIFEST = `apiVersion: v1
kind: Service
metadata:
  name: dns-edge
  namespace: default
spec:
  clusterIP: ${DNS.ip}
  ports:
    - { name: dns, protocol: UDP, port: 53, targetPort: 53 }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-edge-1
  namespace: default
  labels:
    kubernetes.io/service-name: dns-edge
addressType: IPv4
ports:
  - { name: dns, protocol: UDP, port: 53 }
endpoints:
  - addresses: [10.244.7.2]
    conditions: { ready: true }
  - addresses: [10.244.8.2]
    conditions: { ready: true }
`;

function udpMetric(m: Map<string, number>, name: string, portName: string, label?: [string, string]): number {
  const extra = label ? `,${label[0]}="${label[1]}"` : '';
  return m.get(`${name}{service_port="${portName}",protocol="UDP"${extra}}`) ?? 0;
}

async function eventually(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(100);
  }
  assert.fail(`not within ${timeoutMs} ms: ${what}`);
}

interface Burst {
  sent: number;
  answered: number;
  replies: Record<string, number>;
  wrongSource: number;
}

async function burst(cluster: Cluster, ns: string, host: string, port: number, n: number, dnsName?: string, timeoutMs = 3000): Promise<Burst> {
  const out = await cluster.run(ns, nodeBin, [udpClientsScript, 'burst', host, String(port), String(n), String(timeoutMs), ...(dnsName ? [dnsName] : [])], {
    timeoutMs: 15_000,
  });
  return JSON.parse(out) as Burst;
}

/** One long-lived client socket in ns sending every 100 ms; collects "<seq> <answer>" lines. */
async function streamClient(cluster: Cluster, ns: string, host: string, port: number, dnsName?: string) {
  const child = cluster.spawn(ns, nodeBin, [udpClientsScript, 'stream', host, String(port), '100', ...(dnsName ? [dnsName] : [])]);
  child.stderr!.resume();
  const answers: string[] = [];
  let sourcePort = 0;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const [first, second] = line.split(' ');
    if (first === 'ready') sourcePort = Number(second);
    else if (second !== undefined) answers.push(second);
  });
  await eventually('stream client answered', () => answers.length >= 3, 5000);
  return {
    answers,
    sourcePort: () => sourcePort,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

async function setup(t: { after(fn: () => Promise<void>): void }, config: Record<string, unknown>) {
  const env = await setupAgentCluster(t, { config, start: false });
  await writeFile(join(env.manifests, 'dns-edge.yaml'), DNS_EDGE_MANIFEST);
  const agent = (env.agent = await startAgent(env.cluster, { manifests: env.manifests, config: env.configFile }));
  return { cluster: env.cluster, manifests: env.manifests, agent };
}

test('UDP through the agent (portals layout): echo, DNS, many clients, endpoint removal', async (t) => {
  const { cluster, manifests, agent } = await setup(t, { layout: 'portals' });
  const podA = cluster.pod('pod-a').ns;

  await t.test('echo-udp answers from both pods through the agent, from a pod and from the node', async () => {
    const saved = ourRules(await cluster.iptablesSave());
    assert.ok(saved.some((l) => l.includes(`-d ${ECHO.ip}/32 -p udp`) && l.includes('REDIRECT')), saved.join('\n'));
    const kubeProxy = await cluster.chainPackets(KP_ECHO_UDP);
    const before = await agent.metrics();
    const answers: string[] = [];
    for (const ns of [podA, cluster.nodeNs]) for (let i = 0; i < 4; i++) answers.push(await cluster.udp(ns, ECHO.ip, ECHO.port));
    // Each probe is a new socket, so a new flow: round robin alternates.
    for (let i = 1; i < 4; i++) assert.notEqual(answers[i], answers[i - 1], `not alternating: ${answers}`);
    assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
    const after = await agent.metrics();
    const delta = (name: string, label?: [string, string]) => udpMetric(after, name, ECHO.portName, label) - udpMetric(before, name, ECHO.portName, label);
    assert.equal(delta('edgeproxy_udp_flows_created_total'), 8);
    assert.equal(delta('edgeproxy_udp_datagrams_total', ['direction', 'in']), 8);
    assert.equal(delta('edgeproxy_udp_datagrams_total', ['direction', 'out']), 8);
    assert.equal(portMetric(after, 'edgeproxy_bytes_out_total', ECHO.portName, 'UDP') - portMetric(before, 'edgeproxy_bytes_out_total', ECHO.portName, 'UDP'), 8 * 'pod-a'.length);
    assert.equal(await cluster.chainPackets(KP_ECHO_UDP), kubeProxy, "kube-proxy's echo-udp chain must see none of it");
  });

  await t.test('dig @ClusterIP gets its answer through the agent, from a pod and from the node', async () => {
    const before = udpMetric(await agent.metrics(), 'edgeproxy_udp_flows_created_total', DNS.portName);
    const answers: string[] = [];
    // dig checks that the reply comes from the address it asked: conntrack must un-REDIRECT it.
    for (const ns of [podA, cluster.nodeNs]) for (let i = 0; i < 3; i++) answers.push(...(await cluster.dig(ns, DNS.ip, 'web.default.svc.cluster.local')));
    assert.equal(answers.length, 6);
    assert.deepEqual(new Set(answers), new Set([POD_A_DNS, POD_B_DNS]));
    const after = await agent.metrics();
    assert.equal(udpMetric(after, 'edgeproxy_udp_flows_created_total', DNS.portName) - before, 6);
    assert.equal(udpMetric(after, 'edgeproxy_udp_datagrams_dropped_total', DNS.portName, ['reason', 'no_backend']), 0);
  });

  await t.test('50 clients at once (50 source ports) are all answered, by both pods', async () => {
    for (const [ns, target, name] of [[podA, ECHO, undefined], [cluster.nodeNs, DNS, 'many.example']] as const) {
      const before = udpMetric(await agent.metrics(), 'edgeproxy_udp_flows_created_total', target.portName);
      const r = await burst(cluster, ns, target.ip, target.port, 50, name);
      assert.equal(r.answered, 50, JSON.stringify(r));
      assert.equal(r.wrongSource, 0, 'every reply comes from the ClusterIP:port asked');
      assert.equal(Object.keys(r.replies).length, 2, JSON.stringify(r));
      // Round robin over 50 new flows: 25 each.
      for (const count of Object.values(r.replies)) assert.equal(count, 25, JSON.stringify(r));
      assert.equal(udpMetric(await agent.metrics(), 'edgeproxy_udp_flows_created_total', target.portName) - before, 50);
    }
  });

  await t.test('an endpoint removed under live flows: the same client sockets are answered by the remaining pod', async () => {
    const clients = [await streamClient(cluster, podA, DNS.ip, DNS.port, 'live.example'), await streamClient(cluster, podA, DNS.ip, DNS.port, 'live.example')];
    t.after(() => clients.forEach((c) => c.stop()));
    // Two new flows in a row: round robin puts one on each pod, and each stays there.
    const pinned = clients.map((c) => c.answers.at(-1));
    assert.deepEqual(new Set(pinned), new Set([POD_A_DNS, POD_B_DNS]));
    for (const c of clients) assert.equal(new Set(c.answers).size, 1, `a flow switched endpoints: ${c.answers}`);
    const rerouted = udpMetric(await agent.metrics(), 'edgeproxy_udp_flows_rerouted_total', DNS.portName);

    const file = join(manifests, 'dns-edge.yaml');
    await writeFile(file, DNS_EDGE_MANIFEST.replace('  - addresses: [10.244.8.2]\n    conditions: { ready: true }\n', ''));
    const marks = clients.map((c) => c.answers.length);
    await eventually('both clients answered by pod-a only', () =>
      clients.every((c, i) => c.answers.length >= marks[i]! + 3 && c.answers.slice(-3).every((a) => a === POD_A_DNS)),
    );
    // At least the live client's flow; earlier tests' flows to pod-b (not idle for 30 s yet) move too.
    assert.ok(udpMetric(await agent.metrics(), 'edgeproxy_udp_flows_rerouted_total', DNS.portName) - rerouted >= 1);
    // No gap: every datagram after the switch is answered (one every 100 ms).
    const counts = clients.map((c) => c.answers.length);
    await sleep(1000);
    for (const [i, c] of clients.entries()) assert.ok(c.answers.length - counts[i]! >= 8, `answers in 1 s: ${c.answers.length - counts[i]!}`);
    clients.forEach((c) => c.stop());
    await writeFile(file, DNS_EDGE_MANIFEST);
  });

  await t.test('a service whose endpoints are all gone drops and counts datagrams', async () => {
    const file = join(manifests, 'dns-edge.yaml');
    const original = await readFile(file, 'utf8');
    await writeFile(file, original.replace(/endpoints:\n[\s\S]*$/, 'endpoints: []\n'));
    await eventually('no usable endpoint', async () => (await agent.metrics()).get(`edgeproxy_usable_backends{service_port="${DNS.portName}",protocol="UDP"}`) === 0);
    const r = await burst(cluster, podA, DNS.ip, DNS.port, 5, 'none.example', 500);
    assert.equal(r.answered, 0);
    assert.ok(udpMetric(await agent.metrics(), 'edgeproxy_udp_datagrams_dropped_total', DNS.portName, ['reason', 'no_backend']) >= 5);
    await writeFile(file, original);
    await eventually('dns-edge answers again', async () => (await burst(cluster, podA, DNS.ip, DNS.port, 2, 'back.example', 500)).answered === 2);
  });

  await t.test('SIGTERM closes the UDP listeners and removes their rules', async () => {
    assert.equal(await agent.stop('SIGTERM'), 0, agent.stderr());
    assert.deepEqual(ourRules(await cluster.iptablesSave()), []);
    // kube-proxy takes echo-udp back.
    assert.match(await cluster.udp(podA, ECHO.ip, ECHO.port), /^pod-[ab]$/);
  });
});

test('UDP through the agent (edge-mesh layout): EDGE-MESH-UDP redirects echo-udp and dns-edge', async (t) => {
  const { cluster, agent } = await setup(t, { layout: 'edge-mesh', serviceCIDR: '10.96.0.0/16' });
  const podA = cluster.pod('pod-a').ns;
  const ours = ourRules(await cluster.iptablesSave());
  for (const svc of [ECHO, DNS]) {
    assert.ok(
      ours.some((l) => l.startsWith(`-A EDGE-MESH-UDP -d ${svc.ip}/32 -p udp -m comment --comment "${svc.portName}" -m udp --dport ${svc.port} -j REDIRECT`)),
      ours.join('\n'),
    );
  }
  const kubeProxy = await cluster.chainPackets(KP_ECHO_UDP);
  const answers: string[] = [];
  for (let i = 0; i < 4; i++) answers.push(await cluster.udp(podA, ECHO.ip, ECHO.port));
  assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
  assert.equal((await cluster.dig(podA, DNS.ip, 'x.example')).length, 1);
  const m = await agent.metrics();
  assert.equal(udpMetric(m, 'edgeproxy_udp_datagrams_total', ECHO.portName, ['direction', 'out']), 4);
  assert.equal(udpMetric(m, 'edgeproxy_udp_flows_active', ECHO.portName), 4);
  assert.equal(udpMetric(m, 'edgeproxy_udp_datagrams_total', DNS.portName, ['direction', 'out']), 1);
  assert.equal(await cluster.chainPackets(KP_ECHO_UDP), kubeProxy);
});

test('a UDP flow that never pauses moves to the agent when it starts and back to kube-proxy when it stops', async (t) => {
  assert.ok(missingConntrack() === undefined, 'conntrack (package conntrack) is required for this test');
  const env = await setupAgentCluster(t, { start: false });
  const { cluster } = env;
  const podA = cluster.pod('pod-a').ns;
  // The client sends every 100 ms from one source port, so its conntrack entry never expires.
  const client = await streamClient(cluster, podA, ECHO.ip, ECHO.port);
  t.after(() => client.stop());
  const viaKubeProxy = await cluster.chainPackets(KP_ECHO_UDP);
  assert.ok(viaKubeProxy >= 1, 'the flow starts on kube-proxy');

  const agent = (env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile }));
  await eventually('the running flow goes through the agent', async () => {
    const m = await agent.metrics();
    return (m.get('edgeproxy_udp_flows_active{service_port="default/echo-udp:p",protocol="UDP"}') ?? 0) >= 1;
  }, 3000);

  const answered = client.answers.length;
  assert.equal(await agent.stop('SIGTERM'), 0, agent.stderr());
  env.agent = undefined;
  await eventually('answers keep coming after the agent stopped (kube-proxy again)', async () => client.answers.length >= answered + 5, 3000);
  assert.ok((await cluster.chainPackets(KP_ECHO_UDP)) > viaKubeProxy, "the flow is back on kube-proxy's chain");
});

function missingConntrack(): string | undefined {
  return spawnSync('conntrack', ['--version']).error ? 'conntrack' : undefined;
}
