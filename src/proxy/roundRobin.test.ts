import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../model/types.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

function b(ip: string, port = 80): Backend {
  return { ip, port, ready: true, serving: true, terminating: false };
}
const A = b('10.0.0.1');
const B = b('10.0.0.2');
const C = b('10.0.0.3');
const ips = (xs: readonly (Backend | undefined)[]) => xs.map((x) => x?.ip);

test('round robin alternates over the backends', () => {
  const rr = new RoundRobinBalancer([A, B, C]);
  assert.deepEqual(ips([rr.pick(''), rr.pick(''), rr.pick(''), rr.pick('')]), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1']);
});

test('no backends: pick is undefined, candidates empty', () => {
  const rr = new RoundRobinBalancer();
  assert.equal(rr.pick('1.2.3.4'), undefined);
  assert.deepEqual(rr.candidates('1.2.3.4'), []);
});

test('candidates: the pick first, then every other backend once, and one step of rotation', () => {
  const rr = new RoundRobinBalancer([A, B, C]);
  assert.deepEqual(ips(rr.candidates('')), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  assert.deepEqual(ips(rr.candidates('')), ['10.0.0.2', '10.0.0.3', '10.0.0.1']);
  assert.deepEqual(ips([rr.pick('')]), ['10.0.0.3']);
});

test('the order does not depend on the order given', () => {
  const rr = new RoundRobinBalancer([C, A, B]);
  assert.deepEqual(ips([rr.pick(''), rr.pick(''), rr.pick('')]), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
});

const updateCases: { name: string; before: Backend[]; picks: number; after: Backend[]; want: string[] }[] = [
  { name: 'same list: keeps rotating', before: [A, B, C], picks: 1, after: [A, B, C], want: ['10.0.0.2', '10.0.0.3'] },
  { name: 'reordered list: keeps rotating', before: [A, B, C], picks: 2, after: [C, B, A], want: ['10.0.0.3', '10.0.0.1'] },
  { name: 'a backend added: continues after the last pick', before: [A, C], picks: 1, after: [A, B, C], want: ['10.0.0.2', '10.0.0.3'] },
  { name: 'the last picked removed: continues with its successor', before: [A, B, C], picks: 2, after: [A, C], want: ['10.0.0.3', '10.0.0.1'] },
  { name: 'shrunk below the cursor: wraps', before: [A, B, C], picks: 2, after: [A], want: ['10.0.0.1', '10.0.0.1'] },
];

for (const c of updateCases) {
  test(`update: ${c.name}`, () => {
    const rr = new RoundRobinBalancer(c.before);
    for (let i = 0; i < c.picks; i++) rr.pick('');
    rr.update(c.after);
    assert.deepEqual(ips([rr.pick(''), rr.pick('')]), c.want);
  });
}

test('update to empty and back', () => {
  const rr = new RoundRobinBalancer([A, B]);
  rr.pick('');
  rr.update([]);
  assert.equal(rr.pick(''), undefined);
  rr.update([A, B]);
  assert.ok(rr.pick('') !== undefined);
});
