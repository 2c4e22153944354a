import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { FakeApiServer, kubeconfigText } from '../../../test/support/fakeApiServer.ts';
import { SERVICES } from './resources.ts';
import { LAST_APPLIED_ANNOTATION, slimObject } from './slim.ts';
import { ResourceWatcher } from './watcher.ts';

const managedFields = [{ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:ports': {} } } }];

test('slimObject drops managedFields and the last-applied copy, and keeps everything else', () => {
  const cases: Array<{ name: string; meta: Record<string, unknown> | undefined; want: Record<string, unknown> | undefined }> = [
    { name: 'no metadata', meta: undefined, want: undefined },
    { name: 'nothing to drop', meta: { name: 'a', labels: { app: 'a' } }, want: { name: 'a', labels: { app: 'a' } } },
    { name: 'managedFields', meta: { name: 'a', managedFields }, want: { name: 'a' } },
    { name: 'last-applied only', meta: { name: 'a', annotations: { [LAST_APPLIED_ANNOTATION]: '{}' } }, want: { name: 'a' } },
    {
      name: 'last-applied among others',
      meta: { name: 'a', annotations: { [LAST_APPLIED_ANNOTATION]: '{}', 'example.com/x': '1' }, managedFields },
      want: { name: 'a', annotations: { 'example.com/x': '1' } },
    },
  ];
  for (const c of cases) {
    const obj = { kind: 'Service', ...(c.meta !== undefined && { metadata: c.meta }) } as KubernetesObject;
    assert.equal(slimObject(obj), obj, c.name);
    assert.deepEqual(obj.metadata, c.want, c.name);
  }
});

test('the informer caches slim objects, from the list and from watch events', async (t) => {
  const api = new FakeApiServer({ destinationRules: false });
  const service = (port: number) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'default', name: 'web', labels: { app: 'web' }, annotations: { [LAST_APPLIED_ANNOTATION]: '{"big":"copy"}', 'example.com/keep': 'yes' }, managedFields },
    spec: { clusterIP: '10.96.0.10', ports: [{ port, protocol: 'TCP' }] },
  });
  api.apply(service(80));
  const url = await api.listen();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(kubeconfigText(url));
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const seen: KubernetesObject[] = [];
  const watcher = new ResourceWatcher({
    kubeConfig,
    resource: SERVICES,
    list: () => core.listServiceForAllNamespaces() as Promise<KubernetesListObject<KubernetesObject>>,
    handlers: { upsert: (o) => void seen.push(o), delete: () => {}, relisted: () => {} },
    logger: pino({ level: 'silent' }),
    watchTimeoutMs: 60_000,
    watchdogMs: 0,
  });
  t.after(async () => {
    await watcher.stop();
    await api.close();
  });
  await watcher.start();
  api.apply(service(81)); // a MODIFIED event
  for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(20);
  assert.equal(seen.length, 2, 'the listed object and the modified one');
  for (const obj of seen) {
    assert.equal(obj.metadata?.managedFields, undefined);
    assert.deepEqual(obj.metadata?.annotations, { 'example.com/keep': 'yes' });
    assert.deepEqual(obj.metadata?.labels, { app: 'web' });
  }
  assert.equal((seen[1] as { spec?: { ports?: Array<{ port: number }> } }).spec?.ports?.[0]?.port, 81);
});
