// Self-test of the namespace cluster harness: kube-proxy's fixture rules alone must serve every
// kind of service from the node and from a pod, and destroy() must leave nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createCluster, requirePrivileges } from '../support/cluster.ts';

const WEB_SVC_CHAIN = 'KUBE-SVC-CDGGSHYLG3RE2FKL'; // default/web:http

function namespacesNow(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** PIDs whose command line mentions the cluster prefix (the servers carry --tag <prefix>). */
function processesTagged(prefix: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes(prefix) || args.some((a) => a.startsWith(`${prefix}-`))) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

test('namespace cluster serves kube-proxy services and cleans up', { timeout: 30_000 }, async (t) => {
  requirePrivileges();
  const cluster = await createCluster();
  t.after(() => cluster.destroy());
  const nsNames = [cluster.nodeNs, cluster.routerNs, ...cluster.pods.map((p) => p.ns)];
  assert.deepEqual(nsNames.filter((ns) => !namespacesNow().includes(ns)), []);

  await cluster.loadKubeProxyRules();
  assert.match(await cluster.iptablesSave(), /KUBE-SVC-CDGGSHYLG3RE2FKL/);

  const podA = cluster.pod('pod-a');
  for (const from of [cluster.nodeNs, podA.ns]) {
    await t.test(`services reachable from ${from === cluster.nodeNs ? 'node' : 'pod-a'}`, async () => {
      const before = await cluster.chainPackets(WEB_SVC_CHAIN);
      const bodies = new Set<string>();
      // kube-proxy picks each endpoint with p=0.5: 12 requests all hitting one pod has p≈0.05%.
      for (let i = 0; i < 12; i++) bodies.add(await cluster.curl(from, 'http://10.96.10.10/'));
      assert.deepEqual([...bodies].sort(), ['pod-a', 'pod-b']);
      assert.ok((await cluster.chainPackets(WEB_SVC_CHAIN)) >= before + 12, 'kube-proxy web chain saw the connections');

      const udpAnswer = await cluster.dig(from, '10.96.0.10', 'anything.example');
      assert.equal(udpAnswer.length, 1);
      assert.ok(['10.0.0.7', '10.0.0.8'].includes(udpAnswer[0]!), `dns answer ${udpAnswer[0]}`);
      const tcpAnswer = await cluster.dig(from, '10.96.0.10', 'anything.example', { tcp: true });
      assert.ok(['10.0.0.7', '10.0.0.8'].includes(tcpAnswer[0] ?? ''), `dns-tcp answer ${tcpAnswer.join(',')}`);

      assert.equal(await cluster.curl(from, 'http://10.96.0.1:443/'), 'apiserver');
      assert.ok(['pod-a', 'pod-b'].includes(await cluster.udp(from, '10.96.30.30', 99)));
      assert.equal(await cluster.curl(from, 'http://10.96.20.20:3000/'), 'pod-a');
      assert.ok(['pod-a', 'pod-b'].includes(await cluster.curl(from, 'http://10.96.10.12:82/')));
    });
  }

  await t.test('hairpin: pod-a reaches itself through its ClusterIP (masqueraded)', async () => {
    // grafana has only pod-a as endpoint; /client shows the source the server saw.
    assert.equal(await cluster.curl(podA.ns, 'http://10.96.20.20:3000/client').then((c) => c.split(':')[0]), '10.244.7.1');
  });

  await t.test('extra servers can be started for new services', async () => {
    await cluster.startServer(podA.ns, { name: 'extra', tcpPorts: [8181] });
    assert.equal(await cluster.curl(cluster.nodeNs, `http://${podA.ip}:8181/`), 'extra');
  });

  const pids = cluster.trackedPids();
  assert.ok(pids.length >= 3, `servers tracked: ${pids.join(',')}`);
  assert.deepEqual(processesTagged(cluster.prefix).sort(), [...pids].sort());

  await cluster.destroy();
  await cluster.destroy(); // idempotent
  assert.deepEqual(nsNames.filter((ns) => namespacesNow().includes(ns)), []);
  assert.deepEqual(processesTagged(cluster.prefix), []);
  assert.deepEqual(cluster.trackedPids(), []);
});
