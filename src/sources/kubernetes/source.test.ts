// The Kubernetes source against an in-process API server speaking the real list/watch protocol,
// through the real client library (kubeconfig → http://127.0.0.1:<port>).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import { FakeApiServer, kubeconfigText } from '../../../test/support/fakeApiServer.ts';
import { StateStore } from '../../state/store.ts';
import type { EndpointSlice, Service } from '../../model/types.ts';
import { defaultKindHandlers } from '../manifests/kinds.ts';
import { KubernetesSource, type KubernetesSourceOptions } from './source.ts';
import { backoffDelay } from './backoff.ts';

const examples = join(import.meta.dirname, '..', '..', '..', 'examples', 'manifests');

type Obj = Parameters<FakeApiServer['apply']>[0];

async function exampleObjects(): Promise<Obj[]> {
  const out: Obj[] = [];
  for (const file of ['web.yaml', 'default.yaml', 'kube-system.yaml', 'monitoring.yaml']) {
    for (const doc of parseAllDocuments(await readFile(join(examples, file), 'utf8'))) {
      const o = doc.toJS() as Obj | null;
      if (o && (o.kind === 'Service' || o.kind === 'EndpointSlice')) out.push(o);
    }
  }
  return out;
}

/** A StateStore that also counts the calls made to it. */
class CountingStore extends StateStore {
  calls = { upsertService: 0, deleteService: 0, upsertSlice: 0, deleteSlice: 0 };
  override upsertService(svc: Service): void {
    this.calls.upsertService++;
    super.upsertService(svc);
  }
  override deleteService(ns: string, name: string): void {
    this.calls.deleteService++;
    super.deleteService(ns, name);
  }
  override upsertSlice(s: EndpointSlice): void {
    this.calls.upsertSlice++;
    super.upsertSlice(s);
  }
  override deleteSlice(ns: string, name: string): void {
    this.calls.deleteSlice++;
    super.deleteSlice(ns, name);
  }
}

interface Env {
  api: FakeApiServer;
  store: CountingStore;
  source: KubernetesSource;
  logs: Array<Record<string, unknown>>;
}

async function setup(
  t: { after(fn: () => Promise<void>): void },
  opts: { objects?: Obj[]; destinationRules?: boolean; expiredAs?: 'event' | 'status'; source?: Partial<KubernetesSourceOptions>; start?: boolean } = {},
): Promise<Env> {
  const api = new FakeApiServer({ destinationRules: opts.destinationRules ?? false, expiredAs: opts.expiredAs ?? 'event' });
  for (const o of opts.objects ?? (await exampleObjects())) api.apply(o);
  const url = await api.listen();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(kubeconfigText(url));
  const logs: Array<Record<string, unknown>> = [];
  const logger: Logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  const store = new CountingStore();
  const source = new KubernetesSource({ kubeConfig, sink: store, logger, watchTimeoutMs: 60_000, watchdogMs: 0, backoff: { baseMs: 100, maxMs: 2000 }, ...opts.source });
  t.after(async () => {
    await source.stop();
    await api.close();
  });
  if (opts.start ?? true) await source.start();
  return { api, store, source, logs };
}

async function eventually(what: string, fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (fn()) return;
    await sleep(20);
  }
  assert.fail(`not within ${timeoutMs} ms: ${what}`);
}

const svc = (store: StateStore, key: string) => store.snapshot().services.get(key);
const sliceAddresses = (store: StateStore, key: string) =>
  (store.snapshot().slicesByService.get(key) ?? []).flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort();

test('start() resolves with every initial list in the store; objects equal the manifest source’s', async (t) => {
  const { store, source, api } = await setup(t);
  const snap = store.snapshot();
  assert.equal(snap.services.size, (await exampleObjects()).filter((o) => o.kind === 'Service').length);
  assert.deepEqual(sliceAddresses(store, 'default/web'), ['10.244.7.2', '10.244.8.2']);
  // Same manifest → same model object, whether read from a file or from the API server.
  for (const o of await exampleObjects()) {
    const handler = defaultKindHandlers.find((h) => h.kind === o.kind && h.apiVersion === o.apiVersion)!;
    const r = handler.validate(o);
    assert.ok(r.ok);
    const fromFile = r.objects[0]!;
    const ns = o.metadata.namespace ?? 'default';
    const fromApi = fromFile.kind === 'Service' ? snap.services.get(`${ns}/${o.metadata.name}`) : [...snap.slicesByService.values()].flat().find((s) => s.namespace === ns && s.name === o.metadata.name);
    assert.deepEqual(fromApi, fromFile.value, `${o.kind} ${ns}/${o.metadata.name}`);
  }
  assert.deepEqual(source.status().map((s) => [s.source, s.synced, s.stale]), [
    ['kubernetes/services', true, false],
    ['kubernetes/endpointslices', true, false],
  ]);
  // Watches ask for bookmarks and a server-side timeout, and resume from the list's resourceVersion.
  await eventually('watches open', () => api.openWatches() === 2);
  const watch = api.requests.find((r) => r.verb === 'watch')!;
  assert.equal(watch.query['allowWatchBookmarks'], 'true');
  assert.equal(watch.query['timeoutSeconds'], '60');
  assert.ok(Number(watch.query['resourceVersion']) > 0);
});

