import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../model/types.ts';
import { usableBackends } from './backends.ts';

function b(ip: string, port: number, ready: boolean, serving: boolean, terminating = false): Backend {
  return { ip, port, ready, serving, terminating };
}

const ready1 = b('10.0.0.1', 80, true, true);
const ready2 = b('10.0.0.2', 80, true, true);
const terminatingServing = b('10.0.0.3', 80, false, true, true);
const terminatingDead = b('10.0.0.4', 80, false, false, true);
const notReady = b('10.0.0.5', 80, false, false);

const cases: { name: string; input: Backend[]; want: string[] }[] = [
  { name: 'empty', input: [], want: [] },
  { name: 'ready ones only when some are ready', input: [ready1, terminatingServing, ready2, notReady], want: ['10.0.0.1', '10.0.0.2'] },
  { name: 'serving terminating ones when none is ready', input: [terminatingServing, terminatingDead, notReady], want: ['10.0.0.3'] },
  { name: 'never non-serving', input: [terminatingDead, notReady], want: [] },
  { name: 'ready but not serving is inconsistent and not used', input: [b('10.0.0.6', 80, true, false)], want: [] },
  { name: 'deduplicated by ip:port', input: [ready1, { ...ready1, nodeName: 'n2' }, ready2], want: ['10.0.0.1', '10.0.0.2'] },
  { name: 'same ip, different ports are distinct', input: [ready1, { ...ready1, port: 81 }], want: ['10.0.0.1', '10.0.0.1'] },
  { name: 'a duplicate that is ready wins over a non-ready copy', input: [terminatingServing, { ...terminatingServing, ready: true, terminating: false }], want: ['10.0.0.3'] },
];

for (const c of cases) {
  test(`usableBackends: ${c.name}`, () => {
    assert.deepEqual(usableBackends(c.input).map((x) => x.ip), c.want);
  });
}

test('usableBackends keeps the first copy of a duplicate', () => {
  const out = usableBackends([ready1, { ...ready1, nodeName: 'n2' }]);
  assert.equal(out.length, 1);
  assert.equal(out[0]?.nodeName, undefined);
});
