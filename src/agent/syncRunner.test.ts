import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SyncRunner } from './syncRunner.ts';

function recorder(opts: { minIntervalMs: number; periodMs: number; fail?: () => boolean; durationMs?: number }) {
  const starts: number[] = [];
  const errors: unknown[] = [];
  const t0 = performance.now();
  const runner = new SyncRunner({
    minIntervalMs: opts.minIntervalMs,
    periodMs: opts.periodMs,
    onError: (e) => errors.push(e),
    sync: async () => {
      starts.push(performance.now() - t0);
      if (opts.durationMs) await sleep(opts.durationMs);
      if (opts.fail?.()) throw new Error('boom');
    },
  });
  return { runner, starts, errors };
}

test('first sync runs at once; a burst of requests coalesces into one run after minInterval', async () => {
  const { runner, starts } = recorder({ minIntervalMs: 100, periodMs: 10_000 });
  runner.start();
  await sleep(20);
  for (let i = 0; i < 10; i++) runner.request();
  await sleep(200);
  await runner.stop();
  assert.equal(starts.length, 2);
  assert.ok(starts[0]! < 20);
  assert.ok(starts[1]! - starts[0]! >= 95, `second sync too early: ${starts}`);
});

test('periodic resync without requests', async () => {
  const { runner, starts } = recorder({ minIntervalMs: 10, periodMs: 50 });
  runner.start();
  await sleep(180);
  await runner.stop();
  assert.ok(starts.length >= 3 && starts.length <= 5, `got ${starts.length} syncs`);
});

test('syncs never overlap; a request during a sync runs once more afterwards', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const runner = new SyncRunner({
    minIntervalMs: 10,
    periodMs: 10_000,
    onError: () => {},
    sync: async () => {
      runs++;
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(40);
      active--;
    },
  });
  runner.start();
  await sleep(10);
  runner.request();
  runner.request();
  await sleep(150);
  await runner.stop();
  assert.equal(maxActive, 1);
  assert.equal(runs, 2);
});

test('a failed sync is reported and retried after minInterval', async () => {
  let n = 0;
  const { runner, starts, errors } = recorder({ minIntervalMs: 30, periodMs: 10_000, fail: () => ++n === 1 });
  runner.start();
  await sleep(100);
  await runner.stop();
  assert.equal(errors.length, 1);
  assert.equal(starts.length, 2);
});

test('stop waits for the sync in progress and cancels the next', async () => {
  const { runner, starts } = recorder({ minIntervalMs: 10, periodMs: 20, durationMs: 30 });
  runner.start();
  await sleep(5);
  await runner.stop();
  const count = starts.length;
  await sleep(60);
  assert.equal(starts.length, count);
});

test('repeated failures back off: minInterval, then doubling, capped at period', async () => {
  const { runner, starts, errors } = recorder({ minIntervalMs: 20, periodMs: 70, fail: () => true });
  runner.start();
  await sleep(330);
  await runner.stop();
  // Runs at ~0, 20, 60 (+40), 130 (+70 capped), 200, 270.
  const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
  assert.ok(gaps[0]! >= 18 && gaps[0]! < 45, `gaps ${gaps}`);
  assert.ok(gaps[1]! >= 38 && gaps[1]! < 65, `gaps ${gaps}`);
  assert.ok(gaps.slice(2).every((g) => g >= 68), `gaps ${gaps}`);
  assert.equal(errors.length, starts.length);
});
