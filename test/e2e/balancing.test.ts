// Balancing policies end to end: Service sessionAffinity ClientIP, an Istio DestinationRule added,
// changed and removed while the agent runs, and internalTrafficPolicy Local with the config's
// nodeName. Needs root and iptables (namespaces only; never skips).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createCluster, requirePrivileges, type Cluster } from '../support/cluster.ts';
import { copyExampleManifests, edgeproxy, removeDir, startAgent, writeConfig, type LogLine, type RunningAgent } from '../support/agent.ts';

const WEB = 'http://10.96.10.10/';
const STICKY = 'http://10.96.10.12:82/';
const LOCAL = 'http://10.96.10.16:86/';
const LOCAL_NONE = 'http://10.96.10.17:87/';
const NODE_NAME = 'edge-a';

// Two Local services: "local" has an endpoint on this node (pod-a), "local-none" only elsewhere.
const LOCAL_MANIFESTS = ['local', 'local-none']
  .map((name, i) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  clusterIP: 10.96.10.${16 + i}
  internalTrafficPolicy: Local
  ports: [{ name: http, protocol: TCP, port: ${86 + i}, targetPort: 8080 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-1, namespace: default, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: http, protocol: TCP, port: 8080 }]
endpoints:
${name === 'local' ? `  - { addresses: [10.244.7.2], nodeName: ${NODE_NAME} }\n` : ''}  - { addresses: [10.244.8.2], nodeName: edge-b }
`)
  .join('---\n');

function destinationRule(loadBalancer: string): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: web, namespace: default }
spec:
  host: web
  trafficPolicy:
    loadBalancer: ${loadBalancer}
`;
}

async function bodies(cluster: Cluster, fromNs: string, url: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await cluster.curl(fromNs, url));
  return out;
}

const policyChanged = (port: string, policy: string) => (l: LogLine) => l.msg === 'balancing policy changed' && l['proxyPort'] === port && l['policy'] === policy;

test('balancing: affinity, DestinationRule policies, internalTrafficPolicy Local', async (t) => {
  requirePrivileges();
  const cluster = await createCluster();
  const manifests = await copyExampleManifests();
  await writeFile(join(manifests, 'local.yaml'), LOCAL_MANIFESTS);
  const config = await writeConfig({ nodeName: NODE_NAME });
  let agent: RunningAgent | undefined;
  t.after(async () => {
    await agent?.stop('SIGKILL');
    await cluster.destroy();
    await removeDir(manifests);
    await removeDir(dirname(config));
  });
  await cluster.loadKubeProxyRules();
  agent = await startAgent(cluster, { manifests, config });
  const podA = cluster.pod('pod-a').ns;
  const podB = cluster.pod('pod-b').ns;

  await t.test('plan shows each policy and why a Local service has no endpoint', async () => {
    const plan = await edgeproxy(cluster, ['plan', '--manifests', manifests, '--config', config]);
    assert.equal(plan.code, 0, plan.stderr);
    const row = (svc: string) => plan.stdout.split('\n').find((l) => l.startsWith(`${svc} `)) ?? '';
    assert.match(row('default/sticky'), /edgeproxy\s+affinity 10800s\s/);
    assert.match(row('default/web'), /edgeproxy\s+round-robin\s/);
    assert.match(row('default/local'), /10\.244\.7\.2:8080\s+edgeproxy/);
    assert.match(row('default/local-none'), /<none>.*internalTrafficPolicy Local: no usable endpoint on node "edge-a" \(1 elsewhere\); connections are refused/);
  });

  await t.test('sessionAffinity ClientIP: every request of a client goes to one pod', async () => {
    for (const ns of [podA, podB, cluster.nodeNs]) {
      const answers = await bodies(cluster, ns, STICKY, 10);
      assert.equal(new Set(answers).size, 1, `${ns}: ${answers}`);
    }
    // The same service without affinity alternates (web is round robin): the stickiness is the policy's.
    assert.equal(new Set(await bodies(cluster, podA, WEB, 4)).size, 2);
  });

  const drFile = join(manifests, 'web-dr.yaml');
  await t.test('a DestinationRule with consistentHash added while running: one client, one pod', async () => {
    await writeFile(drFile, destinationRule('{ consistentHash: { useSourceIp: true } }'));
    await agent!.waitForLog(policyChanged('default/web:http/TCP', 'hash'), 10_000, 'web switched to hash');
    for (const ns of [podA, podB, cluster.nodeNs]) {
      const answers = await bodies(cluster, ns, WEB, 10);
      assert.equal(new Set(answers).size, 1, `${ns}: ${answers}`);
    }
    const line = agent!.logs.find((l) => l.msg === 'service proxied' && l['service'] === 'default/web' && l['updated'] === true);
    const ports = line?.['ports'] as Array<Record<string, unknown>> | undefined;
    assert.equal(ports?.[0]?.['policy'], 'hash', JSON.stringify(line));
    assert.match(String(ports?.[0]?.['policySource']), /^DestinationRule default\/web \(consistentHash\.useSourceIp\)$/);
  });

  await t.test('the rule changed to RANDOM: one client reaches both pods', async () => {
    await writeFile(drFile, destinationRule('{ simple: RANDOM }'));
    await agent!.waitForLog(policyChanged('default/web:http/TCP', 'random'), 10_000, 'web switched to random');
    // 24 random picks over 2 pods all landing on one: probability 2^-23.
    assert.equal(new Set(await bodies(cluster, podA, WEB, 24)).size, 2);
  });

  await t.test('the rule removed: back to the config default, round robin', async () => {
    await rm(drFile);
    await agent!.waitForLog(policyChanged('default/web:http/TCP', 'round-robin'), 10_000, 'web back to round robin');
    const answers = await bodies(cluster, podA, WEB, 6);
    for (let i = 1; i < answers.length; i++) assert.notEqual(answers[i], answers[i - 1], `not alternating: ${answers}`);
  });

  await t.test("internalTrafficPolicy Local: only this node's endpoint; none on this node: refused at once", async () => {
    for (const ns of [podA, podB, cluster.nodeNs]) assert.deepEqual(new Set(await bodies(cluster, ns, LOCAL, 6)), new Set(['pod-a']));
    const started = Date.now();
    const r = await cluster.exec(podA, 'curl', ['-sS', '--max-time', '5', LOCAL_NONE]);
    // curl: 7 refused, 52 empty reply, 56 connection reset.
    assert.ok([7, 52, 56].includes(r.code), `curl exit ${r.code}: ${r.stdout}${r.stderr}`);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    const line = agent!.logs.find((l) => l.msg === 'service proxied' && l['service'] === 'default/local-none');
    assert.match(JSON.stringify(line), /no usable endpoint on node \\"edge-a\\"/);
  });
});
