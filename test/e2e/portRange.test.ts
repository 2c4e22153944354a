// proxy.portRange in the namespace cluster: every REDIRECT points into the range, a port of the
// range that another process holds is skipped, and TCP (with worker threads) and UDP traffic
// goes through the agent. Needs root and iptables: without them these tests fail (they never skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeBin } from '../support/cluster.ts';
import { kubeProxyRules, ourRules, portMetric, setupAgentCluster, startAgent, stopAndCheckClean } from '../support/agent.ts';

const RANGE = { from: 20000, to: 20003 };
const HELD = RANGE.from;
/** kube-proxy's chain for default/web:http in the fixture. */
const KP_WEB = 'KUBE-SVC-CDGGSHYLG3RE2FKL';

test('proxy.portRange: rules point into the range, a held port is skipped, traffic goes through the agent', async (t) => {
  const env = await setupAgentCluster(t, { config: { proxy: { portRange: `${RANGE.from}-${RANGE.to}`, workers: 2 } }, start: false });
  const { cluster } = env;
  // Another process on the node holds the range's first TCP port (SO_REUSEPORT, as a careless
  // neighbour might: without the agent's probe its workers would join it).
  const holder = cluster.spawn(cluster.nodeNs, nodeBin, [
    '-e',
    `require('node:net').createServer((s) => s.end('holder')).listen({ port: ${HELD}, reusePort: true }, () => console.log('ready'))`,
  ]);
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  const kubeProxyBefore = kubeProxyRules(await cluster.iptablesSave());
  const agent = (env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile }));
  const podA = cluster.pod('pod-a').ns;

  const toPorts = (saved: string) =>
    ourRules(saved)
      .filter((l) => l.includes('REDIRECT'))
      .map((l) => ({ protocol: / -p (tcp|udp) /.exec(l)![1]!, port: Number(/--to-ports (\d+)/.exec(l)![1]) }));
  const redirects = toPorts(await cluster.iptablesSave());
  // The examples' proxied ports: three TCP, one UDP, each in both portal chains.
  assert.equal(redirects.length, 8);
  for (const r of redirects) assert.ok(r.port >= RANGE.from && r.port <= RANGE.to, `--to-ports ${r.port} outside the range`);
  const tcp = new Set(redirects.filter((r) => r.protocol === 'tcp').map((r) => r.port));
  assert.deepEqual([...tcp].sort(), [HELD + 1, HELD + 2, HELD + 3], 'TCP skips the held port');
  assert.deepEqual([...new Set(redirects.filter((r) => r.protocol === 'udp').map((r) => r.port))], [RANGE.from], 'UDP numbers on its own');
  await agent.waitForLog((l) => l.listenPort === HELD && /held by another process/.test(String(l.msg)), 2000, 'the skip logged');

  const kubeProxyWeb = await cluster.chainPackets(KP_WEB);
  const before = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http');
  const answers: string[] = [];
  for (const ns of [podA, cluster.nodeNs]) for (let i = 0; i < 4; i++) answers.push(await cluster.curl(ns, 'http://10.96.10.10/'));
  assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
  assert.equal(portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http') - before, 8);
  assert.equal(await cluster.chainPackets(KP_WEB), kubeProxyWeb, "kube-proxy's web chain sees none of it");
  assert.match(await cluster.udp(podA, '10.96.30.30', 99), /^pod-[ab]$/);
  // Every connection to the held port reaches the holder: no listener of the agent shares it.
  const readHeld = `require('node:net').connect(${HELD}, '127.0.0.1').on('data', (d) => process.stdout.write(d))`;
  for (let i = 0; i < 6; i++) assert.equal(await cluster.run(cluster.nodeNs, nodeBin, ['-e', readHeld]), 'holder');

  await stopAndCheckClean(cluster, agent, kubeProxyBefore, podA, 'http://10.96.10.10/');
});