test('the store converges through ADDED, MODIFIED, DELETED and BOOKMARK events', async (t) => {
  const { api, store, source } = await setup(t);
  await eventually('watches open', () => api.openWatches() === 2);
  const before = { ...store.calls };

  api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'new', namespace: 'default' }, spec: { clusterIP: '10.96.50.50', ports: [{ port: 80, targetPort: 8080 }] } });
  await eventually('ADDED', () => svc(store, 'default/new')?.clusterIP === '10.96.50.50');

  const web = api.get('EndpointSlice', 'default', 'web-5fd7c')!;
  api.apply({ ...web, endpoints: [(web['endpoints'] as unknown[])[0]] });
  await eventually('MODIFIED', () => sliceAddresses(store, 'default/web').join() === '10.244.7.2');

  api.remove('Service', 'default', 'new');
  await eventually('DELETED', () => svc(store, 'default/new') === undefined);

  const lastEvent = source.status()[0]!.lastEventAt!;
  await sleep(5);
  api.bookmark();
  await eventually('bookmark seen', () => source.status()[0]!.lastEventAt! > lastEvent);
  // Bookmarks carry no object: nothing was sent to the store for them.
  assert.deepEqual(
    { ...store.calls },
    { upsertService: before.upsertService + 1, deleteService: before.deleteService + 1, upsertSlice: before.upsertSlice + 1, deleteSlice: before.deleteSlice },
  );
});

for (const expiredAs of ['event', 'status'] as const) {
  test(`410 Gone (${expiredAs === 'event' ? 'ERROR event in the stream' : 'HTTP 410'}) → relist; what changed meanwhile converges; nothing unchanged is dropped`, async (t) => {
    const { api, store, source } = await setup(t, { expiredAs });
    await eventually('watches open', () => api.openWatches() === 2);
    const lists = api.count('list', 'services');
    // The streams end (as when timeoutSeconds runs out); before the client resumes from its
    // resourceVersion, two changes happen and the history is compacted past them.
    api.closeWatches();
    api.remove('Service', 'default', 'sticky');
    api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'late', namespace: 'default' }, spec: { clusterIP: '10.96.50.51', ports: [{ port: 81 }] } });
    api.compact();
    const calls = { ...store.calls };
    await eventually('relisted', () => api.count('list', 'services') > lists, 8000);
    await eventually('converged', () => svc(store, 'default/sticky') === undefined && svc(store, 'default/late') !== undefined);
    assert.ok(api.expiredSent >= 1, 'the resumed watch was refused with 410');
    await eventually('counted as expired', () => source.status()[0]!.restarts.expired >= 1);
    assert.equal(source.status()[0]!.restarts.error, 0, 'the library handled it: no restart of ours');
    // Only the two changes reached the store: no service was deleted and re-added.
    assert.equal(store.calls.deleteService - calls.deleteService, 1);
    assert.equal(store.calls.upsertService - calls.upsertService, 1);
    assert.ok(svc(store, 'default/web'));
    // After the relist the watch resumes and keeps working.
    await eventually('rewatched', () => api.openWatches('services') === 1, 8000);
    api.remove('Service', 'default', 'late');
    await eventually('event after relist', () => svc(store, 'default/late') === undefined);
    assert.equal(source.status()[0]!.synced, true);
  });
}

test('an in-stream 410 on a live watch: the library relists and counts it as "expired"', async (t) => {
  const { api, store, source } = await setup(t);
  await eventually('watches open', () => api.openWatches() === 2);
  const lists = api.count('list');
  api.compact();
  api.expireWatches();
  await eventually('relisted both', () => api.count('list') >= lists + 2, 8000);
  await eventually('counted', () => source.status().every((s) => s.restarts.expired === 1), 8000);
  assert.ok(svc(store, 'default/web'));
});

