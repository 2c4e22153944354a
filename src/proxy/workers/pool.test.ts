// ProxyManager with TCP worker threads (workers > 1): real threads, real SO_REUSEPORT listeners
// on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { pino } from 'pino';
import type { Backend } from '../../model/types.ts';
import { ProxyManager } from '../manager.ts';
import type { ProxyPortSpec } from '../types.ts';
import { LOOPBACK, backend, exchange, namedServer, servers, startProxy, startServer, waitFor, type TestServer } from '../testSupport.ts';
import { TcpWorkerPool } from './pool.ts';

const silent = pino({ level: 'silent' });

function spec(backends: Backend[], extra: Partial<ProxyPortSpec> = {}): ProxyPortSpec {
  return { id: 'default/web:http/TCP', portName: 'default/web:http', protocol: 'TCP', backends, ...extra };
}

async function manager(t: import('node:test').TestContext, opts: Partial<ConstructorParameters<typeof ProxyManager>[0]> = {}): Promise<ProxyManager> {
  const mgr = new ProxyManager({ logger: silent, host: LOOPBACK, workers: 2, ...opts });
  t.after(() => mgr.close({ destroyConnections: true }));
  return mgr;
}

const accepted = (mgr: ProxyManager): number => {
  const s = mgr.stats()[0];
  return s?.protocol === 'TCP' ? s.counters.accepted : -1;
};

test('connections spread over the main thread and the worker; stats sum both after refreshStats()', async (t) => {
  const a = await namedServer('A');
  t.after(() => a.close());
  const mgr = await manager(t);
  const [status] = await mgr.prepare([spec([backend(a.port)])]);
  const n = 40;
  for (let i = 0; i < n; i++) assert.equal((await exchange(status!.listenPort)).data, 'A');
  const mainOnly = accepted(mgr);
  assert.ok(mainOnly > 0 && mainOnly < n, `main thread took ${mainOnly} of ${n}: the worker must take some`);
  await mgr.refreshStats();
  assert.equal(accepted(mgr), n);
});

test('sessionAffinity ports stay on the main thread; adding affinity later moves the port there', async (t) => {
  const a = await namedServer('A');
  t.after(() => a.close());
  const mgr = await manager(t);
  const [status] = await mgr.prepare([spec([backend(a.port)], { sessionAffinitySeconds: 60 })]);
  for (let i = 0; i < 20; i++) assert.equal((await exchange(status!.listenPort)).data, 'A');
  assert.equal(accepted(mgr), 20, 'all on the main thread (its own counters, before any refresh)');
  await mgr.refreshStats();
  assert.equal(accepted(mgr), 20);

  // Without affinity the worker joins; with it again, the worker leaves.
  await mgr.prepare([spec([backend(a.port)])]);
  for (let i = 0; i < 20; i++) assert.equal((await exchange(status!.listenPort)).data, 'A');
  await mgr.refreshStats();
  assert.equal(accepted(mgr), 40);
  await mgr.prepare([spec([backend(a.port)], { sessionAffinitySeconds: 60 })]);
  await mgr.refreshStats();
  const before = accepted(mgr);
  for (let i = 0; i < 20; i++) assert.equal((await exchange(status!.listenPort)).data, 'A');
  // The workers' cached counters did not move, so the main thread took all 20.
  assert.equal(accepted(mgr), before + 20);
  await mgr.refreshStats();
  assert.equal(accepted(mgr), before + 20);
});

test('the per-port limit is one limit over all threads', async (t) => {
  const held = await startServer(() => {}); // accepts and holds
  t.after(() => held.close());
  const mgr = await manager(t, { tcp: { maxConnections: 3 } });
  const [status] = await mgr.prepare([spec([backend(held.port)])]);
  const clients: net.Socket[] = [];
  t.after(() => clients.forEach((c) => c.destroy()));
  for (let i = 0; i < 10; i++) {
    const c = net.connect({ host: LOOPBACK, port: status!.listenPort });
    c.on('error', () => {});
    clients.push(c);
  }
  await waitFor(() => clients.filter((c) => c.destroyed).length === 7, 3000);
  await waitFor(() => held.sockets.size === 3, 3000);
  await mgr.refreshStats();
  const s = mgr.stats()[0];
  assert.ok(s?.protocol === 'TCP');
  assert.equal(s.counters.refused, 7);
  assert.equal(s.counters.active, 3);
});

test('the total limit is shared by the threads too', async (t) => {
  const held = await startServer(() => {});
  t.after(() => held.close());
  const mgr = await manager(t, { maxConnections: 2 });
  const [status] = await mgr.prepare([spec([backend(held.port)])]);
  const clients: net.Socket[] = [];
  t.after(() => clients.forEach((c) => c.destroy()));
  for (let i = 0; i < 8; i++) {
    const c = net.connect({ host: LOOPBACK, port: status!.listenPort });
    c.on('error', () => {});
    clients.push(c);
  }
  await waitFor(() => clients.filter((c) => c.destroyed).length === 6, 3000);
  await waitFor(() => held.sockets.size === 2, 3000);
});

