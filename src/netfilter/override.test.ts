import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules, ProxiedPortRule } from '../rules/types.ts';
import { planDelta, rulesByChain } from './delta.ts';
import { countLeftBehind, isOverrideReturn, matchKey, MAX_LEFT_BEHIND, overrideReturn, planOverrides, type OverridePlan } from './override.ts';

const C = 'KUBE-PORTALS-CONTAINER';
const H = 'KUBE-PORTALS-HOST';
const port = (i: number, listenPort = 30000 + i): ProxiedPortRule => ({
  portName: `default/svc-${i}:http`,
  clusterIP: `10.96.1.${i}`,
  protocol: 'TCP',
  port: 80,
  listenPort,
});
const desired = (proxied: ProxiedPortRule[]): DesiredRules => ({ layout: 'portals', family: 'ipv4', proxied, ignored: [] });
const rule = (chain: string, i: number, listenPort = 30000 + i) =>
  `-A ${chain} -d 10.96.1.${i}/32 -p tcp -m comment --comment "default/svc-${i}:http" -m tcp --dport 80 -j REDIRECT --to-ports ${listenPort}`;
const returnFor = (chain: string, i: number) =>
  `-A ${chain} -d 10.96.1.${i}/32 -p tcp -m comment --comment "edgeproxy removed: default/svc-${i}:http" -m tcp --dport 80 -j RETURN`;
const insert = (line: string, chain = C) => `-I ${chain} 1${line.slice(3 + chain.length)}`;
const asPlan = (x: ReturnType<typeof planOverrides>): OverridePlan => {
  assert.ok(typeof x === 'object', `expected a plan, got ${String(x)}`);
  return x;
};
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => from + k);

test('matchKey: the rule without its comment (bare or quoted, with escapes) and target', () => {
  const key = `-A ${C} -d 10.96.1.4/32 -p tcp -m tcp --dport 80`;
  assert.equal(matchKey(rule(C, 4)), key);
  assert.equal(matchKey(rule(C, 4, 1)), key);
  assert.equal(matchKey(returnFor(C, 4)), key);
  assert.equal(matchKey(`-A ${C} -d 10.96.1.4/32 -p tcp -m comment --comment "a \\"-j X\\" b" -m tcp --dport 80 -j RETURN`), key);
  assert.equal(matchKey(`-A ${C} -d 10.96.1.4/32 -p tcp -m comment --comment bare -m tcp --dport 80 -g OTHER`), key);
  assert.notEqual(matchKey(rule(C, 5)), key);
});

test('overrideReturn: same match, RETURN, a comment saying what it stands for', () => {
  assert.equal(overrideReturn(C, rule(C, 4)), returnFor(C, 4));
  assert.ok(isOverrideReturn(returnFor(C, 4)));
  assert.ok(!isOverrideReturn(rule(C, 4)));
  // A rule without a comment gets one; an over-long comment is cut to what iptables keeps.
  assert.equal(overrideReturn(C, `-A ${C} -d 10.0.0.1/32 -p udp -j REDIRECT --to-ports 5`), `-A ${C} -d 10.0.0.1/32 -p udp -m comment --comment "edgeproxy removed: " -j RETURN`);
  const long = overrideReturn(C, `-A ${C} -d 10.0.0.1/32 -m comment --comment ${'x'.repeat(300)} -j REDIRECT --to-ports 5`);
  assert.equal(/--comment "([^"]*)"/.exec(long)?.[1]?.length, 255);
});

const cases: { name: string; have: number[]; want: [number, number?][]; inserts: string[]; appends: string[] }[] = [
  { name: 'a changed rule goes in ahead of the old one', have: [1, 2, 3], want: [[1], [2, 40002], [3]], inserts: [rule(C, 2, 40002)], appends: [] },
  { name: 'a removed rule is overridden by a RETURN', have: [1, 2, 3], want: [[1], [3]], inserts: [returnFor(C, 2)], appends: [] },
  { name: 'a new rule is appended', have: [1, 2], want: [[1], [2], [3]], inserts: [], appends: [rule(C, 3)] },
];
for (const c of cases) {
  test(`planOverrides: ${c.name}`, () => {
    const have = c.have.map((i) => rule(C, i));
    const want = c.want.map(([i, p]) => rule(C, i, p));
    const plan = asPlan(planOverrides(C, have, want));
    assert.deepEqual(plan.inserts, c.inserts.map((l) => insert(l)));
    assert.deepEqual(plan.appends, c.appends);
    assert.deepEqual(plan.next, [...c.inserts.reverse(), ...have, ...c.appends]);
  });
}

