import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { FakeApiServer, kubeconfigText } from '../../../test/support/fakeApiServer.ts';
import { SERVICES } from './resources.ts';
import { LAST_APPLIED_ANNOTATION, plainObject, slimObject } from './slim.ts';
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

test('handlers get slim objects, from the list and from watch events; the informer then keeps their identity only', async (t) => {
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
  // What the handler saw when it ran, and the objects themselves (the informer's cache holds them).
  const seen: KubernetesObject[] = [];
  const cached: KubernetesObject[] = [];
  const watcher = new ResourceWatcher({
    kubeConfig,
    resource: SERVICES,
    list: () => core.listServiceForAllNamespaces() as Promise<KubernetesListObject<KubernetesObject>>,
    handlers: { upsert: (o) => void (seen.push(structuredClone(o)), cached.push(o)), delete: () => {}, relisted: () => {} },
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
  for (const obj of cached) {
    assert.deepEqual(Object.entries(obj).filter(([k, v]) => k !== 'apiVersion' && k !== 'kind' && v !== undefined).map(([k]) => k), ['metadata']);
    assert.deepEqual(Object.keys(obj.metadata ?? {}), ['name', 'namespace', 'resourceVersion']);
    assert.equal(obj.metadata?.name, 'web');
    assert.ok(obj.metadata?.resourceVersion, 'kept for the informer\'s same-version check');
  }
});

test('plainObject copies class instances into plain JSON objects and leaves plain ones as they are', () => {
  class V1Thing {
    kind = 'Thing';
    unset: string | undefined = undefined;
    when = new Date('2026-11-23T10:00:00Z');
  }
  const copy = plainObject(new V1Thing());
  assert.equal(Object.getPrototypeOf(copy), Object.prototype);
  assert.deepEqual(copy, { kind: 'Thing', when: '2026-11-23T10:00:00.000Z' });
  const plain = { kind: 'Thing' };
  assert.equal(plainObject(plain), plain);
});
