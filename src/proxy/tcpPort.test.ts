import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { Backend } from '../model/types.ts';
import { TcpProxyPort, defaultConnect } from './tcpPort.ts';
import type { Balancer } from './balancer.ts';
import { RoundRobinBalancer } from './roundRobin.ts';
import {
  LOOPBACK,
  backend,
  closedPort,
  exchange,
  namedServer,
  openClient,
  prefixEchoServer,
  servers,
  startProxy,
  startServer,
  waitFor,
} from './testSupport.ts';

const silent = pino({ level: 'silent' });

/** A port number standing for a backend whose dial never completes (see blackHoleConnect). */
const BLACK_HOLE_PORT = 9;

/** Dials loopback for real, except that BLACK_HOLE_PORT gives a socket that never connects or fails. */
const blackHoleConnect = (b: Backend): net.Socket =>
  b.port === BLACK_HOLE_PORT ? new net.Socket({ allowHalfOpen: true }) : defaultConnect(b);


test('round robin alternates across two backends', async (t) => {
  const [a, b] = await servers(t, namedServer('A'), namedServer('B'));
  const proxy = await startProxy(t, { backends: [backend(a!.port), backend(b!.port)] });
  const got: string[] = [];
  for (let i = 0; i < 4; i++) got.push((await exchange(proxy.port)).data);
  assert.equal(new Set([got[0], got[1]]).size, 2, `alternates: ${got.join(',')}`);
  assert.deepEqual(got.slice(2), got.slice(0, 2));
  await waitFor(() => proxy.counters().active === 0);
  assert.deepEqual(proxy.counters(), { accepted: 4, active: 0, failed: 0, bytesIn: 0, bytesOut: 4, dialErrors: 0, refused: 0, ejections: 0, idleClosed: 0 });
});

test('fails over from a refused backend: no client connection fails', async (t) => {
  const [a] = await servers(t, namedServer('A'));
  const dead = await closedPort();
  const proxy = await startProxy(t, { backends: [backend(dead), backend(a!.port)] });
  for (let i = 0; i < 6; i++) {
    const r = await exchange(proxy.port);
    assert.equal(r.error, undefined);
    assert.equal(r.data, 'A');
  }
  const c = proxy.counters();
  assert.equal(c.failed, 0);
  assert.equal(c.dialErrors, 3, 'round robin puts the dead one first every other time');
});

test('fails over from a black-holed backend after the connect timeout', async (t) => {
  const [a] = await servers(t, namedServer('A'));
  const proxy = await startProxy(t, {
    backends: [backend(BLACK_HOLE_PORT), backend(a!.port)],
    connect: blackHoleConnect,
    connectTimeoutMs: 100,
  });
  const first = await exchange(proxy.port); // round robin starts with the black hole (port 9 sorts first)
  assert.equal(first.data, 'A');
  assert.ok(first.ms >= 95, `waited for the timeout (${first.ms} ms)`);
  const second = await exchange(proxy.port);
  assert.equal(second.data, 'A');
  await waitFor(() => proxy.counters().active === 0);
  assert.deepEqual({ ...proxy.counters(), bytesIn: 0 }, { accepted: 2, active: 0, failed: 0, bytesIn: 0, bytesOut: 2, dialErrors: 1, refused: 0, ejections: 0, idleClosed: 0 });
});

test('no usable backend: the client is reset at once', async (t) => {
  const notServing = backend(1, { ready: false, serving: false, terminating: true });
  for (const backends of [[], [notServing]]) {
    const proxy = await startProxy(t, { backends });
    const r = await exchange(proxy.port, 'hello');
    assert.equal(r.error?.code, 'ECONNRESET');
    assert.ok(r.ms < 500, `prompt (${r.ms} ms)`);
    assert.equal(proxy.counters().failed, 1);
    assert.equal(proxy.counters().dialErrors, 0);
    await waitFor(() => proxy.counters().active === 0);
  }
});