test('planOverrides: judges a chain by the rule packets meet first, so overrides are never stacked twice', () => {
  const want = [rule(C, 1), rule(C, 3)];
  const overridden = [returnFor(C, 2), rule(C, 1), rule(C, 2), rule(C, 3)];
  assert.equal(planOverrides(C, overridden, want), 'unchanged');
  assert.equal(planOverrides(C, [rule(C, 3), rule(C, 1)], want), 'identical');
  assert.equal(planOverrides(C, [rule(C, 1), rule(C, 1), rule(C, 3)], want), 'unchanged');
  assert.equal(countLeftBehind(overridden), 2);
  assert.equal(countLeftBehind(want), 0);
  // The removed service comes back: its rule goes in ahead of the RETURN.
  const back = asPlan(planOverrides(C, overridden, [...want, rule(C, 2, 40002)]));
  assert.deepEqual(back.inserts, [insert(rule(C, 2, 40002))]);
  // Back with its old rule (the one behind the RETURN): still an insert, the RETURN comes first.
  const same = asPlan(planOverrides(C, overridden, [...want, rule(C, 2)]));
  assert.deepEqual(same.inserts, [insert(rule(C, 2))]);
});

test('planOverrides: gives up (undefined) on two wanted rules for the same packets, or too much left behind', () => {
  assert.equal(planOverrides(C, [rule(C, 1)], [rule(C, 1), rule(C, 1, 5)]), undefined);
  // Each removed rule leaves itself and its RETURN behind.
  const have = range(1, MAX_LEFT_BEHIND / 2 + 1).map((i) => rule(C, i));
  assert.equal(planOverrides(C, have, []), undefined);
  assert.ok(planOverrides(C, have.slice(1), []) !== undefined);
});

test('planDelta with overrideFrom: long chains take overrides; the next quiet delta tidies them; short chains stay exact', () => {
  const before = renderRules(desired(range(1, 6).map((i) => port(i))));
  const after = renderRules(desired([...range(1, 5).map((i) => port(i, i === 2 ? 40002 : undefined)), port(7)]));
  const current = rulesByChain(before);
  const changed = planDelta(current, after, { overrideFrom: 6 });
  assert.deepEqual(changed.lines, [
    insert(rule(C, 2, 40002)),
    insert(returnFor(C, 6)),
    insert(rule(H, 2, 40002), H),
    insert(returnFor(H, 6), H),
    rule(C, 7),
    rule(H, 7),
  ]);
  // Nothing changes now: exact deletions of what was left behind.
  const quiet = planDelta(changed.next, after, { overrideFrom: 6 });
  assert.deepEqual(quiet.lines, [
    `-D${returnFor(C, 6).slice(2)}`,
    `-D${rule(C, 2).slice(2)}`,
    `-D${rule(C, 6).slice(2)}`,
    `-D${returnFor(H, 6).slice(2)}`,
    `-D${rule(H, 2).slice(2)}`,
    `-D${rule(H, 6).slice(2)}`,
  ]);
  assert.deepEqual(planDelta(quiet.next, after, { overrideFrom: 6 }).lines, []);
  // Below the threshold the same change is an exact delta.
  assert.deepEqual(planDelta(current, after, { overrideFrom: 7 }).lines, planDelta(current, after).lines);
});

test('planDelta with overrideFrom: leftovers stay while there are changes to make, and go with the first quiet delta', () => {
  const rendered = renderRules(desired(range(1, 6).map((i) => port(i))));
  const current = rulesByChain(rendered);
  const withLeftover = new Map(current);
  withLeftover.set(C, [returnFor(C, 9), ...current.get(C)!]);
  const changed = renderRules(desired([...range(1, 6).map((i) => port(i)), port(8)]));
  // A new service: appended, C's leftover stays; it goes with the quiet delta after.
  const plan = planDelta(withLeftover, changed, { overrideFrom: 6 });
  assert.deepEqual(plan.lines, [rule(C, 8), rule(H, 8)]);
  assert.deepEqual(planDelta(plan.next, changed, { overrideFrom: 6 }).lines, [`-D${returnFor(C, 9).slice(2)}`]);
});

test('planOverrides: rules without a destination are compared by their whole match', () => {
  const have = [`-A ${C} -p tcp -m comment --comment old -j REDIRECT --to-ports 1`, rule(C, 1)];
  const want = [`-A ${C} -p tcp -m comment --comment new -j REDIRECT --to-ports 2`, rule(C, 1)];
  const plan = asPlan(planOverrides(C, have, want));
  assert.deepEqual(plan.inserts, [insert(want[0]!)]);
  assert.deepEqual(plan.appends, []);
});
