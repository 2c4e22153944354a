import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdHeapGrowth } from './heap.ts';

test('favours size until released, and releases once', () => {
  const flags: string[] = [];
  const release = holdHeapGrowth((f) => flags.push(f));
  assert.deepEqual(flags, ['--semi-space-growth-factor=1', '--optimize-for-size']);
  release();
  release();
  assert.deepEqual(flags.slice(2), ['--semi-space-growth-factor=2', '--no-optimize-for-size']);
});
