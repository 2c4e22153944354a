import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendId, type Backend } from '../model/types.ts';
import { AffinityBalancer } from './affinity.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

function b(ip: string, port = 80): Backend {
  return { ip, port, ready: true, serving: true, terminating: false };
}
const A = b('10.0.0.1');
const B = b('10.0.0.2');
const C = b('10.0.0.3');
const id = (x: Backend | undefined) => (x ? backendId(x) : undefined);

/** A fake monotonic clock in ms. */
function fakeClock() {
  let t = 1_000;
  return { now: () => t, advance: (s: number) => (t += s * 1000) };
}

function sticky(timeoutSeconds = 100, maxEntries?: number) {
  const clock = fakeClock();
  const bal = new AffinityBalancer(new RoundRobinBalancer([A, B, C]), { timeoutSeconds, now: clock.now, ...(maxEntries ? { maxEntries } : {}) });
  return { bal, clock };
}

test('a client sticks to its first backend; other clients are spread by the wrapped policy', () => {
  const { bal } = sticky();
  const first = id(bal.pick('1.1.1.1'));
  for (let i = 0; i < 10; i++) assert.equal(id(bal.pick('1.1.1.1')), first);
  for (let i = 0; i < 10; i++) assert.equal(id(bal.candidates('1.1.1.1')[0]), first);
  assert.equal(id(bal.pick('2.2.2.2')), id(B), 'round robin continues for a new client');
  assert.equal(id(bal.pick('3.3.3.3')), id(C));
});

test('candidates: the sticky backend first, then the others once each', () => {
  const { bal } = sticky();
  bal.pick('1.1.1.1');
  for (let i = 0; i < 5; i++) {
    const c = bal.candidates('1.1.1.1').map(id);
    assert.equal(c[0], id(A));
    assert.deepEqual([...c].sort(), [id(A), id(B), id(C)]);
  }
});

const timing: Array<{ name: string; steps: number[]; sticks: boolean }> = [
  { name: 'just inside the timeout', steps: [99], sticks: true },
  { name: 'at the timeout', steps: [100], sticks: false },
  { name: 'each use refreshes the timeout', steps: [60, 60, 60, 60], sticks: true },
  { name: 'a gap longer than the timeout after the last use', steps: [60, 60, 101], sticks: false },
];
for (const c of timing) {
  test(`expiry: ${c.name} → ${c.sticks ? 'sticks' : 'chooses anew'}`, () => {
    const { bal, clock } = sticky(100);
    const first = id(bal.pick('1.1.1.1'));
    bal.pick('9.9.9.9'); // moves the rotation on, so a new choice for 1.1.1.1 differs from the first
    for (let i = 0; i < c.steps.length - 1; i++) {
      clock.advance(c.steps[i]!);
      assert.equal(id(bal.pick('1.1.1.1')), first);
    }
    clock.advance(c.steps[c.steps.length - 1]!);
    const again = id(bal.pick('1.1.1.1'));
    if (c.sticks) assert.equal(again, first);
    else assert.notEqual(again, first);
  });
}

test('a sticky backend that disappears releases its client at once; the new choice then sticks', () => {
  const { bal } = sticky();
  assert.equal(id(bal.pick('1.1.1.1')), id(A));
  bal.update([B, C]);
  const next = id(bal.pick('1.1.1.1'));
  assert.notEqual(next, id(A));
  bal.update([A, B, C]); // A is back, but the client now sticks to its new backend
  for (let i = 0; i < 5; i++) assert.equal(id(bal.pick('1.1.1.1')), next);
});

test('a failed dial to the sticky backend releases the client; the backend reached becomes sticky', () => {
  const { bal } = sticky();
  const [first, second] = bal.candidates('1.1.1.1');
  bal.dialFailed('1.1.1.1', first!);
  bal.dialSucceeded('1.1.1.1', second!);
  for (let i = 0; i < 5; i++) assert.equal(id(bal.candidates('1.1.1.1')[0]), id(second));
});

test('no backends: nothing is picked and nothing remembered', () => {
  const clock = fakeClock();
  const bal = new AffinityBalancer(new RoundRobinBalancer([]), { timeoutSeconds: 10, now: clock.now });
  assert.equal(bal.pick('1.1.1.1'), undefined);
  assert.deepEqual(bal.candidates('1.1.1.1'), []);
  assert.equal(bal.size(), 0);
});

test('memory is bounded: the table never exceeds maxEntries; expired clients are swept on access and on update', () => {
  const { bal, clock } = sticky(100, 1000);
  for (let i = 0; i < 5000; i++) {
    bal.pick(`10.1.${i >> 8}.${i & 255}`);
    assert.ok(bal.size() <= 1000, `size ${bal.size()} after ${i + 1} clients`);
  }
  const newest = '10.1.19.135'; // client 4999: the most recent one survives eviction
  const stuck = bal.pick(newest);
  clock.advance(50);
  assert.equal(bal.pick(newest), stuck, 'still sticky after eviction rounds');
  clock.advance(60); // every other client expired; the newest was used 60 s ago
  bal.update([A, B, C]); // the sync's update runs the sweep
  assert.equal(bal.size(), 1, 'the periodic update swept the expired ones');
  clock.advance(100);
  bal.update([A, B, C]);
  assert.equal(bal.size(), 0);
});

test('an expired client chooses anew on its next connection', () => {
  const { bal, clock } = sticky(5);
  assert.equal(id(bal.pick('1.1.1.1')), id(A));
  clock.advance(5); // expired, and the sweep interval (min(timeout, 10 s)) has passed too
  bal.pick('2.2.2.2'); // B
  assert.equal(id(bal.pick('1.1.1.1')), id(C), 'chosen anew by round robin');
});
