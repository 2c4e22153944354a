import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules } from '../rules/types.ts';
import { planCleanup, planIncremental, planSync, type FullSyncNeeded, type SyncPlan } from './plan.ts';
import { parseNatSave } from './save.ts';

const fixture = readFileSync(new URL('../../test/fixtures/kube-proxy-nat.rules', import.meta.url), 'utf8');
const kubeServicesJump = (chain: string) => `-A ${chain} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`;
const portalsJump = (chain: string, target: string) =>
  `-A ${chain} -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j ${target}`;
const edgeMeshJump = (chain: string) => `-A ${chain} -m comment --comment "edgemesh root chain" -j EDGE-MESH`;

const desired: DesiredRules = {
  layout: 'portals',
  family: 'ipv4',
  serviceCIDR: '10.96.0.0/16',
  proxied: [
    { portName: 'default/web:http', clusterIP: '10.96.10.10', protocol: 'TCP', port: 80, listenPort: 40123 },
    { portName: 'default/echo-udp:p', clusterIP: '10.96.30.30', protocol: 'UDP', port: 99, listenPort: 40125 },
  ],
  ignored: [{ key: 'kube-system/kube-dns', ips: ['10.96.0.10'] }],
};
const portals = renderRules(desired);
const edgeMesh = renderRules({ ...desired, layout: 'edge-mesh' });

const portalsChains = [
  '-A KUBE-PORTALS-CONTAINER -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 40123',
  '-A KUBE-PORTALS-CONTAINER -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40125',
  '-A KUBE-PORTALS-HOST -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 40123',
  '-A KUBE-PORTALS-HOST -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40125',
];
const portalsInserts = [
  '-I PREROUTING 1 -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER',
  '-I OUTPUT 1 -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST',
];
const edgeMeshChains = [
  '-A EDGE-MESH -d 10.96.0.10/32 -m comment --comment "ignore kube-system/kube-dns service" -j RETURN',
  '-A EDGE-MESH -d 10.96.0.0/16 -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP',
  '-A EDGE-MESH -d 10.96.0.0/16 -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP',
  '-A EDGE-MESH-TCP -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 40123',
  '-A EDGE-MESH-UDP -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40125',
];