test('every backend dead: the client is reset after each was tried once', async (t) => {
  const dead = await closedPort();
  const timeout = 100;
  const proxy = await startProxy(t, {
    backends: [backend(BLACK_HOLE_PORT), backend(dead), backend(BLACK_HOLE_PORT, { ip: '127.0.0.2' })],
    connect: blackHoleConnect,
    connectTimeoutMs: timeout,
  });
  const r = await exchange(proxy.port, 'hello');
  assert.equal(r.error?.code, 'ECONNRESET');
  assert.ok(r.ms >= 2 * timeout - 5 && r.ms < 3 * timeout + 400, `two timeouts and a refusal (${r.ms} ms)`);
  const c = proxy.counters();
  assert.equal(c.failed, 1);
  assert.equal(c.dialErrors, 3);
  await waitFor(() => proxy.counters().active === 0);
});

test('half-close: the client ends its write side and still gets the answer sent after it', async (t) => {
  const [srv] = await servers(
    t,
    startServer((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      // Answers only after the client's FIN came through the proxy.
      s.on('end', () => setTimeout(() => s.end(`got:${Buffer.concat(chunks).toString()}`), 20));
    }, true),
  );
  const proxy = await startProxy(t, { backends: [backend(srv!.port)] });
  const r = await exchange(proxy.port, 'hello');
  assert.equal(r.error, undefined);
  assert.equal(r.data, 'got:hello');
  await waitFor(() => proxy.counters().active === 0);
  assert.equal(proxy.counters().bytesIn, 5);
  assert.equal(proxy.counters().bytesOut, 9);
});

test('half-close the other way: the server ends first, the client keeps sending', async (t) => {
  const [srv] = await servers(
    t,
    startServer((s) => {
      s.write('banner');
      s.end();
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('end', () => (received = Buffer.concat(chunks).toString()));
    }, true),
  );
  let received = '';
  const proxy = await startProxy(t, { backends: [backend(srv!.port)] });
  const client = net.connect({ host: LOOPBACK, port: proxy.port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  client.on('data', (d) => chunks.push(d));
  await new Promise((r) => client.once('end', r));
  assert.equal(Buffer.concat(chunks).toString(), 'banner');
  client.end('late data');
  await waitFor(() => received === 'late data');
  await waitFor(() => proxy.counters().active === 0);
});

test('32 MB arrive intact through a slow reader, with bounded buffering in the proxy', async (t) => {
  const payload = randomBytes(32 * 1024 * 1024);
  const want = createHash('sha256').update(payload).digest('hex');
  const [srv] = await servers(t, startServer((s) => s.end(payload)));
  const proxy = await startProxy(t, { backends: [backend(srv!.port)] });

  const client = net.connect({ host: LOOPBACK, port: proxy.port });
  client.pause();
  await new Promise((r) => client.once('connect', r));
  // The reader is stalled: the proxy must stop reading from the backend, not buffer it all.
  let maxBuffered = 0;
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 20));
    maxBuffered = Math.max(maxBuffered, proxy.bufferedBytes());
  }
  const readWhileStalled = proxy.counters().bytesOut;
  assert.ok(maxBuffered < 1024 * 1024, `proxy write buffers stayed small (${maxBuffered} bytes)`);
  assert.ok(readWhileStalled < 16 * 1024 * 1024, `proxy stopped reading the backend (${readWhileStalled} bytes)`);

  const hash = createHash('sha256');
  let length = 0;
  client.on('data', (d: Buffer) => {
    hash.update(d);
    length += d.length;
  });
  client.resume();
  await new Promise((r) => client.once('end', r));
  assert.equal(length, payload.length);
  assert.equal(hash.digest('hex'), want);
  await waitFor(() => proxy.counters().active === 0);
  assert.equal(proxy.counters().bytesOut, payload.length);
});

