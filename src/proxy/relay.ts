// One direction of a proxied connection, read into a pooled buffer (readBuffers.ts) and written
// to the other socket. A buffer is read into again only once the socket it was written to holds
// none of it (the write went out at once, as it mostly does); otherwise reads move to another
// buffer, and the held one goes back to the pool once that socket's queue is empty (a slow
// client, the common case at the edge, would otherwise cost a buffer per stall). Backpressure
// pauses the reads until 'drain'; the end of the reads ends the other socket's write side (the
// half-close), as pipe() does.
import net from 'node:net';
import { LARGE_READ_BUFFER, type ReadBufferPool } from './readBuffers.ts';
import { enableUserBuffer } from './userBuffer.ts';

const kReads = Symbol('pooledReads');

type ReadingSocket = net.Socket & { [kReads]?: PooledReads };

/** The reads of one socket into pooled buffers, relayed to `to` once attached. */
class PooledReads {
  readonly #pool: ReadBufferPool;
  #buffer: Buffer;
  /** Whether #buffer counts in the pool (not when allocated past its cap). */
  #pooled = true;
  #from: net.Socket | undefined;
  #to: net.Socket | undefined;
  /** Bytes read before attach() (a server speaking first in the tick of its connect). */
  #early: Buffer[] = [];
  /** Pooled buffers that queued writes of `to` still point into. */
  #held: Buffer[] = [];

  constructor(pool: ReadBufferPool, first: Buffer) {
    this.#pool = pool;
    this.#buffer = first;
  }

  /** Reads for one socket, or undefined when the pool is at its cap. */
  static create(pool: ReadBufferPool): PooledReads | undefined {
    const first = pool.take();
    return first === undefined ? undefined : new PooledReads(pool, first);
  }

  readonly buffer = (): Buffer => this.#buffer;

  readonly callback = (n: number, buf: Buffer): boolean => {
    const to = this.#to;
    if (to === undefined) {
      this.#early.push(Buffer.from(buf.subarray(0, n)));
      this.#from?.pause();
      return true;
    }
    if (to.destroyed || to.writableEnded) return true; // nowhere to go: dropped, as pipe() does
    if (this.#held.length > 0 && to.writableLength === 0) this.#giveHeld();
    const more = to.write(buf.subarray(0, n));
    // A full read: a bulk transfer, worth larger reads. Still queued: the write points into
    // this buffer, so the next read needs another one either way.
    const grow = n === buf.length && buf.length < LARGE_READ_BUFFER;
    if (grow || to.writableLength > 0) this.#replace(to.writableLength > 0, grow ? LARGE_READ_BUFFER : buf.length);
    // With user buffers, pause() and resume() stop and start the reads themselves.
    if (!more) this.#from?.pause();
    return true;
  };

  /** Moves the reads to another buffer of `size` (past the pool's cap: a fresh one, or the same when it is free). */
  #replace(held: boolean, size: number): void {
    const old = this.#buffer;
    const next = this.#pool.take(size);
    if (next === undefined && !held) return; // no room to grow: keep reading into this one
    if (this.#pooled) {
      if (held) this.#held.push(old);
      else this.#pool.give(old);
    }
    this.#pooled = next !== undefined;
    this.#buffer = next ?? Buffer.allocUnsafeSlow(old.length);
  }

  bind(from: net.Socket): void {
    this.#from = from;
    // Closed: nothing reads into the buffer now, and it never holds a queued write.
    from.once('close', () => this.release());
  }

  /** `to` has written everything queued: the held buffers are free. */
  #giveHeld(): void {
    for (const buf of this.#held) this.#pool.give(buf);
    this.#held = [];
  }

  /** Returns the buffer: the socket is closed, or its reads never started. */
  release(): void {
    if (this.#pooled) this.#pool.give(this.#buffer);
    this.#pooled = false;
    // Held buffers go back once `to` has sent everything; else writes may still point into
    // them, and they are left to the GC.
    if (this.#to !== undefined && !this.#to.destroyed && this.#to.writableLength === 0) this.#giveHeld();
    for (const buf of this.#held) this.#pool.drop(buf);
    this.#held = [];
  }

  attach(to: net.Socket): void {
    const from = this.#from!;
    this.#to = to;
    for (const chunk of this.#early.splice(0)) to.write(chunk);
    to.on('drain', () => {
      if (this.#held.length > 0 && to.writableLength === 0) this.#giveHeld();
      if (!from.destroyed) from.resume();
    });
    from.once('end', () => {
      if (to.destroyed || to.writableEnded) return;
      // Both ways done and nothing queued: a close sends the FIN a shutdown would, one syscall
      // and one stream round fewer per connection.
      if (to.readableEnded && to.writableLength === 0) to.destroy();
      else to.end();
    });
    if (from.isPaused() && to.writableLength === 0) from.resume();
  }
}

/** net.connect, reading into pooled buffers (the `onread` option) for relay(); plain when the pool is at its cap. */
export function connectPooled(options: net.NetConnectOpts, pool: ReadBufferPool): net.Socket {
  const reads = PooledReads.create(pool);
  if (reads === undefined) return net.connect(options);
  const socket = net.connect({ ...options, onread: { buffer: reads.buffer, callback: reads.callback } } as net.NetConnectOpts) as ReadingSocket;
  reads.bind(socket);
  socket[kReads] = reads;
  return socket;
}

/**
 * Makes an accepted socket (not reading yet: pauseOnConnect) read into pooled buffers for
 * relay(); false when the pool is at its cap or this Node does not allow it (it then keeps
 * stream reads).
 */
export function readPooled(socket: net.Socket, pool: ReadBufferPool, allowed = true): boolean {
  const reads = PooledReads.create(pool);
  if (reads === undefined) return false;
  if (!enableUserBuffer(socket, reads, allowed)) {
    reads.release();
    return false;
  }
  reads.bind(socket);
  (socket as ReadingSocket)[kReads] = reads;
  return true;
}

/**
 * Sends what `from` reads to `to`, with backpressure, and ends `to`'s write side when `from`'s
 * read side ends: through pooled buffers when `from` reads into them, else by pipe().
 */
export function relay(from: net.Socket, to: net.Socket): void {
  const reads = (from as ReadingSocket)[kReads];
  if (reads === undefined) from.pipe(to);
  else reads.attach(to);
}
