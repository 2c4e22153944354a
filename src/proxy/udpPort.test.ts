import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { pino } from 'pino';
import { UdpProxyPort } from './udpPort.ts';
import type { UdpProxyPortOptions } from './udpPort.ts';
import { LOOPBACK, backend, waitFor } from './testSupport.ts';
import { closedUdpPort, udpClient, udpNamedServer } from './udpTestSupport.ts';
import type { UdpClient, UdpTestServer } from './udpTestSupport.ts';

const silent = pino({ level: 'silent' });

async function startProxy(t: TestContext, opts: Partial<UdpProxyPortOptions>): Promise<UdpProxyPort> {
  const proxy = new UdpProxyPort({ id: 'test/svc:p/UDP', logger: silent, host: LOOPBACK, ...opts });
  await proxy.listen();
  t.after(() => proxy.close());
  return proxy;
}

async function servers(t: TestContext, ...names: string[]): Promise<UdpTestServer[]> {
  const all = await Promise.all(names.map((n) => udpNamedServer(n)));
  t.after(() => Promise.all(all.map((s) => s.close())));
  return all;
}

async function clients(t: TestContext, n: number): Promise<UdpClient[]> {
  const all = await Promise.all(Array.from({ length: n }, () => udpClient()));
  t.after(() => Promise.all(all.map((c) => c.close())));
  return all;
}

test('request and reply go through the proxy; the reply comes from the proxy port', async (t) => {
  const [a] = await servers(t, 'A');
  const proxy = await startProxy(t, { backends: [backend(a!.port)] });
  const [c] = await clients(t, 1);
  assert.equal(await c!.ask(proxy.port, 'hello'), 'A:hello');
  assert.equal(await c!.ask(proxy.port, 'again'), 'A:again');
  assert.equal(c!.lastReplyFrom(), proxy.port, 'replies leave from the port the client sent to');
  await waitFor(() => proxy.counters().datagramsOut === 2);
  const k = proxy.counters();
  assert.equal(k.flowsActive, 1);
  assert.equal(k.flowsCreated, 1);
  assert.equal(k.datagramsIn, 2);
  assert.equal(k.bytesIn, 'hello'.length + 'again'.length);
  assert.equal(k.bytesOut, 'A:hello'.length + 'A:again'.length);
});

test('each client address:port gets its own flow; a client keeps its flow', async (t) => {
  const [a] = await servers(t, 'A');
  const proxy = await startProxy(t, { backends: [backend(a!.port)] });
  const [c1, c2] = await clients(t, 2);
  for (const c of [c1!, c2!, c1!, c2!]) assert.equal(await c.ask(proxy.port, 'x'), 'A:x');
  // The server sees one upstream source port per client, each reused for that client's datagrams.
  assert.equal(new Set(a!.sources).size, 2);
  assert.equal(a!.sources[0], a!.sources[2]);
  assert.equal(a!.sources[1], a!.sources[3]);
  assert.equal(proxy.counters().flowsCreated, 2);
  assert.equal(proxy.counters().flowsActive, 2);
});

test('new flows are balanced round robin; datagrams of one flow stay on its endpoint', async (t) => {
  const [a, b] = await servers(t, 'A', 'B');
  const proxy = await startProxy(t, { backends: [backend(a!.port), backend(b!.port)] });
  const cs = await clients(t, 4);
  const first: string[] = [];
  for (const c of cs) first.push((await c.ask(proxy.port, 'x'))!.split(':')[0]!);
  for (let i = 1; i < first.length; i++) assert.notEqual(first[i], first[i - 1], `not alternating: ${first}`);
  for (const [i, c] of cs.entries()) assert.equal((await c.ask(proxy.port, 'y'))!.split(':')[0], first[i]);
});

test('a flow idle for idleTimeout is closed by the sweep; the next datagram opens a new flow', async (t) => {
  const [a, b] = await servers(t, 'A', 'B');
  const proxy = await startProxy(t, { backends: [backend(a!.port), backend(b!.port)], idleTimeoutMs: 80, sweepIntervalMs: 10 });
  const [c] = await clients(t, 1);
  const first = await c!.ask(proxy.port, 'x');
  // Traffic keeps it alive past the timeout.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(await c!.ask(proxy.port, 'x'), first);
  }
  assert.equal(proxy.counters().flowsCreated, 1);
  await waitFor(() => proxy.counters().flowsActive === 0);
  assert.equal(proxy.counters().flowsExpired, 1);
  const second = await c!.ask(proxy.port, 'x');
  assert.notEqual(second, first, 'a new flow re-picks (round robin moves on)');
  assert.equal(proxy.counters().flowsCreated, 2);
});

test('an idle flow is expired lazily on its next datagram, even before a sweep', async (t) => {
  let now = 0;
  const [a, b] = await servers(t, 'A', 'B');
  const proxy = await startProxy(t, {
    backends: [backend(a!.port), backend(b!.port)], idleTimeoutMs: 1000, sweepIntervalMs: 3_600_000, now: () => now,
  });
  const [c] = await clients(t, 1);
  const first = await c!.ask(proxy.port, 'x');
  now = 999;
  assert.equal(await c!.ask(proxy.port, 'x'), first);
  now = 999 + 1000;
  assert.notEqual(await c!.ask(proxy.port, 'x'), first);
  assert.deepEqual([proxy.counters().flowsExpired, proxy.counters().flowsCreated, proxy.counters().flowsActive], [1, 2, 1]);
});

