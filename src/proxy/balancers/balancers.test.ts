import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendId, type Backend } from '../../model/types.ts';
import type { Balancer } from '../balancer.ts';
import { ConsistentHashBalancer, RandomBalancer, ReconfigurableBalancer, RoundRobinBalancer, createBalancer, policyLabel } from './index.ts';

function b(ip: string, port = 80): Backend {
  return { ip, port, ready: true, serving: true, terminating: false };
}
const A = b('10.0.0.1');
const B = b('10.0.0.2');
const C = b('10.0.0.3');
const D = b('10.0.0.4');
const ids = (xs: readonly (Backend | undefined)[]) => xs.map((x) => (x ? backendId(x) : undefined));

/** A deterministic RandomFn (mulberry32). */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const clientIp = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

interface PolicyCase {
  name: string;
  make: (backends: Backend[]) => Balancer;
  /** Every connection from one client IP; false: each connection from a new client. */
  oneClient: boolean;
  /** Allowed deviation of each backend's share from 1/N over 8000 connections. */
  tolerance: number;
}

const policies: PolicyCase[] = [
  { name: 'round robin', make: (bs) => new RoundRobinBalancer(bs), oneClient: true, tolerance: 0 },
  { name: 'random', make: (bs) => new RandomBalancer(bs, seeded(7)), oneClient: true, tolerance: 0.03 },
  { name: 'consistent hash', make: (bs) => new ConsistentHashBalancer(bs), oneClient: false, tolerance: 0.06 },
];

for (const p of policies) {
  test(`${p.name}: spreads connections evenly over the backends`, () => {
    const bal = p.make([A, B, C, D]);
    const counts = new Map<string, number>();
    const n = 8000;
    for (let i = 0; i < n; i++) {
      const pick = bal.pick(p.oneClient ? '10.1.1.1' : clientIp(i))!;
      counts.set(backendId(pick), (counts.get(backendId(pick)) ?? 0) + 1);
    }
    assert.equal(counts.size, 4);
    for (const [id, c] of counts) assert.ok(Math.abs(c / n - 0.25) <= p.tolerance, `${id} got ${c} of ${n}`);
  });

  test(`${p.name}: candidates are every backend once, the pick's choice first`, () => {
    for (const list of [[], [A], [A, B], [D, C, B, A]]) {
      const bal = p.make(list);
      for (let i = 0; i < 50; i++) {
        const c = bal.candidates(clientIp(i));
        assert.equal(c.length, list.length);
        assert.equal(new Set(ids(c)).size, list.length, `duplicates in ${ids(c)}`);
        assert.deepEqual(new Set(ids(c)), new Set(ids(list)));
      }
      if (list.length === 0) assert.equal(bal.pick('1.2.3.4'), undefined);
    }
  });

  test(`${p.name}: update replaces the set; removed backends are never chosen, added ones are`, () => {
    const bal = p.make([A, B, C]);
    bal.update([D, C, B]);
    assert.deepEqual(ids(bal.backends()), ids([B, C, D]), 'in a stable order');
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) seen.add(backendId(bal.pick(clientIp(i))!));
    assert.deepEqual([...seen].sort(), ids([B, C, D]));
    bal.update([]);
    assert.equal(bal.pick('10.1.1.1'), undefined);
    assert.deepEqual(bal.candidates('10.1.1.1'), []);
  });
}

test('random: candidates start with the same choice pick() would make for the same draw', () => {
  for (let seed = 0; seed < 20; seed++) {
    const r1 = new RandomBalancer([A, B, C, D], seeded(seed));
    const r2 = new RandomBalancer([A, B, C, D], seeded(seed));
    assert.equal(backendId(r1.candidates('')[0]!), backendId(r2.pick('')!));
  }
});

test('random and consistent hash drop duplicate addresses', () => {
  for (const bal of [new RandomBalancer([A, B, B]), new ConsistentHashBalancer([A, B, B])]) {
    assert.deepEqual(ids(bal.backends()), ids([A, B]));
    assert.equal(bal.candidates('10.1.1.1').length, 2);
  }
});

test('random: a RandomFn returning 1 does not index past the end', () => {
  const r = new RandomBalancer([A, B], () => 0.9999999999999999);
  assert.equal(backendId(r.pick('')!), backendId(B));
  assert.equal(r.candidates('').length, 2);
});

test('consistent hash: a client always gets the same backend, whatever the order backends were given in', () => {
  const x = new ConsistentHashBalancer([A, B, C, D]);
  const y = new ConsistentHashBalancer([D, B, A, C]);
  for (let i = 0; i < 200; i++) {
    const ip = clientIp(i * 7919);
    const first = backendId(x.pick(ip)!);
    assert.equal(backendId(x.pick(ip)!), first);
    assert.equal(backendId(y.pick(ip)!), first);
    assert.equal(backendId(x.candidates(ip)[0]!), first);
  }
});

