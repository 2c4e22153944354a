import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DestinationRule } from '../../model/types.ts';
import { StateStore } from '../../state/store.ts';
import { sendChanges } from './diff.ts';
import { resolveDestinationHost } from './destinationRule.ts';
import { formatManifestError } from './errors.ts';
import { parseManifestText, type ParsedFile } from './parse.ts';
import { mergeFiles } from './snapshot.ts';

function rules(r: ParsedFile): DestinationRule[] {
  return r.objects.flatMap((o) => (o.object.kind === 'DestinationRule' ? [o.object.value] : []));
}

/** A DestinationRule document; spec is YAML flow text. */
function drDoc(spec: string, apiVersion = 'networking.istio.io/v1beta1', metadata = '{name: web-lb, namespace: shop}'): string {
  return `apiVersion: ${apiVersion}\nkind: DestinationRule\nmetadata: ${metadata}\nspec: ${spec}\n`;
}

describe('resolveDestinationHost (relative to the rule namespace, as Istio does)', () => {
  const cases: Array<[string, string, string]> = [
    ['web', 'shop', 'shop/web'],
    ['web.other', 'shop', 'other/web'],
    ['web.other.svc', 'shop', 'other/web'],
    ['web.other.svc.cluster.local', 'shop', 'other/web'],
    ['web.other.svc.cluster.local.', 'shop', 'other/web'],
    ['web.other.svc.edge.example', 'shop', 'other/web'],
    ['*.shop.svc.cluster.local', 'shop', 'error: wildcard'],
    ['*', 'shop', 'error: wildcard'],
    ['api.example.com', 'shop', 'error: must name a Kubernetes service'],
    ['Web', 'shop', 'error: must name a Kubernetes service'],
  ];
  for (const [host, ns, want] of cases) {
    it(`${host} in ${ns} → ${want}`, () => {
      const r = resolveDestinationHost(host, ns);
      if ('error' in r) assert.match(`error: ${r.error}`, new RegExp(want.replace('*', '\\*')));
      else assert.equal(`${r.namespace}/${r.name}`, want);
    });
  }
});

