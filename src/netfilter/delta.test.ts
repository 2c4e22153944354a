import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules, ProxiedPortRule, RenderedRules } from '../rules/types.ts';
import { mustLead, planDelta, REFILL_COST_IN_SCANNED_RULES, rulesByChain } from './delta.ts';

const port = (i: number, listenPort = 30000 + i): ProxiedPortRule => ({
  portName: `default/svc-${i}:http`,
  clusterIP: `10.96.1.${i}`,
  protocol: i % 5 === 0 ? 'UDP' : 'TCP',
  port: 80,
  listenPort,
});
const desired = (proxied: ProxiedPortRule[], extra: Partial<DesiredRules> = {}): DesiredRules => ({
  layout: 'portals',
  family: 'ipv4',
  proxied,
  ignored: [],
  ...extra,
});
const redirect = (chain: string, i: number, listenPort = 30000 + i) => {
  const p = i % 5 === 0 ? 'udp' : 'tcp';
  return `-A ${chain} -d 10.96.1.${i}/32 -p ${p} -m comment --comment "default/svc-${i}:http" -m ${p} --dport 80 -j REDIRECT --to-ports ${listenPort}`;
};
const C = 'KUBE-PORTALS-CONTAINER';
const H = 'KUBE-PORTALS-HOST';
const del = (line: string) => `-D${line.slice(2)}`;

/** What the chains hold after a write of exactly `rendered`. */
const written = (rendered: RenderedRules) => rulesByChain(rendered);

test('planDelta: same rules, nothing to write', () => {
  const r = renderRules(desired([port(1), port(2)]));
  assert.deepEqual(planDelta(written(r), r), { lines: [], next: written(r), rewritten: [] });
});

test('planDelta: missing chains are created and filled', () => {
  const r = renderRules(desired([port(1)]));
  assert.deepEqual(planDelta(new Map(), r), {
    lines: [`:${C} - [0:0]`, `:${H} - [0:0]`, redirect(C, 1), redirect(H, 1)],
    next: written(r),
    rewritten: [C, H],
  });
});

test('planDelta: removed, added and changed services touch only their rules', () => {
  const before = renderRules(desired([port(1), port(2), port(3)]));
  const after = renderRules(desired([port(1), port(3, 40003), port(4)]));
  const plan = planDelta(written(before), after);
  assert.deepEqual(plan.lines, [
    del(redirect(C, 2)),
    del(redirect(C, 3)),
    del(redirect(H, 2)),
    del(redirect(H, 3)),
    redirect(C, 3, 40003),
    redirect(C, 4),
    redirect(H, 3, 40003),
    redirect(H, 4),
  ]);
  // Appended rules sit at the end of the chain, and the next delta is planned against that.
  assert.deepEqual(plan.next.get(H), [redirect(H, 1), redirect(H, 3, 40003), redirect(H, 4)]);
  assert.deepEqual(planDelta(plan.next, after).lines, []);
});

test('planDelta: order inside a portals chain is not a difference; the quoting of a comment neither', () => {
  const r = renderRules(desired([port(1), port(2)]));
  const current = new Map([
    [C, [redirect(C, 2), redirect(C, 1).replace('"default/svc-1:http"', 'default/svc-1:http')]],
    [H, [redirect(H, 1), redirect(H, 2)]],
  ]);
  assert.deepEqual(planDelta(current, r), { lines: [], next: current, rewritten: [] });
});

test('planDelta: -D uses the current text of the rule, whatever spelling was rendered', () => {
  const bare = redirect(C, 1).replace('"default/svc-1:http"', 'default/svc-1:http');
  const plan = planDelta(new Map([[C, [bare, redirect(C, 2)]], [H, [redirect(H, 2)]]]), renderRules(desired([port(2)])));
  assert.deepEqual(plan.lines, [del(bare)]);
});

test('planDelta: a duplicated rule loses only its copy', () => {
  const r = renderRules(desired([port(1)]));
  const plan = planDelta(new Map([[C, [redirect(C, 1), redirect(C, 1)]], [H, [redirect(H, 1)]]]), r);
  assert.deepEqual(plan.lines, [del(redirect(C, 1))]);
  assert.deepEqual(plan.next.get(C), [redirect(C, 1)]);
});

test('planDelta: chains that are not rendered are left alone', () => {
  const r = renderRules(desired([port(1)]));
  const current = new Map([...written(r), ['EDGE-MESH', ['-A EDGE-MESH -j RETURN']]]);
  assert.deepEqual(planDelta(current, r).lines, []);
});