test('retire closes the port in every thread; backends updates reach the workers', async (t) => {
  const [a, b] = await Promise.all([namedServer('A'), namedServer('B')]);
  t.after(() => Promise.all([a.close(), b.close()]));
  const mgr = await manager(t);
  const [status] = await mgr.prepare([spec([backend(a.port)])]);
  await mgr.prepare([spec([backend(b.port)])]);
  for (let i = 0; i < 20; i++) assert.equal((await exchange(status!.listenPort)).data, 'B');
  await mgr.prepare([]);
  assert.deepEqual(await mgr.retire(), ['default/web:http/TCP']);
  for (let i = 0; i < 20; i++) assert.equal((await exchange(status!.listenPort)).error?.code, 'ECONNREFUSED');
});

test('round robin is one rotation over all threads', async (t) => {
  const [a, b, c] = await Promise.all([namedServer('A'), namedServer('B'), namedServer('C')]);
  t.after(() => Promise.all([a.close(), b.close(), c.close()]));
  const mgr = await manager(t);
  const [status] = await mgr.prepare([spec([backend(a.port), backend(b.port), backend(c.port)])]);
  const seen: string[] = [];
  for (let i = 0; i < 30; i++) seen.push((await exchange(status!.listenPort)).data);
  const order = [...new Set(seen.slice(0, 3))];
  assert.equal(order.length, 3, `first three differ: ${seen.join('')}`);
  for (let i = 0; i < 30; i++) assert.equal(seen[i], order[i % 3], `strict rotation: ${seen.join('')}`);
  assert.ok(accepted(mgr) < 30, 'the worker served some of them');
});

// The pool on its own: a main-thread listener (SO_REUSEPORT) and one worker thread on its port.
async function poolWithPort(t: import('node:test').TestContext, backendPort: number, backoff = { initialMs: 50, maxMs: 10_000 }) {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  let restarted = 0;
  const pool = new TcpWorkerPool({ threads: 1, logger, host: LOOPBACK, tuning: {}, restartBackoff: backoff, onRestart: () => restarted++ });
  t.after(() => pool.stop());
  const main = await startProxy(t, { reusePort: true, backends: [backend(backendPort)] });
  const s = spec([backend(backendPort)]);
  await pool.open(s, main.port);
  return { pool, main, logs, restarts: () => restarted };
}

/** Retries until the port answers (a restarted worker listens shortly after it starts). */
async function until(port: number, want: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await exchange(port)).data !== want) {
    if (Date.now() > deadline) assert.fail(`port ${port} did not answer ${want} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const workerAccepted = (pool: TcpWorkerPool): number => pool.countersByWorker('default/web:http/TCP')[0]?.accepted ?? 0;

test('a worker that dies is restarted and listens again on the port, with the spec as updated meanwhile', async (t) => {
  const [a, b] = (await servers(t, namedServer('A'), namedServer('B'))) as [TestServer, TestServer];
  const { pool, main, logs, restarts } = await poolWithPort(t, a.port);
  const port = main.port;
  for (let i = 0; i < 40; i++) assert.equal((await exchange(main.port)).data, 'A');
  await pool.refresh();
  const before = workerAccepted(pool);
  assert.ok(before > 0, 'the first worker took some connections');

  pool.crashForTest(1, 'boom');
  // While it is dead, the port moves to B: the replacement must open it with B.
  await waitFor(() => logs.some((l) => l['msg'] === 'proxy worker thread died; the other threads serve its ports until it is restarted'), 3000);
  pool.update(spec([backend(b.port)]));
  main.update([backend(b.port)]);
  await waitFor(() => pool.restarts === 1, 3000);
  assert.equal(restarts(), 1);

  const died = logs.filter((l) => l['level'] === 40);
  assert.equal(died.length, 1, 'one warning per restart');
  assert.equal(died[0]!['worker'], 1);
  assert.equal(died[0]!['restartInMs'], 50);
  assert.match(String((died[0]!['err'] as { message?: string } | undefined)?.message), /boom/);

  // Only the new worker listens once the main thread's listener is gone: every answer is its.
  await main.close();
  await until(port, 'B');
  for (let i = 0; i < 20; i++) assert.equal((await exchange(port)).data, 'B');
  await pool.refresh();
  assert.ok(workerAccepted(pool) >= 20, `the new worker counted ${workerAccepted(pool)}`);
  assert.ok(pool.counters('default/web:http/TCP')!.accepted >= before + 20, "the dead worker's counts stay in the totals");
});

test('a worker dying in a loop is restarted with a doubling delay', async (t) => {
  const [a] = (await servers(t, namedServer('A'))) as [TestServer];
  const { pool, logs } = await poolWithPort(t, a.port, { initialMs: 40, maxMs: 10_000 });
  for (let n = 1; n <= 3; n++) {
    pool.crashForTest(1);
    await waitFor(() => pool.restarts === n, 5000);
  }
  assert.deepEqual(logs.filter((l) => l['level'] === 40).map((l) => l['restartInMs']), [40, 80, 160]);
});

test('stop() ends every thread and no worker is restarted afterwards, not even one that just died', async (t) => {
  const [a] = (await servers(t, namedServer('A'))) as [TestServer];
  const { pool, main, logs, restarts } = await poolWithPort(t, a.port);
  const port = main.port;
  pool.crashForTest(1);
  await waitFor(() => logs.some((l) => l['level'] === 40), 3000); // dead, its restart scheduled
  await pool.stop();
  await main.close();
  await new Promise((r) => setTimeout(r, 300)); // well past the 50 ms restart delay
  assert.equal(pool.restarts, 0);
  assert.equal(restarts(), 0);
  assert.equal((await exchange(port)).error?.code, 'ECONNREFUSED', 'nothing listens any more');
});
