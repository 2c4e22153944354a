// The agent reading from a Kubernetes API server instead of a manifest directory: the fake API
// server (test/support/fakeApiServerMain.ts) runs inside the node namespace on 127.0.0.1:6443 with
// the example objects, and the real agent reaches it through a kubeconfig (--kubeconfig).
// Needs root and iptables, like the other e2e tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { APISERVER_PORT, createCluster, nodeBin, repoRoot, requirePrivileges, type Cluster } from '../support/cluster.ts';
import { METRICS_ADDRESS, edgeproxyBin, ourRules, parseMetrics, portMetric, removeDir, writeConfig, type LogLine } from '../support/agent.ts';
import { writeKubeconfig } from '../support/fakeApiServer.ts';

const fakeApiServerMain = join(repoRoot, 'test', 'support', 'fakeApiServerMain.ts');
const API = `http://127.0.0.1:${APISERVER_PORT}`;
const WEB = 'http://10.96.10.10/';

function lines(child: ChildProcess, into: LogLine[]): void {
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      into.push(JSON.parse(line) as LogLine);
    } catch {
      into.push({ msg: line });
    }
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    await sleep(100);
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

async function metrics(cluster: Cluster): Promise<Map<string, number>> {
  return parseMetrics(await cluster.run(cluster.nodeNs, 'curl', ['-sS', '--fail', `http://${METRICS_ADDRESS}/metrics`]));
}

async function bodies(cluster: Cluster, fromNs: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await cluster.curl(fromNs, WEB)).trim());
  return out;
}

test('the agent reads services from the Kubernetes API (fake API server in the node namespace)', async (t) => {
  requirePrivileges();
  const cluster = await createCluster();
  let configFile = '';
  let kubeconfig = '';
  let agent: ChildProcess | undefined;
  t.after(async () => {
    agent?.kill('SIGKILL');
    await cluster.destroy();
    if (configFile) await removeDir(dirname(configFile));
    if (kubeconfig) await removeDir(dirname(kubeconfig));
  });
  await cluster.loadKubeProxyRules();

  const apiLogs: LogLine[] = [];
  const api = cluster.spawn(cluster.nodeNs, nodeBin, [fakeApiServerMain, '--port', String(APISERVER_PORT), '--manifests', join(repoRoot, 'examples', 'manifests')]);
  lines(api, apiLogs);
  await until('fake API server listening', () => apiLogs.some((l) => l.msg === `listening ${API}`));

  kubeconfig = await writeKubeconfig(API);
  configFile = await writeConfig({ kubernetes: { watchdog: '2s' } });
  const logs: LogLine[] = [];
  let stderr = '';
  agent = cluster.spawn(cluster.nodeNs, nodeBin, [edgeproxyBin, 'run', '--kubeconfig', kubeconfig, '--config', configFile, '--log-level', 'debug']);
  agent.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  lines(agent, logs);
  const exited = new Promise<number | string>((resolve) => agent!.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  await until('initial sync', () => logs.some((l) => l.msg === 'initial sync done'), 20_000).catch((err: Error) => {
    throw new Error(`${err.message}\nstderr: ${stderr}\nlogs: ${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
  });
  const podA = cluster.pod('pod-a').ns;

  await t.test('the initial lists were in before the first sync; sources report synced', async () => {
    const synced = logs.findIndex((l) => l.msg === 'kubernetes source synced');
    const first = logs.findIndex((l) => l.msg === 'initial sync done');
    assert.ok(synced >= 0 && synced < first, 'source synced before the first sync');
    const m = await metrics(cluster);
    assert.equal(m.get('edgeproxy_source_synced{source="kubernetes/services"}'), 1);
    assert.equal(m.get('edgeproxy_source_synced{source="kubernetes/endpointslices"}'), 1);
    assert.equal(m.get('edgeproxy_source_stale{source="kubernetes/services"}'), 0);
  });

  await t.test('a service from the API answers through the agent, over both endpoints', async () => {
    const before = portMetric(await metrics(cluster), 'edgeproxy_connections_accepted_total', 'default/web:http');
    const got = await bodies(cluster, podA, 6);
    assert.deepEqual([...new Set(got)].sort(), ['pod-a', 'pod-b']);
    const after = portMetric(await metrics(cluster), 'edgeproxy_connections_accepted_total', 'default/web:http');
    assert.equal(after - before, 6, 'every connection went through the agent');
  });

  await t.test('an endpoint removed through the API server takes effect', async () => {
    const slice = JSON.parse(await cluster.run(cluster.nodeNs, 'curl', ['-sS', '--fail', `${API}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-5fd7c`])) as {
      endpoints: Array<{ addresses: string[] }>;
    };
    slice.endpoints = slice.endpoints.filter((e) => e.addresses[0] === '10.244.8.2');
    await cluster.run(cluster.nodeNs, 'curl', ['-sS', '--fail', '-X', 'PUT', '-H', 'content-type: application/json', '--data-binary', '@-', `${API}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-5fd7c`], {
      input: JSON.stringify(slice),
    });
    await until('only pod-b answers', async () => (await bodies(cluster, podA, 4)).every((b) => b === 'pod-b') || undefined);
  });

  await t.test('a service deleted through the API server goes back to kube-proxy', async () => {
    await cluster.run(cluster.nodeNs, 'curl', ['-sS', '--fail', '-X', 'DELETE', `${API}/api/v1/namespaces/default/services/sticky`]);
    await until('no rule for sticky', async () => !ourRules(await cluster.iptablesSave()).some((l) => l.includes('default/sticky')) || undefined);
  });

  await t.test('API server gone: the agent keeps serving, /healthz ok, stale reported', async () => {
    api.kill('SIGKILL');
    await until('stale', async () => (await metrics(cluster)).get('edgeproxy_source_stale{source="kubernetes/services"}') === 1 || undefined, 15_000);
    assert.deepEqual([...new Set(await bodies(cluster, podA, 3))], ['pod-b']);
    const health = await cluster.exec(cluster.nodeNs, 'curl', ['-sS', '--fail', `http://${METRICS_ADDRESS}/healthz`]);
    assert.equal(health.code, 0);
    assert.match(health.stdout, /kubernetes\/services stale for \d+ s, serving the last known state/);
    const ready = await cluster.exec(cluster.nodeNs, 'curl', ['-sS', '--fail', `http://${METRICS_ADDRESS}/readyz`]);
    assert.equal(ready.code, 0, 'a stale source does not fail readiness');
    assert.ok(((await metrics(cluster)).get('edgeproxy_source_watch_restarts_total{source="kubernetes/services",reason="error"}') ?? 0) >= 1);
  });

  await t.test('SIGTERM removes our rules and exits 0', async () => {
    agent!.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.deepEqual(ourRules(await cluster.iptablesSave()), []);
  });
});