test('planDelta: more deletions than a refill costs flush and refill the chain', () => {
  const n = 200;
  const all = Array.from({ length: n }, (_, i) => port(i + 1));
  const before = renderRules(desired(all));
  // The container chain loses few enough rules to delete; the threshold is deletions × chain
  // length against REFILL_COST_IN_SCANNED_RULES × rules kept.
  const few = Math.floor((REFILL_COST_IN_SCANNED_RULES * (n - 1)) / n / 2);
  const after = renderRules(desired(all.slice(few)));
  const cheap = planDelta(written(before), after);
  assert.equal(cheap.lines.length, 2 * few);
  assert.deepEqual(cheap.rewritten, []);

  const most = renderRules(desired(all.slice(100)));
  const plan = planDelta(written(before), most);
  assert.deepEqual(plan.rewritten, [C, H]);
  assert.deepEqual(plan.lines, [`:${C} - [0:0]`, `:${H} - [0:0]`, ...most.rules]);
  assert.deepEqual(plan.next, written(most));
  // Emptying a chain is a flush.
  assert.deepEqual(planDelta(written(before), renderRules(desired([]))).lines, [`:${C} - [0:0]`, `:${H} - [0:0]`]);
});

const ret = (ip: string, key: string) => `-A EDGE-MESH -d ${ip}/32 -m comment --comment "ignore ${key} service" -j RETURN`;
const tcpJump = (cidr: string) => `-A EDGE-MESH -d ${cidr} -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP`;
const udpJump = (cidr: string) => `-A EDGE-MESH -d ${cidr} -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP`;
const edgeMesh = (ignored: DesiredRules['ignored'], serviceCIDR = '10.96.0.0/16') =>
  renderRules(desired([port(1), port(5)], { layout: 'edge-mesh', serviceCIDR, ignored }));

test('planDelta (edge-mesh): RETURNs go in at position 1, in rendered order; the jumps stay behind them', () => {
  const before = edgeMesh([{ key: 'a/x', ips: ['10.96.0.5'] }]);
  const after = edgeMesh([
    { key: 'a/x', ips: ['10.96.0.5'] },
    { key: 'a/y', ips: ['10.96.0.3', '10.96.0.9'] },
  ]);
  const plan = planDelta(written(before), after);
  assert.deepEqual(plan.lines, [
    `-I EDGE-MESH 1${ret('10.96.0.9', 'a/y').slice(12)}`,
    `-I EDGE-MESH 1${ret('10.96.0.3', 'a/y').slice(12)}`,
  ]);
  assert.equal(plan.lines[0], '-I EDGE-MESH 1 -d 10.96.0.9/32 -m comment --comment "ignore a/y service" -j RETURN');
  assert.deepEqual(plan.next.get('EDGE-MESH'), [
    ret('10.96.0.3', 'a/y'),
    ret('10.96.0.9', 'a/y'),
    ret('10.96.0.5', 'a/x'),
    tcpJump('10.96.0.0/16'),
    udpJump('10.96.0.0/16'),
  ]);
});

test('planDelta (edge-mesh): a changed serviceCIDR replaces the jumps by -D and -A, after the RETURNs', () => {
  const before = edgeMesh([{ key: 'a/x', ips: ['10.96.0.5'] }]);
  const after = edgeMesh([{ key: 'a/x', ips: ['10.96.0.5'] }, { key: 'a/y', ips: ['10.96.0.3'] }], '10.96.0.0/12');
  const plan = planDelta(written(before), after);
  assert.deepEqual(plan.lines, [
    del(tcpJump('10.96.0.0/16')),
    del(udpJump('10.96.0.0/16')),
    '-I EDGE-MESH 1 -d 10.96.0.3/32 -m comment --comment "ignore a/y service" -j RETURN',
    tcpJump('10.96.0.0/12'),
    udpJump('10.96.0.0/12'),
  ]);
  assert.ok(plan.next.get('EDGE-MESH')!.slice(0, 2).every((l) => mustLead('EDGE-MESH', l)));
});

test('planDelta (edge-mesh): a RETURN found behind a protocol jump makes the chain be rewritten in order', () => {
  const r = edgeMesh([{ key: 'a/x', ips: ['10.96.0.5'] }]);
  const current = written(r);
  current.set('EDGE-MESH', [tcpJump('10.96.0.0/16'), ret('10.96.0.5', 'a/x'), udpJump('10.96.0.0/16')]);
  const plan = planDelta(current, r);
  assert.deepEqual(plan.lines, [':EDGE-MESH - [0:0]', ...written(r).get('EDGE-MESH')!]);
  assert.deepEqual(plan.rewritten, ['EDGE-MESH']);
});

test('mustLead and rulesByChain', () => {
  assert.equal(mustLead('EDGE-MESH', ret('10.96.0.5', 'a/x')), true);
  assert.equal(mustLead('EDGE-MESH', tcpJump('10.96.0.0/16')), false);
  assert.equal(mustLead('KUBE-PORTALS-HOST', '-A KUBE-PORTALS-HOST -d 10.0.0.1/32 -j RETURN'), false);
  assert.throws(() => rulesByChain({ chains: [C], jumps: [], rules: [redirect(H, 1)] }), /not in rendered.chains/);
});
