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
