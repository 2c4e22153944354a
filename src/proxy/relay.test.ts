import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { LARGE_READ_BUFFER, ReadBufferPool, SMALL_READ_BUFFER } from './readBuffers.ts';
import { readPooled } from './relay.ts';
import { userBuffersSupported } from './userBuffer.ts';
import { backend, LOOPBACK, servers, startProxy, startServer, waitFor } from './testSupport.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The backend speaks first (`down` bytes at once), reads what the client sends until its end,
 * then closes; it reports the sha256 of what it received.
 */
function bulkServer(down: Buffer, received: (hash: string, bytes: number) => void) {
  return startServer((s) => {
    s.write(down);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      received(sha(all), all.length);
      s.end();
    });
  }, true);
}

/** Sends `up` and ends, reading slowly (paused every 256 KB) so the proxy meets backpressure. */
function slowClient(port: number, up: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sinceStall = 0;
    const c = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    c.on('error', reject);
    c.on('connect', () => c.end(up));
    c.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      sinceStall += chunk.length;
      if (sinceStall > 256 * 1024) {
        sinceStall = 0;
        c.pause();
        setTimeout(() => c.resume(), 5);
      }
    });
    c.on('end', () => {
      c.end();
      resolve(Buffer.concat(chunks));
    });
  });
}

for (const pooledReads of [true, false]) {
  test(`relay (${pooledReads ? 'pooled buffers' : 'streams'}): 8 MB each way with backpressure, a server that speaks first, half-close; every byte intact`, async (t) => {
    const down = randomBytes(8 * 1024 * 1024);
    const up = randomBytes(8 * 1024 * 1024 + 7);
    let got: { hash: string; bytes: number } | undefined;
    const [server] = await servers(t, bulkServer(down, (hash, bytes) => (got = { hash, bytes })));
    const pool = new ReadBufferPool();
    const proxy = await startProxy(t, { backends: [backend(server!.port)], readBuffers: pool, pooledReads });
    const back = await slowClient(proxy.port, up);
    assert.equal(back.length, down.length);
    assert.equal(sha(back), sha(down));
    assert.deepEqual(got, { hash: sha(up), bytes: up.length });
    if (pooledReads) {
      // The slow client stalled the download ~30 times: the buffers its queue held came back.
      await waitFor(() => pool.stats().inUse === 0);
      const { allocated } = pool.stats();
      assert.ok(allocated >= 2 && allocated <= 8, `${allocated} buffers allocated for 16 MB relayed through stalls`);
    } else assert.equal(pool.stats().allocated, 0);
  });
}

test('relay: sequential connections reuse the pooled buffers instead of allocating', async (t) => {
  const payload = randomBytes(512 * 1024);
  const [server] = await servers(t, startServer((s) => s.end(payload)));
  const pool = new ReadBufferPool();
  const proxy = await startProxy(t, { backends: [backend(server!.port)], readBuffers: pool });
  for (let i = 0; i < 30; i++) {
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const c = net.connect(proxy.port, LOOPBACK);
      c.on('error', reject);
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('close', () => resolve(Buffer.concat(chunks)));
    });
    assert.equal(sha(got), sha(payload));
  }
  // 30 connections × 2 directions; a buffer only goes to the GC when a write held it. The
  // download fills its first reads, so it moved to large buffers, which came back too.
  const { allocated, inUse, bytes } = pool.stats();
  assert.ok(allocated < 20, `allocated ${allocated} read buffers for 60 relayed directions`);
  await waitFor(() => pool.stats().inUse === 0);
  assert.ok(bytes >= LARGE_READ_BUFFER, `bytes ${bytes}, in use ${inUse}`);
});

test('readPooled: refused (stream reads kept, buffer returned) when not allowed or already reading', async (t) => {
  const pool = new ReadBufferPool();
  const accepted: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  t.after(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  const clients = [0, 1, 2].map(() => net.connect((server.address() as net.AddressInfo).port, LOOPBACK));
  t.after(() => clients.forEach((c) => c.destroy()));
  while (accepted.length < 3) await new Promise((r) => setTimeout(r, 5));
  const [a, b, c] = accepted as [net.Socket, net.Socket, net.Socket];
  assert.equal(readPooled(a, pool, false), false);
  b.resume(); // reading from the next tick on
  await new Promise((r) => setImmediate(r));
  assert.equal(readPooled(b, pool), false);
  assert.deepEqual(pool.stats(), { allocated: 1, inUse: 0, free: 1, bytes: SMALL_READ_BUFFER });
  // Node 22 and 24, the supported ones, both allow it.
  assert.equal(userBuffersSupported(), true);
  assert.equal(readPooled(c, pool), true);
  assert.deepEqual(pool.stats(), { allocated: 1, inUse: 1, free: 0, bytes: SMALL_READ_BUFFER });
});

test("relay: past the pool's cap, connections read through streams, and every buffer comes back", async (t) => {
  const payload = randomBytes(2 * 1024 * 1024);
  const [server] = await servers(t, startServer((s) => s.end(payload)));
  const pool = new ReadBufferPool(3 * SMALL_READ_BUFFER);
  const proxy = await startProxy(t, { backends: [backend(server!.port)], readBuffers: pool });
  const fetch = () =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const c = net.connect(proxy.port, LOOPBACK);
      c.on('error', reject);
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('close', () => resolve(Buffer.concat(chunks)));
    });
  // Four connections at once want eight buffers; three exist.
  const got = await Promise.all([fetch(), fetch(), fetch(), fetch()]);
  for (const g of got) assert.equal(sha(g), sha(payload));
  await waitFor(() => pool.stats().inUse === 0);
  assert.ok(pool.stats().bytes <= 3 * SMALL_READ_BUFFER);
});

test('ReadBufferPool: a byte cap over both sizes; free buffers of the other size make room', () => {
  let refusals = 0;
  const pool = new ReadBufferPool(LARGE_READ_BUFFER + SMALL_READ_BUFFER, () => refusals++);
  const small = pool.take()!;
  const large = pool.take(LARGE_READ_BUFFER)!;
  assert.equal(pool.take(), undefined);
  pool.give(small);
  pool.give(large);
  // Free buffers are reused as they are.
  assert.equal(pool.take(), small);
  assert.equal(pool.take(LARGE_READ_BUFFER), large);
  pool.give(large);
  pool.give(small);
  // A second large one: the free small one is released, and still there is no room.
  assert.equal(pool.take(LARGE_READ_BUFFER), large);
  assert.equal(pool.take(LARGE_READ_BUFFER), undefined);
  pool.drop(large); // held by a write: gone from the count
  assert.equal(pool.take(LARGE_READ_BUFFER)?.length, LARGE_READ_BUFFER);
  assert.deepEqual(pool.stats(), { allocated: 3, inUse: 1, free: 0, bytes: LARGE_READ_BUFFER });
  assert.equal(refusals, 2, 'each refusal is reported');
});
