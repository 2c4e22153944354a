import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { FakeApiServer, kubeconfigText } from '../../../test/support/fakeApiServer.ts';
import { StateStore } from '../../state/store.ts';
import { listInPages } from './pagedList.ts';
import { KubernetesSource } from './source.ts';

type List = KubernetesListObject<KubernetesObject>;

test('listInPages follows the continue token (typed or custom lists) and joins the pages', async () => {
  const calls: Array<[number, string | undefined]> = [];
  const pages: List[] = [
    { apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '7', _continue: 'a' }, items: [{ metadata: { name: 's1', managedFields: [] } }] },
    { apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '7', continue: 'b' } as List['metadata'], items: [{ metadata: { name: 's2' } }] },
    { apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '7' }, items: [{ metadata: { name: 's3' } }] },
  ];
  const list = await listInPages(async (limit, cont) => {
    calls.push([limit, cont]);
    return pages[calls.length - 1]!;
  }, 2);
  assert.deepEqual(calls, [[2, undefined], [2, 'a'], [2, 'b']]);
  assert.deepEqual(list.items.map((i) => i.metadata?.name), ['s1', 's2', 's3']);
  assert.deepEqual(list.metadata, { resourceVersion: '7' });
  assert.equal(list.items[0]!.metadata?.managedFields, undefined, 'slimmed as they arrive');
});

test('the Kubernetes source lists 1,200 services in pages of 500 and has them all', async (t) => {
  const api = new FakeApiServer({ destinationRules: false });
  for (let i = 0; i < 1200; i++) {
    api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'bench', name: `svc-${i}` }, spec: { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ port: 80, protocol: 'TCP' }] } });
  }
  const url = await api.listen();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(kubeconfigText(url));
  const store = new StateStore();
  const source = new KubernetesSource({ kubeConfig, sink: store, logger: pino({ level: 'silent' }), watchTimeoutMs: 60_000, watchdogMs: 0, destinationRules: false });
  t.after(async () => {
    await source.stop();
    await api.close();
  });
  await source.start();
  assert.equal(store.snapshot().services.size, 1200);
  const lists = api.requests.filter((r) => r.verb === 'list' && r.resource === 'services');
  assert.deepEqual(lists.map((r) => [r.query['limit'], r.query['continue']]), [['500', undefined], ['500', '500'], ['500', '1000']]);
});
