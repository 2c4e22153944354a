// ProxyManager with proxy.portRange: listeners on ports of the range, kept across syncs, a spec
// beyond the range left unserved (and logged), ports other processes hold skipped.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Backend, Protocol } from '../model/types.ts';
import { ProxyManager } from './manager.ts';
import type { PortRange } from './portAllocator.ts';
import type { ProxyPortSpec } from './types.ts';
import { LOOPBACK, backend, exchange, namedServer } from './testSupport.ts';
import { udpClient, udpNamedServer } from './udpTestSupport.ts';

function spec(id: string, backends: Backend[], protocol: Protocol = 'TCP'): ProxyPortSpec {
  return { id: `${id}/${protocol}`, portName: id, protocol, backends };
}

/** A logger whose warn-and-above records the test can read. */
function capturingLogger() {
  const records: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), records };
}

async function tcpFree(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, LOOPBACK, () => s.close(() => resolve(true)));
  });
}

async function udpFree(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    s.once('error', () => (s.close(), resolve(false)));
    s.bind(port, LOOPBACK, () => s.close(() => resolve(true)));
  });
}

/**
 * `n` consecutive ports free for TCP and UDP on loopback, below the kernel's ephemeral range
 * (32768+) so no kernel-chosen port of a test running alongside lands in it.
 */
async function freeRange(n: number): Promise<PortRange> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const from = 20000 + Math.floor(Math.random() * 12000);
    const ports = Array.from({ length: n }, (_, i) => from + i);
    const free = await Promise.all(ports.map(async (p) => (await tcpFree(p)) && (await udpFree(p))));
    if (free.every(Boolean)) return { from, to: from + n - 1 };
  }
  throw new Error('no free port range found');
}

async function manager(t: TestContext, portRange: PortRange) {
  const { logger, records } = capturingLogger();
  const mgr = new ProxyManager({ logger, host: LOOPBACK, portRange });
  t.after(() => mgr.close({ destroyConnections: true }));
  return { mgr, records };
}

test('portRange: ports from the range, kept across syncs; a 4th spec is not served and logged; retire frees one', async (t) => {
  const range = await freeRange(3);
  const a = await namedServer('A');
  t.after(() => a.close());
  const { mgr, records } = await manager(t, range);
  const specs = ['s1', 's2', 's3', 's4'].map((n) => spec(`default/${n}:p`, [backend(a.port)]));

  const first = await mgr.prepare(specs);
  assert.deepEqual(first, [
    { id: 'default/s1:p/TCP', listenPort: range.from },
    { id: 'default/s2:p/TCP', listenPort: range.from + 1 },
    { id: 'default/s3:p/TCP', listenPort: range.from + 2 },
  ], 'the 4th finds the range used up and is left out (so no rule points anywhere for it)');
  for (const s of first) assert.equal((await exchange(s.listenPort)).data, 'A');
  const exhausted = records.filter((r) => r['proxyPort'] === 'default/s4:p/TCP');
  assert.equal(exhausted.length, 1);
  assert.match(String(exhausted[0]!['msg']), /no free listener port left in proxy\.portRange/);
  assert.equal(exhausted[0]!['portRange'], `${range.from}-${range.to}`);

  // A resync (new spec objects, new backends) keeps every port; the unserved one is not logged again.
  const again = await mgr.prepare(specs.map((s) => ({ ...s, backends: [backend(a.port)] })));
  assert.deepEqual(again, first);
  assert.equal(records.filter((r) => r['proxyPort'] === 'default/s4:p/TCP').length, 1, 'logged once, not on every sync');

  // s2 goes: its port is free again only once retired, and then s4 gets it.
  const withoutS2 = specs.filter((s) => s.id !== 'default/s2:p/TCP');
  const before = await mgr.prepare(withoutS2);
  assert.equal(before.length, 2, 's2 still holds its port until retire()');
  assert.deepEqual(await mgr.retire(), ['default/s2:p/TCP']);
  const after = await mgr.prepare(withoutS2);
  assert.deepEqual(after, [
    { id: 'default/s1:p/TCP', listenPort: range.from },
    { id: 'default/s3:p/TCP', listenPort: range.from + 2 },
    { id: 'default/s4:p/TCP', listenPort: range.from + 1 },
  ]);
  assert.equal((await exchange(range.from + 1)).data, 'A');
});