test('dropped connections and failing requests → restart with exponential backoff and jitter; stale meanwhile; no hot loop', async (t) => {
  const { api, store, source } = await setup(t);
  await eventually('watches open', () => api.openWatches() === 2);
  // The API server goes away: every request fails for a while.
  api.failNext(6, 503, 'list');
  api.failNext(100, 503, 'watch');
  const start = api.requests.length;
  api.dropWatches('services');
  await eventually('stale', () => source.status()[0]!.stale, 5000);
  const status = source.status()[0]!;
  assert.ok(status.lastError, 'the error is kept for health details');
  assert.ok(svc(store, 'default/web'), 'the last known state is still served');
  await sleep(1500);
  const during = api.requests.slice(start).filter((r) => r.resource === 'services');
  // base 100 ms doubling (with jitter in [d/2, d)): at most ~6 attempts in 1.5 s, never a spin.
  assert.ok(during.length >= 2 && during.length <= 10, `requests while failing: ${during.length}`);
  // The API server is back: the watch recovers by itself, and changes made meanwhile arrive.
  api.clearFailures();
  api.remove('Service', 'default', 'sticky');
  await eventually('recovered', () => !source.status()[0]!.stale && svc(store, 'default/sticky') === undefined, 8000);
  assert.ok(source.status()[0]!.restarts.error >= 2);
});

test('backoff delays grow exponentially, are capped, and carry jitter', () => {
  const lo = [0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000, random: () => 0 }));
  const hi = [0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000, random: () => 0.999999 }));
  assert.deepEqual(lo, [50, 100, 200, 400, 500, 500]);
  assert.deepEqual(hi, [100, 200, 400, 800, 1000, 1000]);
});

test('the API server unreachable at start: start() waits, retrying with backoff, and resolves once lists succeed', async (t) => {
  const env = await setup(t, { start: false });
  env.api.failNext(4, 500, 'list');
  const t0 = Date.now();
  await env.source.start();
  assert.ok(Date.now() - t0 >= 150, 'retried after delays');
  assert.ok(svc(env.store, 'default/web'));
  assert.ok(env.source.status().some((s) => s.restarts.error > 0));
});

test('watchdog: a watch silent for too long is restarted', async (t) => {
  const { api, store, source } = await setup(t, { source: { watchdogMs: 400 } });
  await eventually('watches open', () => api.openWatches() === 2);
  api.freeze(); // connections stay open but nothing arrives: a half-open connection
  api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'unseen', namespace: 'default' }, spec: { clusterIP: '10.96.50.52', ports: [{ port: 82 }] } });
  await sleep(100);
  assert.equal(svc(store, 'default/unseen'), undefined);
  api.freeze(false);
  await eventually('restarted by the watchdog', () => source.status()[0]!.restarts.watchdog >= 1, 5000);
  await eventually('relisted', () => svc(store, 'default/unseen') !== undefined, 5000);
  await eventually('current again', () => !source.status()[0]!.stale, 5000);
});

test('an invalid object is logged (kind/ns/name/field) and skipped; the last good version stays', async (t) => {
  const { api, store, logs } = await setup(t);
  await eventually('watches open', () => api.openWatches() === 2);
  const web = api.get('Service', 'default', 'web')!;
  const spec = web['spec'] as { ports: Array<Record<string, unknown>> };
  api.apply({ ...web, spec: { ...spec, clusterIP: '10.96.10.99', ports: [{ ...spec.ports[0], port: 70000 }] } });
  await eventually('logged', () => logs.some((l) => String(l['msg']).startsWith('invalid Service default/web')));
  const line = logs.find((l) => String(l['msg']).startsWith('invalid Service default/web'))!;
  assert.equal(line['kind'], 'Service');
  assert.equal(line['namespace'], 'default');
  assert.equal(line['name'], 'web');
  assert.match(String(line['msg']), /spec\.ports\[0\]\.port: must be an integer from 1 to 65535 \(got 70000\)/);
  assert.equal(svc(store, 'default/web')?.clusterIP, '10.96.10.10');
  api.apply({ ...web, spec: { ...spec, clusterIP: '10.96.10.99' } });
  await eventually('fixed version applied', () => svc(store, 'default/web')?.clusterIP === '10.96.10.99');
});

test('DestinationRule CRD absent: discovered through /apis, never listed, sources are services and slices only', async (t) => {
  const { api, source } = await setup(t, { destinationRules: false });
  assert.ok(api.requests.some((r) => r.path === '/apis'), 'discovery asked');
  assert.equal(api.count('list', 'destinationrules'), 0);
  assert.deepEqual(source.status().map((s) => s.source), ['kubernetes/services', 'kubernetes/endpointslices']);
});

