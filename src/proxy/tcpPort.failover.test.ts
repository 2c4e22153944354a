// Failover bounds, passive health, connection limits, idle timeout and the removed-endpoint
// grace period of TcpProxyPort, over loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { Backend } from '../model/types.ts';
import { backendId } from '../model/types.ts';
import { defaultConnect } from './tcpPort.ts';
import type { ConnectFn } from './tcpPort.ts';
import { ConnectionBudget } from './limits.ts';
import { ProxyManager } from './manager.ts';
import { LOOPBACK, backend, closedPort, exchange, namedServer, openClient, prefixEchoServer, servers, startProxy, startServer, waitFor } from './testSupport.ts';
import type { TestServer } from './testSupport.ts';

const silent = pino({ level: 'silent' });


/** Dials for real and records every attempt's backend id. */
function recordingConnect(inner: ConnectFn = defaultConnect): { connect: ConnectFn; dials: string[]; count(b: Backend): number } {
  const dials: string[] = [];
  return {
    dials,
    connect: (b) => {
      dials.push(backendId(b));
      return inner(b);
    },
    count: (b) => dials.filter((d) => d === backendId(b)).length,
  };
}

function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

test('dial attempts are bounded by maxDialAttempts, with the backoff between them', async (t) => {
  const deadPorts = await Promise.all([closedPort(), closedPort(), closedPort(), closedPort(), closedPort()]);
  const cases = [
    { name: 'one endpoint is retried up to the bound', backends: [deadPorts[0]!], attempts: 3, backoff: 60 },
    { name: 'five endpoints, two attempts', backends: deadPorts, attempts: 2, backoff: 60 },
    { name: 'no backoff', backends: deadPorts.slice(0, 2), attempts: 4, backoff: 0 },
  ];
  for (const c of cases) {
    const rec = recordingConnect();
    const proxy = await startProxy(t, {
      backends: c.backends.map((p) => backend(p)),
      connect: rec.connect,
      maxDialAttempts: c.attempts,
      dialBackoffMs: c.backoff,
    });
    const r = await exchange(proxy.port, 'hi');
    assert.equal(r.error?.code, 'ECONNRESET', c.name);
    assert.equal(rec.dials.length, c.attempts, `${c.name}: ${rec.dials}`);
    const minMs = (c.attempts - 1) * c.backoff;
    assert.ok(r.ms >= minMs - 5 && r.ms < minMs + 300, `${c.name}: reset after ${r.ms} ms, backoffs total ${minMs}`);
    // Cycling through the candidates: consecutive attempts go to different endpoints when there are several.
    if (c.backends.length > 1) for (let i = 1; i < rec.dials.length; i++) assert.notEqual(rec.dials[i], rec.dials[i - 1]);
    assert.equal(proxy.counters().failed, 1);
    assert.equal(proxy.counters().dialErrors, c.attempts);
  }
});

test('a single endpoint that comes back during the backoff serves the connection', async (t) => {
  const [a] = await servers(t, namedServer('A'));
  const dead = await closedPort();
  let calls = 0;
  // The first attempt is refused, the retry reaches the live server.
  const connect: ConnectFn = (b) => (calls++ === 0 ? defaultConnect({ ...b, port: dead }) : defaultConnect(b));
  const proxy = await startProxy(t, { backends: [backend(a!.port)], connect, maxDialAttempts: 3, dialBackoffMs: 40 });
  const r = await exchange(proxy.port);
  assert.equal(r.error, undefined);
  assert.equal(r.data, 'A');
  assert.ok(r.ms >= 35, `waited for the backoff (${r.ms} ms)`);
  assert.equal(calls, 2);
});

test('passive health: a failed endpoint is skipped until its cool-down ends, which grows on repeated failures', async (t) => {
  const [a] = await servers(t, namedServer('A'));
  const dead = backend(await closedPort());
  const clock = { t: 0 };
  const rec = recordingConnect();
  const proxy = await startProxy(t, {
    backends: [dead, backend(a!.port)],
    connect: rec.connect,
    ejectionTimeMs: 1000,
    maxEjectionTimeMs: 5000,
    now: () => clock.t,
  });
  const serveSome = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await exchange(proxy.port);
      assert.equal(r.data, 'A', 'no client connection fails');
    }
  };

  await serveSome(6);
  assert.equal(rec.count(dead), 1, 'dialed once, then ejected');
  assert.equal(proxy.counters().ejections, 1);
  assert.equal(proxy.ejectedCount(), 1);

  clock.t = 999;
  await serveSome(4);
  assert.equal(rec.count(dead), 1, 'still ejected just before the cool-down ends');

  clock.t = 1000;
  await serveSome(4);
  assert.equal(rec.count(dead), 2, 'back after the cool-down, fails again');
  assert.equal(proxy.counters().ejections, 2);

  clock.t = 2999; // the second ejection lasts 2 s (1000 → 3000)
  await serveSome(4);
  assert.equal(rec.count(dead), 2, 'the second cool-down is twice as long');
  clock.t = 3000;
  await serveSome(4);
  assert.equal(rec.count(dead), 3);
  assert.equal(proxy.counters().ejections, 3);
  assert.equal(proxy.counters().failed, 0);
});

