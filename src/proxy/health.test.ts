import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EjectionTracker } from './health.ts';
import { ConnectionBudget, IntervalLog } from './limits.ts';

const A = { ip: '10.0.0.1', port: 80 };
const B = { ip: '10.0.0.2', port: 80 };
const C = { ip: '10.0.0.3', port: 80 };

function tracker(baseMs = 100, maxMs = 350) {
  const clock = { t: 0 };
  return { clock, health: new EjectionTracker({ baseMs, maxMs, now: () => clock.t }) };
}

test('a failed endpoint is ejected for the base time, then returns', () => {
  const { clock, health } = tracker();
  assert.equal(health.failed(A), 100);
  assert.equal(health.isEjected(A), true);
  assert.equal(health.isEjected(B), false);
  clock.t = 99;
  assert.equal(health.isEjected(A), true);
  clock.t = 100;
  assert.equal(health.isEjected(A), false);
});

test('consecutive ejections double up to the cap; a success starts over', () => {
  const { clock, health } = tracker();
  const lengths: number[] = [];
  for (let i = 0; i < 4; i++) {
    const ms = health.failed(A);
    lengths.push(ms);
    clock.t += ms; // fails again right after each cool-down
  }
  assert.deepEqual(lengths, [100, 200, 350, 350]);
  health.succeeded(A);
  assert.equal(health.isEjected(A), false);
  assert.equal(health.failed(A), 100);
});

test('failures while already ejected do not escalate (a burst counts once)', () => {
  const { clock, health } = tracker();
  assert.equal(health.failed(A), 100);
  assert.equal(health.failed(A), 0);
  clock.t = 50;
  assert.equal(health.failed(A), 0);
  clock.t = 100;
  assert.equal(health.failed(A), 200);
});

test('order keeps the balancer order, healthy first, ejected last (never dropped)', () => {
  const { health } = tracker();
  const cases: { ejected: (typeof A)[]; want: (typeof A)[] }[] = [
    { ejected: [], want: [A, B, C] },
    { ejected: [A], want: [B, C, A] },
    { ejected: [B], want: [A, C, B] },
    { ejected: [C, A], want: [B, A, C] },
    { ejected: [A, B, C], want: [A, B, C] },
  ];
  for (const { ejected, want } of cases) {
    const { health: h } = tracker();
    for (const e of ejected) h.failed(e);
    assert.deepEqual(h.order([A, B, C]), want, `ejected ${ejected.map((e) => e.ip)}`);
    assert.equal(h.ejectedCount(), ejected.length);
  }
  assert.deepEqual(health.order([]), []);
});

test('retain forgets removed endpoints', () => {
  const { health } = tracker();
  health.failed(A);
  health.failed(B);
  health.retain([B, C]);
  assert.equal(health.isEjected(A), false);
  assert.equal(health.isEjected(B), true);
  assert.equal(health.ejectedCount(), 1);
});

test('ejectionTime 0 turns ejection off', () => {
  const health = new EjectionTracker({ baseMs: 0, maxMs: 0 });
  assert.equal(health.failed(A), 0);
  assert.equal(health.isEjected(A), false);
});

test('ConnectionBudget: acquire up to max, release frees a slot', () => {
  const budget = new ConnectionBudget(2);
  assert.equal(budget.tryAcquire(), true);
  assert.equal(budget.tryAcquire(), true);
  assert.equal(budget.tryAcquire(), false);
  assert.equal(budget.active, 2);
  budget.release();
  assert.equal(budget.tryAcquire(), true);
  budget.release();
  budget.release();
  budget.release();
  assert.equal(budget.active, 0, 'never below 0');
});

test('IntervalLog: one line per interval, carrying the count since the last', () => {
  const clock = { t: 0 };
  const log = new IntervalLog(1000, () => clock.t);
  const lines: (number | undefined)[] = [];
  for (const t of [0, 10, 20, 999, 1000, 1500, 2100]) {
    clock.t = t;
    lines.push(log.record());
  }
  assert.deepEqual(lines, [1, undefined, undefined, undefined, 4, undefined, 2]);
});