test('DestinationRule CRD present: discovered, listed in the preferred version, converged through events', async (t) => {
  const { api, store, source } = await setup(t, { destinationRules: true });
  const rules = () => store.snapshot().destinationRules;
  assert.deepEqual(source.status().map((s) => s.source), ['kubernetes/services', 'kubernetes/endpointslices', 'kubernetes/destinationrules']);
  assert.ok(api.requests.some((r) => r.verb === 'list' && r.path === '/apis/networking.istio.io/v1/destinationrules'));
  await eventually('watching', () => api.openWatches('destinationrules') === 1);
  api.apply({
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'web-lb', namespace: 'default' },
    spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } },
  });
  await eventually('added', () => rules().get('default/web-lb')?.loadBalancer?.policy === 'RANDOM');
  assert.equal(rules().get('default/web-lb')?.service, 'default/web');
  api.remove('DestinationRule', 'default', 'web-lb');
  await eventually('deleted', () => rules().size === 0);
});

test('DestinationRule CRD installed later: periodic discovery starts the informer; removed: stops it and drops its rules', async (t) => {
  const { api, store, source, logs } = await setup(t, { destinationRules: false, source: { discoveryPeriodMs: 50 } });
  const rules = () => store.snapshot().destinationRules;
  const sources = () => source.status().map((s) => s.source);
  assert.deepEqual(sources(), ['kubernetes/services', 'kubernetes/endpointslices']);
  const rule = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'web-lb', namespace: 'default' },
    spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } },
  };
  api.apply(rule); // stored, not served until the CRD is
  await sleep(150);
  assert.equal(api.count('list', 'destinationrules'), 0, 'nothing listed while the group is absent');
  assert.equal(rules().size, 0);

  api.serveDestinationRules(true);
  await eventually('listed once the group appears', () => rules().get('default/web-lb')?.loadBalancer?.policy === 'RANDOM');
  assert.deepEqual(sources(), ['kubernetes/services', 'kubernetes/endpointslices', 'kubernetes/destinationrules']);
  assert.equal(logs.filter((l) => l['msg'] === 'DestinationRule CRD appeared: watching DestinationRules').length, 1);
  await eventually('watching', () => api.openWatches('destinationrules') === 1);
  api.apply({ ...rule, spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } } });
  await eventually('events flow', () => rules().get('default/web-lb')?.loadBalancer?.policy === 'ROUND_ROBIN');
  await sleep(150);
  assert.equal(api.count('list', 'destinationrules'), 1, 'later checks leave the running informer alone');

  api.serveDestinationRules(false);
  await eventually('rules dropped when the group goes', () => rules().size === 0);
  assert.deepEqual(sources(), ['kubernetes/services', 'kubernetes/endpointslices']);
  assert.equal(logs.filter((l) => l['msg'] === 'DestinationRule CRD gone: stopped watching DestinationRules, their policies are dropped').length, 1);
  await sleep(100);
  const lists = api.count('list', 'destinationrules');
  await sleep(400); // well past the watcher's 100 ms retry: it is gone, not retrying
  assert.equal(api.count('list', 'destinationrules'), lists);
  assert.equal(api.openWatches('destinationrules'), 0);

  // And back again, with the objects it still holds.
  api.serveDestinationRules(true);
  await eventually('back', () => rules().get('default/web-lb')?.loadBalancer?.policy === 'ROUND_ROBIN');
  assert.ok(svc(store, 'default/web'), 'services untouched throughout');
});

test('periodic discovery: an unreachable API server leaves the DestinationRule informer and its rules; stop() ends the checks', async (t) => {
  const { api, store, source, logs } = await setup(t, { destinationRules: true, source: { discoveryPeriodMs: 50 } });
  api.apply({
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'web-lb', namespace: 'default' },
    spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } },
  });
  await eventually('rule in', () => store.snapshot().destinationRules.size === 1);
  const discoveries = () => api.requests.filter((r) => r.path === '/apis').length;
  await eventually('checked periodically', () => discoveries() >= 3);
  await api.close();
  const failed = () => logs.filter((l) => l['msg'] === 'API discovery failed: DestinationRules left as they are until the next check').length;
  await eventually('a failed check is logged', () => failed() >= 2);
  assert.ok(source.status().some((s) => s.source === 'kubernetes/destinationrules'), 'informer kept');
  assert.equal(store.snapshot().destinationRules.size, 1, 'rules kept');
  await source.stop();
  const after = failed();
  await sleep(200);
  assert.equal(failed(), after, 'no discovery after stop()');
});