test('when every endpoint is ejected they are still dialed, and a success clears the ejection', async (t) => {
  const [a] = await servers(t, namedServer('A'));
  const dead = await closedPort();
  let failNext = true;
  const connect: ConnectFn = (b) => {
    const port = failNext ? dead : b.port;
    failNext = false;
    return defaultConnect({ ...b, port });
  };
  const clock = { t: 0 };
  const proxy = await startProxy(t, {
    backends: [backend(a!.port)],
    connect,
    maxDialAttempts: 1,
    ejectionTimeMs: 10_000,
    now: () => clock.t,
  });
  assert.equal((await exchange(proxy.port)).error?.code, 'ECONNRESET');
  assert.equal(proxy.ejectedCount(), 1);
  const r = await exchange(proxy.port);
  assert.equal(r.data, 'A', 'the ejected endpoint was still tried');
  assert.equal(proxy.ejectedCount(), 0, 'its success ended the ejection');
});

test('per-port limit: clients beyond it are reset and counted, and logged once per interval', async (t) => {
  const [s] = await servers(t, prefixEchoServer('S'));
  const { logger, lines } = captureLogger();
  const proxy = await startProxy(t, { backends: [backend(s!.port)], maxConnections: 2, logger });
  const held = [await openClient(proxy.port), await openClient(proxy.port)];
  t.after(() => held.forEach((c) => c.socket.destroy()));
  for (const c of held) assert.equal(await c.ask('x'), 'S:x');

  for (let i = 0; i < 5; i++) {
    const r = await exchange(proxy.port, 'over');
    assert.equal(r.error?.code, 'ECONNRESET');
    assert.ok(r.ms < 300, `refused at once (${r.ms} ms)`);
  }
  const c = proxy.counters();
  assert.equal(c.refused, 5);
  assert.equal(c.accepted, 2, 'refused clients are not accepted');
  assert.equal(c.active, 2);
  const limitLines = lines.filter((l) => l.msg === 'connection limit reached, new clients refused');
  assert.equal(limitLines.length, 1, 'one line, not one per client');
  assert.equal(limitLines[0]?.limit, 'port');
  assert.equal(limitLines[0]?.max, 2);

  held[0]!.socket.destroy();
  await waitFor(() => proxy.counters().active === 1);
  const again = await openClient(proxy.port);
  t.after(() => again.socket.destroy());
  assert.equal(await again.ask('y'), 'S:y', 'a freed slot is usable again');
});

test('total limit: one budget shared by every port', async (t) => {
  const [s] = await servers(t, prefixEchoServer('S'));
  const budget = new ConnectionBudget(3);
  const { logger, lines } = captureLogger();
  const p1 = await startProxy(t, { id: 'p1', backends: [backend(s!.port)], connectionBudget: budget, logger });
  const p2 = await startProxy(t, { id: 'p2', backends: [backend(s!.port)], connectionBudget: budget, logger });
  const held = [await openClient(p1.port), await openClient(p1.port), await openClient(p2.port)];
  t.after(() => held.forEach((c) => c.socket.destroy()));
  for (const c of held) assert.equal(await c.ask('x'), 'S:x');
  assert.equal(budget.active, 3);

  for (const p of [p1, p2, p2]) assert.equal((await exchange(p.port, 'over')).error?.code, 'ECONNRESET');
  assert.equal(p1.counters().refused, 1);
  assert.equal(p2.counters().refused, 2);
  const limitLines = lines.filter((l) => l.msg === 'connection limit reached, new clients refused');
  assert.equal(limitLines.length, 2, 'once per port in the interval');
  assert.ok(limitLines.every((l) => l.limit === 'total' && l.max === 3));

  held[2]!.socket.destroy();
  await waitFor(() => budget.active === 2);
  const again = await openClient(p1.port);
  t.after(() => again.socket.destroy());
  assert.equal(await again.ask('y'), 'S:y');
  assert.equal(budget.active, 3);
});