test('update() applies to new connections and leaves open ones alone', async (t) => {
  const [a, b] = await servers(t, prefixEchoServer('A'), prefixEchoServer('B'));
  const proxy = await startProxy(t, { backends: [backend(a!.port)] });
  const old = await openClient(proxy.port);
  t.after(() => old.socket.destroy());
  assert.equal(await old.ask('x'), 'A:x');
  proxy.update([backend(b!.port)]);
  assert.equal(await old.ask('y'), 'A:y', 'the open connection still reaches A');
  const fresh = await openClient(proxy.port);
  t.after(() => fresh.socket.destroy());
  assert.equal(await fresh.ask('z'), 'B:z');
  assert.equal(proxy.counters().active, 2);
  proxy.update([]);
  assert.equal(await old.ask('w'), 'A:w');
  assert.equal((await exchange(proxy.port)).error?.code, 'ECONNRESET');
});

test('active returns to 0 when clients and servers die abruptly', async (t) => {
  const [srv] = await servers(t, prefixEchoServer('S'));
  const proxy = await startProxy(t, { backends: [backend(srv!.port)] });
  const clients = await Promise.all(Array.from({ length: 6 }, () => openClient(proxy.port)));
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  for (const c of clients) assert.equal(await c.ask('hi'), 'S:hi');
  assert.equal(proxy.counters().active, 6);

  // Two clients reset, two clients close normally (FIN), then the server resets the rest.
  clients[0]!.socket.resetAndDestroy();
  clients[1]!.socket.resetAndDestroy();
  clients[2]!.socket.end();
  clients[3]!.socket.end();
  await waitFor(() => proxy.counters().active === 2);
  for (const s of srv!.sockets) s.resetAndDestroy();
  await waitFor(() => proxy.counters().active === 0);
  await waitFor(() => clients.every((c) => c.socket.destroyed));
});

test('a client that goes away while its dial is pending is cleaned up', async (t) => {
  const proxy = await startProxy(t, {
    backends: [backend(BLACK_HOLE_PORT)],
    connect: blackHoleConnect,
    connectTimeoutMs: 150,
  });
  const client = net.connect({ host: LOOPBACK, port: proxy.port });
  client.on('error', () => {});
  await new Promise((r) => client.once('connect', r));
  client.resetAndDestroy();
  // The proxy only notices once the dial attempt ends; then nothing may be left open.
  await waitFor(() => proxy.counters().active === 0);
  assert.equal(proxy.counters().accepted, 1);
});

test('close() stops accepting at once and leaves open connections; destroyConnections() resets them', async (t) => {
  const [srv] = await servers(t, prefixEchoServer('S'));
  const proxy = await startProxy(t, { backends: [backend(srv!.port)] });
  const open = await openClient(proxy.port);
  await proxy.close();
  const refused = await exchange(proxy.port);
  assert.equal(refused.error?.code, 'ECONNREFUSED');
  assert.equal(await open.ask('still'), 'S:still');
  const closed = new Promise((r) => open.socket.once('close', r));
  proxy.destroyConnections();
  await closed;
  await waitFor(() => proxy.counters().active === 0);
  await proxy.close(); // idempotent
});

test('listen() on a busy port rejects', async (t) => {
  const first = await startProxy(t, {});
  const second = new TcpProxyPort({ id: 'dup', logger: silent, host: LOOPBACK, port: first.port });
  await assert.rejects(second.listen(), { code: 'EADDRINUSE' });
});

test("the client's address is looked up only for a balancer that uses it", async (t) => {
  const [a] = await servers(t, namedServer('A'));
  for (const usesClientIp of [false, true]) {
    const seen: string[] = [];
    const inner = new RoundRobinBalancer();
    const balancer: Balancer = {
      usesClientIp,
      update: (b) => inner.update(b),
      pick: (ip) => inner.pick(ip),
      candidates: (ip) => {
        seen.push(ip);
        return inner.candidates(ip);
      },
      dialSucceeded: () => {},
      dialFailed: () => {},
      backends: () => inner.backends(),
    };
    const proxy = await startProxy(t, { backends: [backend(a!.port)], balancer });
    assert.equal((await exchange(proxy.port)).data, 'A');
    assert.deepEqual(seen, [usesClientIp ? LOOPBACK : '']);
  }
});