test('at maxFlows the least recently used flow is evicted and counted', async (t) => {
  const [a] = await servers(t, 'A');
  const proxy = await startProxy(t, { backends: [backend(a!.port)], maxFlows: 2 });
  const [c1, c2, c3] = await clients(t, 3);
  await c1!.ask(proxy.port, 'x');
  await c2!.ask(proxy.port, 'x');
  await c1!.ask(proxy.port, 'x'); // c2 is now the least recently used
  await c3!.ask(proxy.port, 'x');
  assert.deepEqual([proxy.counters().flowsActive, proxy.counters().evictions, proxy.counters().flowsCreated], [2, 1, 3]);
  await c1!.ask(proxy.port, 'x');
  assert.equal(proxy.counters().flowsCreated, 3, 'c1 kept its flow');
  assert.equal(await c2!.ask(proxy.port, 'x'), 'A:x', 'an evicted client is served by a new flow');
  assert.deepEqual([proxy.counters().flowsActive, proxy.counters().evictions, proxy.counters().flowsCreated], [2, 2, 4]);
});

test('removing an endpoint moves its flows: their next datagram goes to a live endpoint', async (t) => {
  const [a, b] = await servers(t, 'A', 'B');
  const proxy = await startProxy(t, { backends: [backend(a!.port), backend(b!.port)] });
  const cs = await clients(t, 4);
  const answers = await Promise.all(cs.map((c) => c.ask(proxy.port, 'x')));
  assert.deepEqual(new Set(answers), new Set(['A:x', 'B:x']));
  proxy.update([backend(b!.port)]);
  assert.equal(proxy.counters().flowsRerouted, 2);
  for (const c of cs) assert.equal(await c.ask(proxy.port, 'y'), 'B:y');
  // Adding an endpoint back does not disturb flows that are fine.
  proxy.update([backend(a!.port), backend(b!.port)]);
  for (const c of cs) assert.equal(await c.ask(proxy.port, 'z'), 'B:z');
  assert.equal(proxy.counters().flowsRerouted, 2);
});

test('an upstream error (ICMP port unreachable) closes the flow; the next datagram re-picks and is answered', async (t) => {
  const [a] = await servers(t, 'A');
  const dead = await closedUdpPort();
  const proxy = await startProxy(t, { backends: [backend(dead), backend(a!.port)] });
  // Round robin puts one of the first two flows on the dead endpoint.
  for (const c of await clients(t, 2)) {
    let answer: string | undefined;
    for (let i = 0; i < 3 && answer === undefined; i++) answer = await c.ask(proxy.port, 'x', 300);
    assert.equal(answer, 'A:x');
  }
  // One or two errors (depending on which client drew the dead endpoint first), each costing one flow.
  const k = proxy.counters();
  assert.ok(k.upstreamErrors >= 1, JSON.stringify(k));
  assert.equal(k.flowsCreated, 2 + k.upstreamErrors);
  assert.equal(k.flowsActive, 2);
});

test('an endpoint that goes away and comes back on the same port does not leave the flow broken', async (t) => {
  const a = await udpNamedServer('A');
  const proxy = await startProxy(t, { backends: [backend(a.port)] });
  const [c] = await clients(t, 1);
  assert.equal(await c!.ask(proxy.port, 'x'), 'A:x');
  await a.close();
  assert.equal(await c!.ask(proxy.port, 'x', 200), undefined);
  await waitFor(() => proxy.counters().upstreamErrors === 1);
  const again = await udpNamedServer('A2', a.port);
  t.after(() => again.close());
  assert.equal(await c!.ask(proxy.port, 'x'), 'A2:x');
});

test('with no usable endpoint a datagram is dropped and counted', async (t) => {
  const proxy = await startProxy(t, { backends: [backend(1, { ready: false, serving: false })] });
  const [c] = await clients(t, 1);
  assert.equal(await c!.ask(proxy.port, 'x', 150), undefined);
  const k = proxy.counters();
  assert.deepEqual([k.drops, k.datagramsIn, k.flowsActive, k.flowsCreated], [1, 1, 0, 0]);
});

test('close() releases the listening socket and every flow socket', async (t) => {
  const fds = () => readdirSync('/proc/self/fd').length;
  const [a] = await servers(t, 'A');
  const cs = await clients(t, 5);
  const before = fds();
  const proxy = new UdpProxyPort({ id: 'test/svc:p/UDP', logger: silent, host: LOOPBACK, backends: [backend(a!.port)] });
  const port = await proxy.listen();
  for (const c of cs) assert.equal(await c.ask(port, 'x'), 'A:x');
  assert.equal(fds(), before + 6, 'one listening socket and one socket per flow');
  await proxy.close();
  assert.equal(fds(), before);
  assert.equal(proxy.counters().flowsActive, 0);
  assert.equal(await cs[0]!.ask(port, 'x', 150), undefined);
});