test('consistent hash: adding a 5th backend moves about 1/5 of 10k clients, all of them to the new one', () => {
  const ring = new ConsistentHashBalancer([A, B, C, D]);
  const before = Array.from({ length: 10_000 }, (_, i) => backendId(ring.pick(clientIp(i))!));
  const E = b('10.0.0.5');
  ring.update([A, B, C, D, E]);
  let moved = 0;
  for (let i = 0; i < before.length; i++) {
    const now = backendId(ring.pick(clientIp(i))!);
    if (now === before[i]) continue;
    moved++;
    assert.equal(now, backendId(E), `client ${clientIp(i)} moved from ${before[i]} to ${now}, not to the new backend`);
  }
  const fraction = moved / before.length;
  assert.ok(Math.abs(fraction - 0.2) <= 0.05, `moved fraction ${fraction}`);
});

test("consistent hash: removing a backend moves only that backend's clients", () => {
  const ring = new ConsistentHashBalancer([A, B, C, D, b('10.0.0.5')]);
  const before = Array.from({ length: 10_000 }, (_, i) => backendId(ring.pick(clientIp(i))!));
  ring.update([A, B, D, b('10.0.0.5')]); // C removed
  let moved = 0;
  for (let i = 0; i < before.length; i++) {
    const now = backendId(ring.pick(clientIp(i))!);
    if (before[i] === backendId(C)) {
      moved++;
      assert.notEqual(now, backendId(C));
    } else {
      assert.equal(now, before[i], `client ${clientIp(i)} of a remaining backend moved`);
    }
  }
  assert.ok(Math.abs(moved / before.length - 0.2) <= 0.05, `C had ${moved} clients`);
});

test('consistent hash: failover candidates are also stable per client (next backends clockwise)', () => {
  const ring = new ConsistentHashBalancer([A, B, C, D]);
  for (let i = 0; i < 100; i++) {
    const ip = clientIp(i);
    const order = ids(ring.candidates(ip));
    assert.deepEqual(ids(ring.candidates(ip)), order);
    // Without the first choice, the client lands on its second candidate.
    const smaller = new ConsistentHashBalancer([A, B, C, D].filter((x) => backendId(x) !== order[0]));
    assert.equal(backendId(smaller.pick(ip)!), order[1]);
  }
});

const factoryCases: Array<[string, Parameters<typeof createBalancer>[0], string, string]> = [
  ['absent policy', {}, 'RoundRobinBalancer', 'round-robin'],
  ['ROUND_ROBIN', { policy: 'ROUND_ROBIN' }, 'RoundRobinBalancer', 'round-robin'],
  ['RANDOM', { policy: 'RANDOM' }, 'RandomBalancer', 'random'],
  ['CONSISTENT_HASH', { policy: 'CONSISTENT_HASH' }, 'ConsistentHashBalancer', 'hash'],
  ['affinity over RANDOM', { policy: 'RANDOM', sessionAffinitySeconds: 60 }, 'AffinityBalancer', 'affinity 60s'],
];
for (const [name, spec, cls, label] of factoryCases) {
  test(`createBalancer: ${name} → ${cls} (${label})`, () => {
    assert.equal(createBalancer(spec).constructor.name, cls);
    assert.equal(policyLabel(spec), label);
  });
}

test('ReconfigurableBalancer: a policy change takes effect at once with the current backends; the same policy is kept', () => {
  const bal = new ReconfigurableBalancer({ policy: 'ROUND_ROBIN' });
  bal.update([A, B, C]);
  assert.deepEqual(ids([bal.pick('x'), bal.pick('x'), bal.pick('x')]), ids([A, B, C]));
  assert.equal(bal.configure({ policy: 'ROUND_ROBIN' }), false);
  assert.equal(backendId(bal.pick('x')!), backendId(A), 'rotation kept');
  assert.equal(bal.configure({ policy: 'CONSISTENT_HASH' }), true);
  assert.deepEqual(ids(bal.backends()), ids([A, B, C]));
  const first = backendId(bal.pick('10.9.9.9')!);
  for (let i = 0; i < 10; i++) assert.equal(backendId(bal.pick('10.9.9.9')!), first);
  assert.equal(bal.configure({ policy: 'CONSISTENT_HASH', sessionAffinitySeconds: 30 }), true);
  assert.equal(bal.candidates('10.9.9.9').length, 3);
});
