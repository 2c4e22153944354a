import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeDesired, desiredRules } from './desired.ts';
import { StateStore } from '../state/store.ts';
import { makeService, makeSlice } from '../model/fixtures.ts';

const filter = { serviceFilterMode: 'FilterIfLabelExists' as const, ignoreServices: [] };

function storeWith(fill: (s: StateStore) => void): StateStore {
  const s = new StateStore();
  fill(s);
  return s;
}

test('proxied ports get specs with their backends; ignored services get RETURN ips', () => {
  const store = storeWith((s) => {
    s.upsertService(makeService({ name: 'web', clusterIP: '10.96.10.10' }));
    s.upsertSlice(makeSlice('web', ['10.244.8.2', '10.244.7.2']));
    s.upsertService(makeService({ namespace: 'kube-system', name: 'kube-dns', clusterIP: '10.96.0.10', labels: { 'k8s-app': 'kube-dns' } }));
    s.upsertService(makeService({ namespace: 'monitoring', name: 'node-exporter', clusterIP: 'None', labels: { noproxy: 'edgemesh' } }));
    s.upsertSlice(makeSlice('node-exporter', ['192.168.1.9', '192.168.1.10'], { namespace: 'monitoring', name: 'ne-1' }));
  });
  const d = computeDesired(store.snapshot(), filter);
  assert.deepEqual(d.proxySpecs.map((s) => [s.id, s.backends.map((b) => `${b.ip}:${b.port}`)]), [
    ['default/web:http/TCP', ['10.244.7.2:8080', '10.244.8.2:8080']],
  ]);
  assert.deepEqual(d.ignored, [
    { key: 'kube-system/kube-dns', ips: ['10.96.0.10'] },
    { key: 'monitoring/node-exporter', ips: ['192.168.1.9', '192.168.1.10'] },
  ]);
  const rules = desiredRules(d, new Map([['default/web:http/TCP', 40001]]), { layout: 'portals' });
  assert.deepEqual(rules.proxied, [{ portName: 'default/web:http', clusterIP: '10.96.10.10', protocol: 'TCP', port: 80, listenPort: 40001 }]);
});

test('a port without a listener gets no rule (stays with kube-proxy)', () => {
  const store = storeWith((s) => s.upsertService(makeService({ name: 'web' })));
  const d = computeDesired(store.snapshot(), filter);
  assert.deepEqual(desiredRules(d, new Map(), { layout: 'portals' }).proxied, []);
});

test('two services claiming the same ClusterIP:port: the first by name keeps it, the second is reported', () => {
  const store = storeWith((s) => {
    s.upsertService(makeService({ name: 'b-web', clusterIP: '10.96.10.10' }));
    s.upsertService(makeService({ name: 'a-web', clusterIP: '10.96.10.10' }));
  });
  const d = computeDesired(store.snapshot(), filter);
  assert.deepEqual(d.proxySpecs.map((s) => s.id), ['default/a-web:http/TCP']);
  const b = d.services.find((s) => s.key === 'default/b-web')!;
  assert.match(b.ports[0]!.skipped!, /port clash: 10\.96\.10\.10:80\/TCP is already taken by default\/a-web:http/);
});

test('endpoint ports are matched by service port name and protocol', () => {
  const store = storeWith((s) => {
    s.upsertService(makeService({ name: 'web', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }, { name: 'admin', protocol: 'TCP', port: 81, targetPort: 9000 }] }));
    s.upsertSlice({
      namespace: 'default', name: 'web-1', serviceName: 'web', addressType: 'IPv4',
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }, { name: 'admin', protocol: 'TCP', port: 9000 }],
      endpoints: [{ addresses: ['10.244.7.2'], conditions: { ready: false, serving: true, terminating: true } }],
    });
  });
  const d = computeDesired(store.snapshot(), filter);
  assert.deepEqual(d.proxySpecs.map((s) => [s.id, s.backends.map((b) => `${b.ip}:${b.port}:${b.terminating}`)]), [
    ['default/web:http/TCP', ['10.244.7.2:8080:true']],
    ['default/web:admin/TCP', ['10.244.7.2:9000:true']],
  ]);
});