test('idle timeout closes an idle connection, not one with traffic in either direction', async (t) => {
  const received: Buffer[] = [];
  const [echo, sink] = await servers(
    t,
    prefixEchoServer('E'),
    // Only reads: the client → server direction alone must keep the connection alive.
    namedSink(received),
  );
  const idleMs = 150;
  const proxy = await startProxy(t, { backends: [backend(echo!.port)], idleTimeoutMs: idleMs });
  const oneWay = await startProxy(t, { backends: [backend(sink!.port)], idleTimeoutMs: idleMs });

  const idle = await openClient(proxy.port);
  const busy = await openClient(proxy.port);
  const writer = await openClient(oneWay.port);
  t.after(() => [idle, busy, writer].forEach((c) => c.socket.destroy()));
  assert.equal(await idle.ask('hi'), 'E:hi');
  const start = performance.now();
  const idleClosed = new Promise<number>((r) => idle.socket.once('close', () => r(performance.now() - start)));

  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await busy.ask(`m${i}`), `E:m${i}`);
    writer.socket.write(`w${i}`);
  }
  const closedAfter = await idleClosed;
  assert.ok(closedAfter >= idleMs - 10 && closedAfter < idleMs + 200, `idle one closed after ${closedAfter} ms`);
  assert.equal(busy.socket.destroyed, false, 'the busy connection is open after 400 ms');
  assert.equal(writer.socket.destroyed, false, 'one-way traffic keeps it open too');
  await waitFor(() => Buffer.concat(received).toString() === 'w0w1w2w3w4w5w6w7');
  assert.equal(proxy.counters().idleClosed, 1);
  assert.equal(oneWay.counters().idleClosed, 0);
  await waitFor(() => proxy.counters().active === 1);
});

test('grace period: a removed endpoint keeps its connections until it ends, others are untouched', async (t) => {
  const [a, b] = await servers(t, prefixEchoServer('A'), prefixEchoServer('B'));
  const grace = 150;
  const proxy = await startProxy(t, { backends: [backend(a!.port), backend(b!.port)], removedEndpointGracePeriodMs: grace });
  const clients = await Promise.all([openClient(proxy.port), openClient(proxy.port), openClient(proxy.port), openClient(proxy.port)]);
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  const answers = await Promise.all(clients.map((c) => c.ask('x')));
  const toA = clients.filter((_, i) => answers[i] === 'A:x');
  const toB = clients.filter((_, i) => answers[i] === 'B:x');
  assert.equal(toA.length, 2);
  assert.equal(toB.length, 2);

  const start = performance.now();
  proxy.update([backend(b!.port)]);
  await new Promise((r) => setTimeout(r, grace / 2));
  assert.equal(await toA[0]!.ask('still'), 'A:still', 'within the grace period the connection works');
  const closedAt = await Promise.all(toA.map((c) => new Promise<number>((r) => c.socket.once('close', () => r(performance.now() - start)))));
  for (const ms of closedAt) assert.ok(ms >= grace - 10 && ms < grace + 200, `closed after ${ms} ms`);
  for (const c of toB) assert.equal(await c.ask('y'), 'B:y', "the remaining endpoint's connections are untouched");
  await waitFor(() => proxy.counters().active === 2);
});

test('grace period: an endpoint re-added before the period ends keeps its connections', async (t) => {
  const [a, b] = await servers(t, prefixEchoServer('A'), prefixEchoServer('B'));
  const proxy = await startProxy(t, { backends: [backend(a!.port)], removedEndpointGracePeriodMs: 100 });
  const c = await openClient(proxy.port);
  t.after(() => c.socket.destroy());
  assert.equal(await c.ask('x'), 'A:x');
  proxy.update([backend(b!.port)]);
  proxy.update([backend(a!.port), backend(b!.port)]);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await c.ask('y'), 'A:y');
});

/** A server that only reads, collecting what it got. */
function namedSink(into: Buffer[]): Promise<TestServer> {
  return startServer((s) => s.on('data', (d: Buffer) => into.push(d)));
}

test('ProxyManager passes the tuning to every port and shares one total budget between them', async (t) => {
  const [s] = await servers(t, prefixEchoServer('S'));
  const mgr = new ProxyManager({ logger: silent, host: LOOPBACK, maxConnections: 1, tcp: { maxDialAttempts: 1 } });
  t.after(() => mgr.close({ destroyConnections: true }));
  const spec = (name: string) => ({ id: `${name}/TCP`, portName: name, protocol: 'TCP' as const, backends: [backend(s!.port)] });
  const [p1, p2] = await mgr.prepare([spec('default/a:p'), spec('default/b:p')]);
  const held = await openClient(p1!.listenPort);
  t.after(() => held.socket.destroy());
  assert.equal(await held.ask('x'), 'S:x');
  assert.equal((await exchange(p2!.listenPort, 'over')).error?.code, 'ECONNRESET', 'the other port shares the total');
  const stats = mgr.stats().find((st) => st.portName === 'default/b:p');
  assert.equal(stats?.protocol === 'TCP' && stats.counters.refused, 1);
});
