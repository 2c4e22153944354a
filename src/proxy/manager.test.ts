import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { Backend, Protocol } from '../model/types.ts';
import { ProxyManager } from './manager.ts';
import type { ProxyPortSpec } from './types.ts';
import { LOOPBACK, backend, exchange, namedServer, openClient, prefixEchoServer } from './testSupport.ts';
import { udpClient, udpNamedServer } from './udpTestSupport.ts';

const silent = pino({ level: 'silent' });

function spec(id: string, backends: Backend[], protocol: Protocol = 'TCP'): ProxyPortSpec {
  return { id: `${id}/${protocol}`, portName: id, protocol, backends };
}

test('prepare opens, updates and keeps listeners; retire closes the ones no longer wanted', async (t) => {
  const [a, b] = await Promise.all([namedServer('A'), namedServer('B')]);
  const mgr = new ProxyManager({ logger: silent, host: LOOPBACK });
  t.after(async () => {
    await mgr.close({ destroyConnections: true });
    await Promise.all([a.close(), b.close()]);
  });

  const web = spec('default/web:http', [backend(a.port)]);
  const sctp = spec('kube-system/x:y', [backend(a.port)], 'SCTP');
  const first = await mgr.prepare([web, sctp]);
  assert.equal(first.length, 1, 'SCTP is not served');
  assert.equal(first[0]?.id, 'default/web:http/TCP');
  const listenPort = first[0]!.listenPort;
  assert.ok(listenPort > 0);
  assert.equal((await exchange(listenPort)).data, 'A');

  // Same id, new backends: same listener, new target.
  const second = await mgr.prepare([spec('default/web:http', [backend(b.port)])]);
  assert.deepEqual(second, [{ id: 'default/web:http/TCP', listenPort }]);
  assert.equal((await exchange(listenPort)).data, 'B');

  const [stats] = mgr.stats();
  assert.ok(stats?.protocol === 'TCP');
  assert.equal(stats?.id, 'default/web:http/TCP');
  assert.equal(stats?.portName, 'default/web:http');
  assert.equal(stats?.listenPort, listenPort);
  assert.equal(stats?.counters.accepted, 2);
  assert.deepEqual(stats?.usableBackends.map((x) => x.port), [b.port]);

  // Another service appears, the first disappears: nothing closes before retire().
  const api = spec('default/api:', [backend(a.port)]);
  const third = await mgr.prepare([api]);
  assert.equal(third.length, 1);
  assert.notEqual(third[0]?.listenPort, listenPort);
  assert.equal((await exchange(listenPort)).data, 'B', 'still served until retired');
  assert.deepEqual(await mgr.retire(), ['default/web:http/TCP']);
  assert.equal((await exchange(listenPort)).error?.code, 'ECONNREFUSED');
  assert.equal((await exchange(third[0]!.listenPort)).data, 'A');
  assert.deepEqual(await mgr.retire(), [], 'nothing more to retire');
  assert.deepEqual(mgr.stats().map((s) => s.id), ['default/api:/TCP']);

  // A retired id coming back gets a fresh listener.
  const again = await mgr.prepare([api, web]);
  assert.equal(again.length, 2);
  assert.equal((await exchange(again[1]!.listenPort)).data, 'A');
});