test('portRange: a port another process holds is skipped, and the next one used', async (t) => {
  const range = await freeRange(3);
  const a = await namedServer('A');
  // Another process's listener on the range's first port (same address family and host).
  const holder = net.createServer((s) => s.end('holder'));
  await new Promise<void>((resolve) => holder.listen(range.from, LOOPBACK, resolve));
  t.after(async () => {
    await a.close();
    await new Promise<void>((resolve) => holder.close(() => resolve()));
  });
  const { mgr, records } = await manager(t, range);

  const got = await mgr.prepare([spec('default/web:http', [backend(a.port)]), spec('default/api:http', [backend(a.port)])]);
  // Both open at once, so which gets which is up to the bind order; neither gets the held one.
  assert.deepEqual(got.map((s) => s.listenPort).sort(), [range.from + 1, range.from + 2]);
  assert.equal((await exchange(range.from + 1)).data, 'A');
  assert.equal((await exchange(range.from)).data, 'holder', 'the holder is untouched');
  assert.ok(records.some((r) => r['listenPort'] === range.from && /held by another process/.test(String(r['msg']))));

  // With every other port taken, a third spec tries the held port again (still held: not served).
  const third = await mgr.prepare([spec('default/web:http', []), spec('default/api:http', []), spec('default/x:y', [])]);
  assert.equal(third.length, 2);
  assert.ok(records.some((r) => r['proxyPort'] === 'default/x:y/TCP' && /no free listener port left/.test(String(r['msg']))));
});

test('portRange: UDP ports come from the range too, their own space beside TCP', async (t) => {
  const range = await freeRange(2);
  const [tcpBackend, udpBackend] = await Promise.all([namedServer('T'), udpNamedServer('U')]);
  const client = await udpClient();
  t.after(async () => {
    await Promise.all([tcpBackend.close(), udpBackend.close(), client.close()]);
  });
  const { mgr } = await manager(t, range);
  const got = await mgr.prepare([spec('kube-system/dns:dns', [backend(tcpBackend.port)], 'TCP'), spec('kube-system/dns:dns', [backend(udpBackend.port)], 'UDP')]);
  assert.deepEqual(got.map((s) => s.listenPort), [range.from, range.from], 'a TCP and a UDP listener may share a number');
  assert.equal((await exchange(range.from)).data, 'T');
  assert.equal(await client.ask(range.from, 'q'), 'U:q');
});

test('portRange: a closed manager frees its ports for the next one (restart)', async (t) => {
  const range = await freeRange(1);
  const first = new ProxyManager({ logger: pino({ level: 'silent' }), host: LOOPBACK, portRange: range });
  assert.deepEqual((await first.prepare([spec('a/b:c', [])])).map((s) => s.listenPort), [range.from]);
  await first.close({ destroyConnections: true });
  const { mgr } = await manager(t, range);
  assert.deepEqual((await mgr.prepare([spec('a/b:c', [])])).map((s) => s.listenPort), [range.from]);
});

test('portRange with worker threads: another process\'s SO_REUSEPORT listener on a port is not joined', async (t) => {
  const range = await freeRange(2);
  const a = await namedServer('A');
  const holder = net.createServer((s) => s.end('holder'));
  await new Promise<void>((resolve) => holder.listen({ port: range.from, host: LOOPBACK, reusePort: true }, resolve));
  t.after(async () => {
    await a.close();
    await new Promise<void>((resolve) => holder.close(() => resolve()));
  });
  const mgr = new ProxyManager({ logger: pino({ level: 'silent' }), host: LOOPBACK, portRange: range, workers: 2 });
  t.after(() => mgr.close({ destroyConnections: true }));
  assert.deepEqual(await mgr.prepare([spec('default/web:http', [backend(a.port)])]), [{ id: 'default/web:http/TCP', listenPort: range.from + 1 }]);
  for (let i = 0; i < 4; i++) assert.equal((await exchange(range.from)).data, 'holder', 'the holder gets all of its own connections');
  for (let i = 0; i < 4; i++) assert.equal((await exchange(range.from + 1)).data, 'A');
});