/** A nat table as iptables-save would print it: the given chain declarations and rules. */
function table(chains: string[], rules: string[]) {
  const builtins = ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'].map((c) => `:${c} ACCEPT [0:0]`);
  return parseNatSave(['*nat', ...builtins, ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n'));
}

/** The fixture with extra declarations and PREROUTING/OUTPUT replaced by the given rules. */
function fixtureWith(chains: string[], prerouting: string[], output: string[], ours: string[]) {
  const lines = fixture.split('\n').filter((l) => !l.startsWith('-A PREROUTING ') && !l.startsWith('-A OUTPUT '));
  const at = lines.indexOf(':KUBE-PROXY-CANARY - [0:0]');
  lines.splice(at, 0, ...chains.map((c) => `:${c} - [0:0]`));
  const commit = lines.lastIndexOf('COMMIT');
  lines.splice(commit, 0, ...prerouting, ...output, ...ours);
  return parseNatSave(lines.join('\n'));
}

/** The plan without its next-state map, for whole-result comparisons. */
function result(plan: SyncPlan | FullSyncNeeded) {
  assert.ok('payload' in plan, 'fullSyncNeeded' in plan ? plan.fullSyncNeeded : '');
  const { chains: _chains, ...rest } = plan;
  return rest;
}
const nothing = { payload: '', repairs: [], installed: [] };

const portalsInstalled = (prerouting: string[], output: string[]) =>
  fixtureWith(['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST'], prerouting, output, portalsChains);

test('planSync: fresh table creates chains, rules and first-position jumps', () => {
  const plan = planSync(portals, table([], []));
  assert.equal(
    plan.payload,
    [':KUBE-PORTALS-CONTAINER - [0:0]', ':KUBE-PORTALS-HOST - [0:0]', ...portalsChains, ...portalsInserts, ''].join('\n'),
  );
  // A first install is not a repair.
  assert.deepEqual(plan.repairs, []);
  assert.deepEqual(plan.installed, [
    'PREROUTING: jump to KUBE-PORTALS-CONTAINER inserted at position 1',
    'OUTPUT: jump to KUBE-PORTALS-HOST inserted at position 1',
  ]);
});

test('planSync: our chain exists but its jump is gone (someone deleted it): a repair', () => {
  const live = portalsInstalled([kubeServicesJump('PREROUTING')], [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')]);
  const plan = planSync(portals, live);
  assert.deepEqual(plan.repairs, ['PREROUTING: jump to KUBE-PORTALS-CONTAINER was missing; inserted at position 1']);
  assert.deepEqual(plan.installed, []);
});

test('planSync: kube-proxy table without our jumps never names kube-proxy chains', () => {
  const plan = planSync(portals, parseNatSave(fixture));
  assert.equal(
    plan.payload,
    [':KUBE-PORTALS-CONTAINER - [0:0]', ':KUBE-PORTALS-HOST - [0:0]', ...portalsChains, ...portalsInserts, ''].join('\n'),
  );
  assert.doesNotMatch(plan.payload, /KUBE-(SERVICES|SVC|SEP|NODEPORTS|MARK|POSTROUTING)/);
  assert.equal(plan.installed.length, 2);
});

test('planSync: everything in place writes nothing, whatever the comment quoting', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  assert.deepEqual(result(planSync(portals, live)), nothing);
  // An older iptables-save that prints safe comments bare still compares equal.
  const bare = portalsInstalled([portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER')], [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST')]);
  const rules = bare.chains.get('KUBE-PORTALS-HOST')!.rules;
  rules[0] = rules[0]!.replace('"default/web:http"', 'default/web:http');
  assert.deepEqual(result(planSync(portals, bare)), nothing);
  // The next baseline keeps the live spelling: a later -D must name the rule as the kernel prints it.
  assert.equal(planSync(portals, bare).chains.get('KUBE-PORTALS-HOST')?.[0], rules[0]);
});

test('planSync: changed rules are deleted by their live text and added, good jumps left alone', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  const removed = renderRules({ ...desired, proxied: desired.proxied.slice(0, 1) });
  assert.deepEqual(result(planSync(removed, live)), {
    ...nothing,
    payload: [`-D${portalsChains[1]!.slice(2)}`, `-D${portalsChains[3]!.slice(2)}`, ''].join('\n'),
  });
  const moved = renderRules({ ...desired, proxied: [{ ...desired.proxied[0]!, listenPort: 40200 }, desired.proxied[1]!] });
  const plan = planSync(moved, live);
  assert.equal(
    plan.payload,
    [
      `-D${portalsChains[0]!.slice(2)}`,
      `-D${portalsChains[2]!.slice(2)}`,
      portalsChains[0]!.replace('40123', '40200'),
      portalsChains[2]!.replace('40123', '40200'),
      '',
    ].join('\n'),
  );
  assert.deepEqual(plan.chains.get('KUBE-PORTALS-HOST'), [portalsChains[3], portalsChains[2]!.replace('40123', '40200')]);
});

test('planSync: a flushed chain of ours is refilled', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  live.chains.get('KUBE-PORTALS-HOST')!.rules.length = 0;
  assert.deepEqual(result(planSync(portals, live)), { ...nothing, payload: [portalsChains[2], portalsChains[3], ''].join('\n') });
  // The retry after a failed write flushes and refills instead of deleting.
  assert.equal(
    planSync(portals, live, { refillChains: true }).payload,
    [':KUBE-PORTALS-CONTAINER - [0:0]', ':KUBE-PORTALS-HOST - [0:0]', ...portalsChains, ''].join('\n'),
  );
});

test('planSync: our jump behind KUBE-SERVICES is deleted by spec and re-inserted first', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
    [kubeServicesJump('OUTPUT'), portalsJump('OUTPUT', 'KUBE-PORTALS-HOST')],
  );
  const plan = planSync(portals, live);
  assert.equal(
    plan.payload,
    [
      '-D OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST',
      portalsInserts[1],
      '',
    ].join('\n'),
  );
  assert.deepEqual(plan.repairs, [
    'OUTPUT: jump to KUBE-PORTALS-HOST was behind KUBE-SERVICES (position 2, KUBE-SERVICES at 1); moved to position 1',
  ]);
});

test('planSync: duplicated jump is reduced to one at position 1', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING'), portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  const plan = planSync(portals, live);
  const del = '-D PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER';
  assert.equal(plan.payload, [del, del, portalsInserts[0], ''].join('\n'));
  assert.deepEqual(plan.repairs, ['PREROUTING: jump to KUBE-PORTALS-CONTAINER was duplicated (positions 1, 3); kept one at position 1']);
});