test('a listener that fails to open is logged with its id and left out, without failing prepare', async (t) => {
  const lines: { level: number; proxyPort?: string; msg: string }[] = [];
  const logger = pino({ level: 'error' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  // 192.0.2.1 (TEST-NET-1) is not a local address: bind fails with EADDRNOTAVAIL, no packet is sent.
  const mgr = new ProxyManager({ logger, host: '192.0.2.1' });
  t.after(() => mgr.close());
  const out = await mgr.prepare([spec('default/a:', []), spec('default/b:', [])]);
  assert.deepEqual(out, []);
  assert.deepEqual(lines.map((l) => l.proxyPort).sort(), ['default/a:/TCP', 'default/b:/TCP']);
  assert.deepEqual(await mgr.retire(), []);
});

test('close() closes every listener', async () => {
  const mgr = new ProxyManager({ logger: silent, host: LOOPBACK });
  const out = await mgr.prepare([spec('default/a:', []), spec('default/b:', [])]);
  assert.equal(out.length, 2);
  await mgr.close();
  for (const p of out) assert.equal((await exchange(p.listenPort)).error?.code, 'ECONNREFUSED');
  assert.deepEqual(mgr.stats(), []);
});

test('UDP specs get a UDP listener with the udp options; stats() reports its flow counters', async (t) => {
  const [a, b] = await Promise.all([udpNamedServer('A'), udpNamedServer('B')]);
  const mgr = new ProxyManager({ logger: silent, host: LOOPBACK, udp: { idleTimeoutMs: 60_000, maxFlowsPerPort: 1 } });
  const [c1, c2] = await Promise.all([udpClient(), udpClient()]);
  t.after(async () => {
    await mgr.close();
    await Promise.all([a.close(), b.close(), c1.close(), c2.close()]);
  });
  const echo = spec('default/echo-udp:p', [backend(a.port)], 'UDP');
  const [status] = await mgr.prepare([echo, spec('default/web:http', [])]);
  assert.equal(status?.id, 'default/echo-udp:p/UDP');
  assert.equal(await c1.ask(status!.listenPort, 'x'), 'A:x');
  assert.equal(await c2.ask(status!.listenPort, 'x'), 'A:x');

  // Same id, new backends: the listener stays, its flows move to the new endpoint.
  assert.deepEqual(await mgr.prepare([spec('default/echo-udp:p', [backend(b.port)], 'UDP')]), [status]);
  assert.equal(await c2.ask(status!.listenPort, 'y'), 'B:y');
  const udp = mgr.stats().find((s) => s.protocol === 'UDP');
  assert.ok(udp?.protocol === 'UDP');
  assert.equal(udp.portName, 'default/echo-udp:p');
  assert.equal(udp.listenPort, status!.listenPort);
  assert.equal(udp.counters.evictions, 1, 'maxFlowsPerPort 1: the second client evicted the first');
  assert.equal(udp.counters.flowsRerouted, 1);
  assert.equal(udp.counters.datagramsIn, 3);

  assert.deepEqual((await mgr.retire()).sort(), ['default/web:http/TCP']);
  await mgr.prepare([]);
  assert.deepEqual(await mgr.retire(), ['default/echo-udp:p/UDP']);
  assert.equal(await c1.ask(status!.listenPort, 'z', 150), undefined, 'closed: nothing answers');
});

for (const workers of [1, 2]) {
  test(`close with a drain period (${workers} thread(s)): open connections may finish, the rest is reset at the deadline`, async (t) => {
    const server = await prefixEchoServer('A');
    t.after(() => server.close());
    const manager = new ProxyManager({ logger: silent, host: LOOPBACK, workers });
    const [status] = await manager.prepare([spec('default/echo:p/TCP', [backend(server.port)])]);
    const finishing = await openClient(status!.listenPort);
    const lingering = await openClient(status!.listenPort);
    assert.equal(await finishing.ask('hi'), 'A:hi');
    assert.equal(await lingering.ask('hi'), 'A:hi');

    const started = Date.now();
    const closing = manager.close({ drainMs: 600 });
    // The listener is gone at once, but the open connections still work while draining.
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(await finishing.ask('still there'), 'A:still there');
    finishing.socket.end();
    const lingeringClosed = new Promise<void>((resolve) => lingering.socket.once('close', () => resolve()));
    await closing;
    await lingeringClosed;
    const took = Date.now() - started;
    assert.ok(took >= 550 && took < 2000, `drain took ${took} ms`);
  });
}

test('close with a drain period returns at once when nothing is open', async () => {
  const manager = new ProxyManager({ logger: silent, host: LOOPBACK });
  await manager.prepare([spec('default/web:http/TCP', [])]);
  const started = Date.now();
  await manager.close({ drainMs: 5000 });
  assert.ok(Date.now() - started < 500);
});
