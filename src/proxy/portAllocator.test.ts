import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortAllocator, parsePortRange } from './portAllocator.ts';

const parses: Array<[string, ReturnType<typeof parsePortRange> | RegExp]> = [
  ['', undefined],
  ['  ', undefined],
  ['40000-49999', { from: 40000, to: 49999 }],
  ['1024-1024', { from: 1024, to: 1024 }],
  ['60000-65535', { from: 60000, to: 65535 }],
  ['1023-2000', /1024 ≤ FROM ≤ TO ≤ 65535/],
  ['50000-40000', /1024 ≤ FROM ≤ TO ≤ 65535/],
  ['40000-65536', /1024 ≤ FROM ≤ TO ≤ 65535/],
  ['40000', /must be "FROM-TO"/],
  ['40000:49999', /must be "FROM-TO"/],
  ['a-b', /must be "FROM-TO"/],
];
for (const [text, want] of parses) {
  test(`parsePortRange(${JSON.stringify(text)})`, () => {
    const got = parsePortRange(text);
    if (want instanceof RegExp) {
      assert.ok(got !== undefined && 'error' in got, `expected an error, got ${JSON.stringify(got)}`);
      assert.match(got.error, want);
    } else assert.deepEqual(got, want);
  });
}

/** Steps on one allocator over 40000-40002, each with the port (or undefined) it should return. */
type Step = ['allocate', string, number | undefined] | ['release', string] | ['held', string];
const scenarios: Array<[string, Step[]]> = [
  ['hands out the range in order', [['allocate', 'a', 40000], ['allocate', 'b', 40001], ['allocate', 'c', 40002]]],
  ['an id keeps its port across calls', [['allocate', 'a', 40000], ['allocate', 'b', 40001], ['allocate', 'a', 40000], ['allocate', 'b', 40001]]],
  ['exhausted: nothing for a 4th id, and a release frees one', [
    ['allocate', 'a', 40000], ['allocate', 'b', 40001], ['allocate', 'c', 40002], ['allocate', 'd', undefined],
    ['release', 'b'], ['allocate', 'd', 40001], ['allocate', 'e', undefined],
  ]],
  ['a released port is reused only after the other free ones', [
    ['allocate', 'a', 40000], ['release', 'a'], ['allocate', 'b', 40001], ['allocate', 'c', 40002], ['allocate', 'd', 40000],
  ]],
  ['released ports come back in the order they were released', [
    ['allocate', 'a', 40000], ['allocate', 'b', 40001], ['allocate', 'c', 40002],
    ['release', 'c'], ['release', 'a'], ['allocate', 'x', 40002], ['allocate', 'y', 40000],
  ]],
  ['a port held elsewhere is skipped and tried again last', [
    ['allocate', 'a', 40000], ['held', 'a'], ['allocate', 'a', 40001], ['allocate', 'b', 40002], ['allocate', 'c', 40000],
  ]],
  ['releasing an unknown id changes nothing', [['release', 'zz'], ['allocate', 'a', 40000]]],
  ['a re-allocated id after release gets a new port', [['allocate', 'a', 40000], ['release', 'a'], ['allocate', 'a', 40001]]],
];
for (const [name, steps] of scenarios) {
  test(`PortAllocator: ${name}`, () => {
    const alloc = new PortAllocator({ from: 40000, to: 40002 });
    for (const [i, step] of steps.entries()) {
      if (step[0] === 'allocate') assert.equal(alloc.allocate(step[1]), step[2], `step ${i}: allocate ${step[1]}`);
      else if (step[0] === 'release') alloc.release(step[1]);
      else alloc.markHeldElsewhere(step[1]);
    }
  });
}

test('PortAllocator: counts and the ports held elsewhere', () => {
  const alloc = new PortAllocator({ from: 50000, to: 50009 });
  assert.equal(alloc.size, 10);
  assert.equal(alloc.allocate('a'), 50000);
  assert.equal(alloc.available, 9);
  alloc.markHeldElsewhere('a');
  assert.deepEqual(alloc.heldElsewhere, [50000]);
  assert.equal(alloc.portOf('a'), undefined);
  assert.equal(alloc.available, 10);
  // Handing it out again (once the rest is used) clears the mark; the bind decides again.
  for (let i = 0; i < 9; i++) alloc.allocate(`x${i}`);
  assert.equal(alloc.allocate('b'), 50000);
  assert.deepEqual(alloc.heldElsewhere, []);
  assert.equal(alloc.available, 0);
});

test('PortAllocator: 10,000 ids over a 10,000-port range, all distinct, in well under a second', () => {
  const alloc = new PortAllocator({ from: 40000, to: 49999 });
  const start = performance.now();
  const ports = new Set<number>();
  for (let i = 0; i < 10_000; i++) ports.add(alloc.allocate(`svc${i}`)!);
  assert.equal(ports.size, 10_000);
  assert.equal(alloc.allocate('one-more'), undefined);
  assert.ok(performance.now() - start < 1000);
});