test('planSync: a jump with another comment is replaced', () => {
  const live = portalsInstalled(
    ['-A PREROUTING -m comment --comment "old comment" -j KUBE-PORTALS-CONTAINER', kubeServicesJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  const plan = planSync(portals, live);
  assert.equal(plan.payload, ['-D PREROUTING -m comment --comment "old comment" -j KUBE-PORTALS-CONTAINER', portalsInserts[0], ''].join('\n'));
  assert.deepEqual(plan.repairs, ['PREROUTING: jump to KUBE-PORTALS-CONTAINER differed from the expected rule; replaced it']);
});

test('planSync: switching portals -> edge-mesh removes the old chains and their jumps', () => {
  const live = portalsInstalled(
    [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  const plan = planSync(edgeMesh, live);
  assert.equal(
    plan.payload,
    [
      ':EDGE-MESH - [0:0]',
      ':EDGE-MESH-TCP - [0:0]',
      ':EDGE-MESH-UDP - [0:0]',
      ...edgeMeshChains,
      ':KUBE-PORTALS-CONTAINER - [0:0]',
      ':KUBE-PORTALS-HOST - [0:0]',
      '-D PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER',
      '-D OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST',
      '-I PREROUTING 1 -m comment --comment "edgemesh root chain" -j EDGE-MESH',
      '-I OUTPUT 1 -m comment --comment "edgemesh root chain" -j EDGE-MESH',
      '-X KUBE-PORTALS-CONTAINER',
      '-X KUBE-PORTALS-HOST',
      '',
    ].join('\n'),
  );
  assert.deepEqual(plan.repairs, [
    'removed chain KUBE-PORTALS-CONTAINER: not used by the current layout',
    'removed chain KUBE-PORTALS-HOST: not used by the current layout',
    'PREROUTING: removed jump to KUBE-PORTALS-CONTAINER at position 1 (KUBE-PORTALS-CONTAINER is not used by the current layout)',
    'OUTPUT: removed jump to KUBE-PORTALS-HOST at position 1 (KUBE-PORTALS-HOST is not used by the current layout)',
  ]);
});

test('planSync: stray jump to our chain from another chain is removed', () => {
  const live = fixtureWith(
    ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'],
    [edgeMeshJump('PREROUTING'), kubeServicesJump('PREROUTING')],
    [edgeMeshJump('OUTPUT'), kubeServicesJump('OUTPUT')],
    [...edgeMeshChains, '-A POSTROUTING -j EDGE-MESH'],
  );
  const plan = planSync(edgeMesh, live);
  assert.equal(plan.payload, '-D POSTROUTING -j EDGE-MESH\n');
  assert.deepEqual(plan.repairs, ['POSTROUTING: removed jump to EDGE-MESH at position 2 (not expected in this chain)']);
});

test('planSync: edge-mesh jumps in place write nothing', () => {
  const live = fixtureWith(
    ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'],
    [edgeMeshJump('PREROUTING'), kubeServicesJump('PREROUTING')],
    [edgeMeshJump('OUTPUT'), kubeServicesJump('OUTPUT')],
    edgeMeshChains,
  );
  assert.deepEqual(result(planSync(edgeMesh, live)), nothing);
});

test('planSync: several jumps into one chain keep their relative order', () => {
  const rendered = {
    chains: ['EDGE-MESH', 'EDGE-MESH-TCP'],
    jumps: [
      { chain: 'PREROUTING' as const, target: 'EDGE-MESH', comment: 'a' },
      { chain: 'PREROUTING' as const, target: 'EDGE-MESH-TCP', comment: 'b' },
    ],
    rules: [],
  };
  const live = table(['EDGE-MESH', 'EDGE-MESH-TCP'], [
    '-A PREROUTING -m comment --comment b -j EDGE-MESH-TCP',
    '-A PREROUTING -m comment --comment a -j EDGE-MESH',
  ]);
  const plan = planSync(rendered, live);
  assert.equal(
    plan.payload,
    [
      '-D PREROUTING -m comment --comment b -j EDGE-MESH-TCP',
      '-D PREROUTING -m comment --comment a -j EDGE-MESH',
      '-I PREROUTING 1 -m comment --comment a -j EDGE-MESH',
      '-I PREROUTING 2 -m comment --comment b -j EDGE-MESH-TCP',
      '',
    ].join('\n'),
  );
  assert.deepEqual(result(planSync(rendered, table(['EDGE-MESH', 'EDGE-MESH-TCP'], [
    '-A PREROUTING -m comment --comment a -j EDGE-MESH',
    '-A PREROUTING -m comment --comment b -j EDGE-MESH-TCP',
  ]))), nothing);
});

/** PREROUTING and OUTPUT as `iptables -S` would list them. */
function builtins(prerouting: string[], output: string[]) {
  return parseNatSave(['*nat', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...prerouting, ...output, 'COMMIT', ''].join('\n'));
}
const portalsBuiltins = builtins(
  [portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER'), kubeServicesJump('PREROUTING')],
  [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
);

test('planIncremental: nothing changed writes nothing', () => {
  const written = planSync(portals, table([], [])).chains;
  assert.deepEqual(result(planIncremental(portals, written, portalsBuiltins)), nothing);
});

test('planIncremental: one changed service is one -D and one -A per chain, by exact text', () => {
  const written = planSync(portals, table([], [])).chains;
  const changed = renderRules({ ...desired, proxied: [desired.proxied[0]!, { ...desired.proxied[1]!, listenPort: 40300 }] });
  const plan = planIncremental(changed, written, portalsBuiltins);
  assert.deepEqual(result(plan), {
    ...nothing,
    payload: [
      `-D${portalsChains[1]!.slice(2)}`,
      `-D${portalsChains[3]!.slice(2)}`,
      portalsChains[1]!.replace('40125', '40300'),
      portalsChains[3]!.replace('40125', '40300'),
      '',
    ].join('\n'),
  });
  // The next sync plans against what this one leaves: the same rendering writes nothing.
  assert.ok('chains' in plan);
  assert.deepEqual(result(planIncremental(changed, plan.chains, portalsBuiltins)), nothing);
});

test('planIncremental: KUBE-SERVICES moved in front is repaired without reading our chains', () => {
  const written = planSync(portals, table([], [])).chains;
  const moved = builtins(
    [kubeServicesJump('PREROUTING'), portalsJump('PREROUTING', 'KUBE-PORTALS-CONTAINER')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
  );
  assert.deepEqual(result(planIncremental(portals, written, moved)), {
    payload: [
      '-D PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER',
      portalsInserts[0],
      '',
    ].join('\n'),
    repairs: ['PREROUTING: jump to KUBE-PORTALS-CONTAINER was behind KUBE-SERVICES (position 2, KUBE-SERVICES at 1); moved to position 1'],
    installed: [],
  });
});

test('planIncremental: a missing jump or another chain set asks for a full sync', () => {
  const written = planSync(portals, table([], [])).chains;
  const flushed = builtins([kubeServicesJump('PREROUTING')], [kubeServicesJump('OUTPUT')]);
  assert.deepEqual(planIncremental(portals, written, flushed), {
    fullSyncNeeded: 'PREROUTING: jump to KUBE-PORTALS-CONTAINER is missing',
  });
  assert.deepEqual(planIncremental(edgeMesh, written, portalsBuiltins), {
    fullSyncNeeded: 'chains changed (KUBE-PORTALS-CONTAINER, KUBE-PORTALS-HOST -> EDGE-MESH, EDGE-MESH-TCP, EDGE-MESH-UDP)',
  });
});

test('planIncremental (edge-mesh): new RETURNs go in at the top, ahead of the protocol jumps', () => {
  const written = planSync(edgeMesh, table([], [])).chains;
  const more = renderRules({
    ...desired,
    layout: 'edge-mesh',
    ignored: [...desired.ignored, { key: 'default/a', ips: ['10.96.0.20', '10.96.0.21'] }],
  });
  const ret = (ip: string) => `-d ${ip}/32 -m comment --comment "ignore default/a service" -j RETURN`;
  const plan = planIncremental(more, written, builtins([edgeMeshJump('PREROUTING')], [edgeMeshJump('OUTPUT')]));
  assert.deepEqual(result(plan), {
    ...nothing,
    payload: [`-I EDGE-MESH 1 ${ret('10.96.0.21')}`, `-I EDGE-MESH 1 ${ret('10.96.0.20')}`, ''].join('\n'),
  });
  assert.ok('chains' in plan);
  assert.deepEqual(plan.chains.get('EDGE-MESH'), [`-A EDGE-MESH ${ret('10.96.0.20')}`, `-A EDGE-MESH ${ret('10.96.0.21')}`, ...edgeMeshChains.slice(0, 3)]);
});

test('planCleanup: removes both layouts and all jumps, nothing of kube-proxy', () => {
  const live = fixtureWith(
    ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP', 'KUBE-PORTALS-HOST'],
    [edgeMeshJump('PREROUTING'), kubeServicesJump('PREROUTING'), edgeMeshJump('PREROUTING')],
    [portalsJump('OUTPUT', 'KUBE-PORTALS-HOST'), kubeServicesJump('OUTPUT')],
    edgeMeshChains,
  );
  assert.equal(
    planCleanup(live),
    [
      ':KUBE-PORTALS-HOST - [0:0]',
      ':EDGE-MESH - [0:0]',
      ':EDGE-MESH-TCP - [0:0]',
      ':EDGE-MESH-UDP - [0:0]',
      '-D PREROUTING -m comment --comment "edgemesh root chain" -j EDGE-MESH',
      '-D PREROUTING -m comment --comment "edgemesh root chain" -j EDGE-MESH',
      '-D OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST',
      '-X KUBE-PORTALS-HOST',
      '-X EDGE-MESH',
      '-X EDGE-MESH-TCP',
      '-X EDGE-MESH-UDP',
      '',
    ].join('\n'),
  );
});

test('planCleanup: nothing of ours gives an empty payload', () => {
  assert.equal(planCleanup(parseNatSave(fixture)), '');
  assert.equal(planCleanup(table([], [])), '');
});
