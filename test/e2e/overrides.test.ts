// A node with over a thousand proxied service ports: a change goes into the long portal chains as
// overrides (no deletion), traffic obeys them at once, and the agent's next quiet resync deletes
// what they overrode. Needs root and iptables: without them this test fails (it never skips).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { edgeproxy, kubeProxyRules, ourRules, portMetric, setupAgentCluster, startAgent, stopAndCheckClean } from '../support/agent.ts';

const FILLER = 1100;
const SERVER = '10.244.8.2';
const ipOf = (i: number) => `10.97.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** load/svc-i: one HTTP port each to pod-b's 8080, as one JSON List file. */
function fillerManifest(ports: Map<number, number>): string {
  const items = [...ports].flatMap(([i, port]) => [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${i}`, namespace: 'load' },
      spec: { clusterIP: ipOf(i), ports: [{ name: 'http', protocol: 'TCP', port, targetPort: 8080 }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `svc-${i}-1`, namespace: 'load', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
      addressType: 'IPv4',
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: [{ addresses: [SERVER], conditions: { ready: true } }],
    },
  ]);
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/** Packet counters of the rules of KUBE-PORTALS-CONTAINER that mention `text`, by rule. */
function containerCounters(savedWithCounters: string, text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of savedWithCounters.split('\n')) {
    const m = /^\[(\d+):\d+\] (-A KUBE-PORTALS-CONTAINER .*)$/.exec(line);
    if (m && m[2]!.includes(text)) out.set(m[2]!, Number(m[1]));
  }
  return out;
}

test('1,000+ services: a change goes in as overrides that traffic obeys at once; the next quiet resync tidies them', async (t) => {
  // A resync period long enough to look at the overrides before they are tidied away.
  const env = await setupAgentCluster(t, { config: { iptables: { syncPeriod: '6s', minSyncPeriod: '100ms' } }, start: false });
  const { cluster } = env;
  const ports = new Map(Array.from({ length: FILLER }, (_, i) => [i, 80] as [number, number]));
  const filler = join(env.manifests, 'load.json');
  await writeFile(filler, fillerManifest(ports));
  const kubeProxyBefore = kubeProxyRules(await cluster.iptablesSave());
  const agent = (env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile }));
  const podA = cluster.pod('pod-a').ns;
  assert.equal(await cluster.curl(podA, `http://${ipOf(3)}/`), 'pod-b');
  const initialRules = ourRules(await cluster.iptablesSave()).length;

  // svc-3 moves from port 80 to 81; svc-7 goes away.
  ports.set(3, 81);
  ports.delete(7);
  // Written aside and renamed, so the watcher sees one complete change.
  await writeFile(`${filler}.tmp`, fillerManifest(ports));
  await rename(`${filler}.tmp`, filler);
  const removedReturn = `-A KUBE-PORTALS-CONTAINER -d ${ipOf(7)}/32 -p tcp -m comment --comment "edgeproxy removed: load/svc-7:http" -m tcp --dport 80 -j RETURN`;
  const deadline = Date.now() + 10_000;
  while (!ourRules(await cluster.iptablesSave()).includes(removedReturn)) {
    assert.ok(Date.now() < deadline, 'the RETURN override for svc-7 never appeared');
    await new Promise((r) => setTimeout(r, 100));
  }
  const overridden = ourRules(await cluster.iptablesSave());
  assert.ok(overridden.some((l) => l.includes('"load/svc-7:http"') && l.includes('REDIRECT')), 'svc-7 REDIRECT still there, overridden');

  // Traffic obeys the overrides: svc-3 answers on 81 through the agent; svc-7 meets the RETURN, never its old REDIRECT.
  const before = containerCounters(await cluster.iptablesSave({ counters: true }), ipOf(7) + '/32');
  const accepted = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'load/svc-3:http');
  assert.equal(await cluster.curl(podA, `http://${ipOf(3)}:81/`), 'pod-b');
  assert.equal(portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'load/svc-3:http') - accepted, 1);
  await cluster.curl(podA, `http://${ipOf(7)}/`, { timeoutMs: 1000 }).then(
    () => assert.fail('svc-7 answered after its removal'),
    () => {},
  );
  const after = containerCounters(await cluster.iptablesSave({ counters: true }), ipOf(7) + '/32');
  const redirect7 = [...after.keys()].find((l) => l.includes('REDIRECT'))!;
  assert.ok((after.get(removedReturn) ?? 0) > (before.get(removedReturn) ?? 0), 'svc-7 packets meet the RETURN');
  assert.equal(after.get(redirect7), before.get(redirect7), 'and never the old REDIRECT');
  const status = await edgeproxy(cluster, ['status']);
  // Per chain: the two RETURNs and the two rules they override.
  assert.match(status.stdout, /chain KUBE-PORTALS-CONTAINER: \d+ rules \(4 overridden by a later change/);

  // The next resync has nothing to change: it deletes the overridden rules.
  const tidyBy = Date.now() + 15_000;
  while (ourRules(await cluster.iptablesSave()).some((l) => l.includes('edgeproxy removed'))) {
    assert.ok(Date.now() < tidyBy, 'the overrides were never tidied away');
    await new Promise((r) => setTimeout(r, 200));
  }
  const tidy = ourRules(await cluster.iptablesSave());
  assert.ok(!tidy.some((l) => l.includes('"load/svc-7:http"')), 'svc-7 is gone');
  assert.deepEqual(
    tidy.filter((l) => l.includes('"load/svc-3:http"')).map((l) => /--dport (\d+)/.exec(l)![1]),
    ['81', '81'],
    'svc-3 only on port 81, in both chains',
  );
  assert.equal(tidy.length, initialRules - 2, 'one service fewer, in both chains');
  assert.doesNotMatch((await edgeproxy(cluster, ['status'])).stdout, /overridden/);

  await stopAndCheckClean(cluster, agent, kubeProxyBefore, podA, 'http://10.96.10.10/');
});