describe('parseManifestText: DestinationRule', () => {
  const policies: Array<[string, string, DestinationRule['loadBalancer']]> = [
    ['simple ROUND_ROBIN', '{loadBalancer: {simple: ROUND_ROBIN}}', { policy: 'ROUND_ROBIN', source: 'ROUND_ROBIN' }],
    ['simple RANDOM', '{loadBalancer: {simple: RANDOM}}', { policy: 'RANDOM', source: 'RANDOM' }],
    ['LEAST_REQUEST → round robin, noted', '{loadBalancer: {simple: LEAST_REQUEST}}', { policy: 'ROUND_ROBIN', source: 'LEAST_REQUEST', note: 'LEAST_REQUEST is approximated by round robin' }],
    ['LEAST_CONN → round robin, noted', '{loadBalancer: {simple: LEAST_CONN}}', { policy: 'ROUND_ROBIN', source: 'LEAST_CONN', note: 'LEAST_CONN is approximated by round robin' }],
    ['UNSPECIFIED → the default', '{loadBalancer: {simple: UNSPECIFIED}}', undefined],
    ['no trafficPolicy → the default', 'null', undefined],
    ['consistentHash useSourceIp', '{loadBalancer: {consistentHash: {useSourceIp: true}}}', { policy: 'CONSISTENT_HASH', source: 'consistentHash.useSourceIp' }],
    [
      'consistentHash httpHeaderName → source IP, noted',
      '{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}',
      { policy: 'CONSISTENT_HASH', source: 'consistentHash.httpHeaderName', note: 'hashed on the client IP: edgeproxy is an L4 proxy and sees no headers, cookies or query parameters' },
    ],
    ['consistentHash with only ring settings', '{loadBalancer: {consistentHash: {minimumRingSize: 1024}}}', { policy: 'CONSISTENT_HASH', source: 'consistentHash' }],
  ];
  for (const [name, trafficPolicy, want] of policies) {
    it(`reads ${name}`, () => {
      const r = parseManifestText('dr.yaml', drDoc(`{host: web, trafficPolicy: ${trafficPolicy}}`));
      assert.deepEqual(r.errors, []);
      const [rule] = rules(r);
      assert.equal(rule?.service, 'shop/web');
      assert.deepEqual(rule?.loadBalancer, want);
    });
  }

  it('accepts v1, v1beta1 and v1alpha3, and reads port-level settings; ignores the rest of the spec', () => {
    for (const v of ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3']) {
      const r = parseManifestText(
        'dr.yaml',
        drDoc('{host: web.shop.svc.cluster.local, subsets: [{name: v1, labels: {v: "1"}}], trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: RANDOM}}, {port: {number: 81}, tls: {mode: DISABLE}}]}}', v),
      );
      assert.deepEqual(r.errors, [], v);
      assert.deepEqual(rules(r), [
        { namespace: 'shop', name: 'web-lb', host: 'web.shop.svc.cluster.local', service: 'shop/web', portLoadBalancers: [{ port: 80, loadBalancer: { policy: 'RANDOM', source: 'RANDOM' } }] },
      ]);
    }
  });

  const invalid: Array<[string, string, string]> = [
    ['no host', '{trafficPolicy: {loadBalancer: {simple: RANDOM}}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.host: required'],
    ['wildcard host', '{host: "*.shop.svc.cluster.local"}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.host: wildcard hosts are not supported: name one service (got "*.shop.svc.cluster.local")'],
    ['unknown simple', '{host: web, trafficPolicy: {loadBalancer: {simple: FASTEST}}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, ROUND_ROBIN, RANDOM, LEAST_REQUEST, LEAST_CONN, PASSTHROUGH (got "FASTEST")'],
    ['PASSTHROUGH', '{host: web, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.loadBalancer.simple: PASSTHROUGH is not supported: edgeproxy always balances over the service endpoints'],
    ['simple and consistentHash', '{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.loadBalancer: set either simple or consistentHash, not both'],
    ['two hash keys', '{host: web, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.loadBalancer.consistentHash: set only one hash key (got httpHeaderName, useSourceIp)'],
    ['bad port number', '{host: web, trafficPolicy: {portLevelSettings: [{port: {number: 0}, loadBalancer: {simple: RANDOM}}]}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.portLevelSettings[0].port.number: must be an integer from 1 to 65535 (got 0)'],
    ['duplicate port', '{host: web, trafficPolicy: {portLevelSettings: [{port: {number: 80}}, {port: {number: 80}}]}}', 'dr.yaml doc 1 DestinationRule shop/web-lb: spec.trafficPolicy.portLevelSettings[1].port.number: duplicate port 80 (also portLevelSettings[0])'],
  ];
  for (const [name, spec, want] of invalid) {
    it(`reports ${name} with the field`, () => {
      const r = parseManifestText('dr.yaml', drDoc(spec));
      assert.deepEqual(r.errors.map(formatManifestError), [want]);
      assert.deepEqual(rules(r), []);
    });
  }

  it('an unsupported version of the kind is reported, not silently dropped', () => {
    const r = parseManifestText('dr.yaml', drDoc('{host: web}', 'networking.istio.io/v2'));
    assert.match(r.errors.map(formatManifestError).join('\n'), /apiVersion: unsupported apiVersion "networking.istio.io\/v2" for DestinationRule/);
  });
});

describe('DestinationRules through merge and diff into the store', () => {
  it('are added, changed and removed; a duplicate is reported', () => {
    const store = new StateStore();
    const parse = (file: string, text: string) => ({ file, objects: parseManifestText(file, text).objects, errors: [] });
    const v1 = mergeFiles([parse('a.yaml', drDoc('{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM}}}'))]);
    assert.equal(sendChanges(store, { services: new Map(), slices: new Map(), destinationRules: new Map() }, v1), 1);
    assert.equal(store.snapshot().destinationRules.get('shop/web-lb')?.loadBalancer?.policy, 'RANDOM');

    const v2 = mergeFiles([
      parse('a.yaml', drDoc('{host: web, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}}')),
      parse('b.yaml', drDoc('{host: web}')),
    ]);
    assert.match(v2.errors.map(formatManifestError).join('\n'), /b\.yaml doc 1 DestinationRule shop\/web-lb: duplicate DestinationRule shop\/web-lb: already defined in a\.yaml/);
    assert.equal(sendChanges(store, v1, v2), 1);
    assert.equal(store.snapshot().destinationRules.get('shop/web-lb')?.loadBalancer?.policy, 'CONSISTENT_HASH');
    assert.equal(sendChanges(store, v2, v2), 0, 'nothing changed, nothing sent');

    const v3 = mergeFiles([]);
    assert.equal(sendChanges(store, v2, v3), 1);
    assert.equal(store.snapshot().destinationRules.size, 0);
  });
});