/** computeDesired without the reuse bookkeeping, for comparing results. */
function plain(d: ReturnType<typeof computeDesired>) {
  return { services: d.services, proxySpecs: d.proxySpecs, ignored: d.ignored };
}

test('a resync reuses the plans (and specs) of services whose inputs are the same objects', () => {
  const store = storeWith((s) => {
    s.upsertService(makeService({ name: 'web', clusterIP: '10.96.10.10' }));
    s.upsertSlice(makeSlice('web', ['10.244.7.2']));
    s.upsertService(makeService({ name: 'api', clusterIP: '10.96.10.11' }));
    s.upsertSlice(makeSlice('api', ['10.244.7.3']));
    s.upsertService(makeService({ namespace: 'kube-system', name: 'kube-dns', clusterIP: '10.96.0.10', labels: { 'k8s-app': 'kube-dns' } }));
  });
  const first = computeDesired(store.snapshot(), filter);
  const again = computeDesired(store.snapshot(), filter, first);
  assert.deepEqual(plain(again), plain(first));
  assert.ok(again.services.every((p, i) => p === first.services[i]));
  assert.ok(again.proxySpecs.every((s, i) => s === first.proxySpecs[i]));

  store.upsertSlice(makeSlice('api', ['10.244.7.4']));
  const changed = computeDesired(store.snapshot(), filter, again);
  assert.deepEqual(plain(changed), plain(computeDesired(store.snapshot(), filter)));
  const byKey = (d: typeof first, key: string) => d.services.find((p) => p.key === key);
  assert.equal(byKey(changed, 'default/web'), byKey(again, 'default/web'));
  assert.notEqual(byKey(changed, 'default/api'), byKey(again, 'default/api'));
  assert.deepEqual(changed.proxySpecs.find((s) => s.id === 'default/api:http/TCP')?.backends.map((b) => b.ip), ['10.244.7.4']);

  // Another config object: nothing is reused.
  const other = computeDesired(store.snapshot(), { ...filter }, changed);
  assert.ok(other.services.every((p, i) => p !== changed.services[i]));
});

test('reused plans still follow port clashes as services come and go', () => {
  const store = storeWith((s) => {
    s.upsertService(makeService({ name: 'b-web', clusterIP: '10.96.10.10' }));
    s.upsertService(makeService({ name: 'c-web', clusterIP: '10.96.10.10' }));
  });
  const first = computeDesired(store.snapshot(), filter);
  assert.deepEqual(first.proxySpecs.map((s) => s.id), ['default/b-web:http/TCP']);

  // An earlier service takes the portal of a plan that would otherwise be reused.
  store.upsertService(makeService({ name: 'a-web', clusterIP: '10.96.10.10' }));
  const second = computeDesired(store.snapshot(), filter, first);
  assert.deepEqual(plain(second), plain(computeDesired(store.snapshot(), filter)));
  assert.deepEqual(second.proxySpecs.map((s) => s.id), ['default/a-web:http/TCP']);

  // The owner leaves: the service that lost the clash gets the portal back.
  store.deleteService('default', 'a-web');
  store.deleteService('default', 'b-web');
  const third = computeDesired(store.snapshot(), filter, second);
  assert.deepEqual(plain(third), plain(computeDesired(store.snapshot(), filter)));
  assert.deepEqual(third.proxySpecs.map((s) => s.id), ['default/c-web:http/TCP']);
});

test('a DestinationRule change replans the service it names', () => {
  const store = storeWith((s) => s.upsertService(makeService({ name: 'web' })));
  const first = computeDesired(store.snapshot(), filter);
  store.upsertDestinationRule({ namespace: 'default', name: 'web', host: 'web', service: 'default/web', loadBalancer: { policy: 'RANDOM', source: 'RANDOM' }, portLoadBalancers: [] });
  const second = computeDesired(store.snapshot(), filter, first);
  assert.equal(second.proxySpecs[0]?.policy, 'RANDOM');
  store.deleteDestinationRule('default', 'web');
  assert.equal(computeDesired(store.snapshot(), filter, second).proxySpecs[0]?.policy, 'ROUND_ROBIN');
});
