import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeDesired, type DesiredConfig } from './desired.ts';
import { StateStore } from '../state/store.ts';
import { makeService, makeSlice } from '../model/fixtures.ts';
import type { DestinationRule, EndpointSlice } from '../model/types.ts';

const base: DesiredConfig = { serviceFilterMode: 'FilterIfLabelExists', ignoreServices: [] };

function rule(partial: Partial<DestinationRule> & { name: string; service: string }): DestinationRule {
  return { namespace: 'default', host: partial.service.split('/')[1]!, portLoadBalancers: [], ...partial };
}

function plan(config: DesiredConfig, fill: (s: StateStore) => void) {
  const store = new StateStore();
  fill(store);
  return computeDesired(store.snapshot(), config);
}

const twoPorts = [
  { name: 'http', protocol: 'TCP' as const, port: 80, targetPort: 8080 },
  { name: 'admin', protocol: 'TCP' as const, port: 81, targetPort: 8081 },
];

const policyCases: Array<{
  name: string;
  config?: Partial<DesiredConfig>;
  affinity?: boolean;
  rules?: DestinationRule[];
  want: Record<string, { policy: string; sessionAffinitySeconds?: number; source: RegExp; note?: RegExp }>;
}> = [
  {
    name: 'no rule: the built-in default, round robin',
    want: { http: { policy: 'ROUND_ROBIN', source: /^config proxy\.loadBalancer$/ }, admin: { policy: 'ROUND_ROBIN', source: /^config/ } },
  },
  {
    name: 'no rule: the config default',
    config: { proxy: { loadBalancer: 'RANDOM' } },
    want: { http: { policy: 'RANDOM', source: /^config/ }, admin: { policy: 'RANDOM', source: /^config/ } },
  },
  {
    name: 'a rule overrides the default; its port-level setting overrides its top-level one',
    config: { proxy: { loadBalancer: 'RANDOM' } },
    rules: [rule({ name: 'web', service: 'default/web', loadBalancer: { policy: 'CONSISTENT_HASH', source: 'consistentHash.useSourceIp' }, portLoadBalancers: [{ port: 81, loadBalancer: { policy: 'ROUND_ROBIN', source: 'ROUND_ROBIN' } }] })],
    want: {
      http: { policy: 'CONSISTENT_HASH', source: /^DestinationRule default\/web \(consistentHash\.useSourceIp\)$/ },
      admin: { policy: 'ROUND_ROBIN', source: /^DestinationRule default\/web \(ROUND_ROBIN\)$/ },
    },
  },
  {
    name: 'a rule without a load balancer leaves the default',
    config: { proxy: { loadBalancer: 'RANDOM' } },
    rules: [rule({ name: 'tls-only', service: 'default/web' })],
    want: { http: { policy: 'RANDOM', source: /sets no load balancer/ }, admin: { policy: 'RANDOM', source: /sets no load balancer/ } },
  },
  {
    name: "a rule in the service's namespace beats one elsewhere; the other is noted",
    rules: [
      rule({ namespace: 'aaa', name: 'other', service: 'default/web', loadBalancer: { policy: 'RANDOM', source: 'RANDOM' } }),
      rule({ namespace: 'default', name: 'zzz', service: 'default/web', loadBalancer: { policy: 'CONSISTENT_HASH', source: 'consistentHash' } }),
    ],
    want: {
      http: { policy: 'CONSISTENT_HASH', source: /default\/zzz/, note: /also named by DestinationRule aaa\/other \(ignored/ },
      admin: { policy: 'CONSISTENT_HASH', source: /default\/zzz/ },
    },
  },
  {
    name: 'an approximated policy carries its note',
    rules: [rule({ name: 'lr', service: 'default/web', loadBalancer: { policy: 'ROUND_ROBIN', source: 'LEAST_REQUEST', note: 'LEAST_REQUEST is approximated by round robin' } })],
    want: { http: { policy: 'ROUND_ROBIN', source: /LEAST_REQUEST/, note: /approximated/ }, admin: { policy: 'ROUND_ROBIN', source: /LEAST_REQUEST/ } },
  },
  {
    name: 'a rule for another service does not apply',
    rules: [rule({ name: 'api', service: 'default/api', loadBalancer: { policy: 'RANDOM', source: 'RANDOM' } })],
    want: { http: { policy: 'ROUND_ROBIN', source: /^config/ }, admin: { policy: 'ROUND_ROBIN', source: /^config/ } },
  },
  {
    name: 'sessionAffinity ClientIP adds its timeout on top of the policy',
    affinity: true,
    rules: [rule({ name: 'web', service: 'default/web', loadBalancer: { policy: 'RANDOM', source: 'RANDOM' } })],
    want: { http: { policy: 'RANDOM', sessionAffinitySeconds: 600, source: /RANDOM/ }, admin: { policy: 'RANDOM', sessionAffinitySeconds: 600, source: /RANDOM/ } },
  },
];

for (const c of policyCases) {
  test(`policy: ${c.name}`, () => {
    const d = plan({ ...base, ...c.config }, (s) => {
      s.upsertService(makeService({ name: 'web', ports: twoPorts, ...(c.affinity && { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 600 }) }));
      for (const r of c.rules ?? []) s.upsertDestinationRule(r);
    });
    const ports = d.services[0]!.ports;
    for (const p of ports) {
      const want = c.want[p.port.name]!;
      assert.equal(p.spec?.policy, want.policy, p.portName);
      assert.equal(p.spec?.sessionAffinitySeconds, want.sessionAffinitySeconds, p.portName);
      assert.match(p.balancing!.source, want.source, p.portName);
      if (want.note) assert.match(p.balancing!.note ?? '', want.note);
    }
  });
}

function sliceOnNodes(nodes: Array<[string, string | undefined, boolean?]>): EndpointSlice {
  const s = makeSlice('local', []);
  s.endpoints = nodes.map(([ip, nodeName, ready = true]) => ({
    addresses: [ip],
    conditions: { ready, serving: true, terminating: !ready },
    ...(nodeName !== undefined && { nodeName }),
  }));
  return s;
}

const localCases: Array<{ name: string; policy: 'Cluster' | 'Local'; nodeName: string; endpoints: Array<[string, string | undefined, boolean?]>; want: string[]; note?: RegExp }> = [
  { name: 'Cluster: every endpoint', policy: 'Cluster', nodeName: 'node-a', endpoints: [['10.0.0.1', 'node-a'], ['10.0.0.2', 'node-b']], want: ['10.0.0.1', '10.0.0.2'] },
  { name: "Local: only this node's", policy: 'Local', nodeName: 'node-a', endpoints: [['10.0.0.1', 'node-a'], ['10.0.0.2', 'node-b'], ['10.0.0.3', undefined]], want: ['10.0.0.1'] },
  { name: 'Local: a terminating local one is kept (ready-else-serving applies within the node)', policy: 'Local', nodeName: 'node-a', endpoints: [['10.0.0.1', 'node-a', false], ['10.0.0.2', 'node-b']], want: ['10.0.0.1'] },
  { name: 'Local: none on this node → no backend, refused, with the reason', policy: 'Local', nodeName: 'node-a', endpoints: [['10.0.0.2', 'node-b'], ['10.0.0.3', 'node-c']], want: [], note: /^internalTrafficPolicy Local: no usable endpoint on node "node-a" \(2 elsewhere\); connections are refused$/ },
  { name: 'Local without a nodeName in the config → refused, with the reason', policy: 'Local', nodeName: '', endpoints: [['10.0.0.1', 'node-a']], want: [], note: /config nodeName is not set/ },
];

for (const c of localCases) {
  test(`internalTrafficPolicy: ${c.name}`, () => {
    const d = plan({ ...base, nodeName: c.nodeName }, (s) => {
      s.upsertService(makeService({ name: 'local', internalTrafficPolicy: c.policy }));
      s.upsertSlice(sliceOnNodes(c.endpoints));
    });
    const [p] = d.services[0]!.ports;
    assert.deepEqual(p!.spec!.backends.map((b) => b.ip), c.want);
    assert.deepEqual(p!.backends.map((b) => b.ip), c.want, 'the plan shows what traffic may go to');
    if (c.note) assert.match(p!.trafficPolicyNote ?? '', c.note);
    else assert.equal(p!.trafficPolicyNote, undefined);
    assert.equal(d.proxySpecs.length, 1, 'still proxied: the listener refuses instead of kube-proxy routing elsewhere');
  });
}
