// ProxyManager with TCP worker threads (workers > 1): real threads, real SO_REUSEPORT listeners
// on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { pino } from 'pino';
import type { Backend } from '../../model/types.ts';
import { ProxyManager } from '../manager.ts';
import type { ProxyPortSpec } from '../types.ts';
import { LOOPBACK, backend, exchange, namedServer, startServer, waitFor } from '../testSupport.ts';

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
