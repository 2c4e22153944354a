// Read buffers reused across connections. A stream socket reads into a fresh 64 KB ArrayBuffer
// every time; at ~1 GB/s that is external memory V8 frees only by a full mark-compact, and it ran
// one every ~60 ms ("GC in old space requested"), a quarter of the agent's CPU in a bulk
// transfer. A relay (relay.ts) takes one buffer per direction and gives it back when its socket
// closes, so steady traffic allocates nothing. An open connection holds its buffers even while
// idle, so the bytes held are capped: past the cap, connections read through streams as before.
import type { Logger } from 'pino';
import { IntervalLog } from './limits.ts';

/** What a relay reads into first: libuv's own read size for a stream. */
export const SMALL_READ_BUFFER = 64 * 1024;

/**
 * What a relay moves to once a read fills its buffer (a bulk transfer): fewer, larger reads
 * and writes (measured: one stream 10.5 → 12 Gbit/s, a 4 MB transfer 4.5 → 3.9 ms).
 */
export const LARGE_READ_BUFFER = 256 * 1024;

/** Default cap: 32 MB of buffers per thread (256 connections relayed both ways at 64 KB). */
export const DEFAULT_READ_BUFFER_BYTES = 32 * 1024 * 1024;

export class ReadBufferPool {
  readonly #free = new Map<number, Buffer[]>();
  readonly #capacityBytes: number;
  readonly #onCapReached: (() => void) | undefined;
  /** Bytes of the buffers handed out and not given back or dropped, plus the free ones. */
  #bytes = 0;
  #allocated = 0;
  #inUse = 0;

  /**
   * capacityBytes: bytes of buffers alive at once, in use or free. onCapReached: called when a
   * buffer is refused for the cap (a connection then reads through streams), to tell the operator.
   */
  constructor(capacityBytes = DEFAULT_READ_BUFFER_BYTES, onCapReached?: () => void) {
    this.#capacityBytes = capacityBytes;
    this.#onCapReached = onCapReached;
  }

  /** A buffer of `size` bytes, or undefined when that would pass the cap. */
  take(size = SMALL_READ_BUFFER): Buffer | undefined {
    let buf = this.#free.get(size)?.pop();
    if (buf === undefined) {
      // Free buffers of another size make room first.
      for (const [other, list] of this.#free) {
        while (this.#bytes + size > this.#capacityBytes && list.length > 0) {
          list.pop();
          this.#bytes -= other;
        }
      }
      if (this.#bytes + size > this.#capacityBytes) {
        this.#onCapReached?.();
        return undefined;
      }
      buf = Buffer.allocUnsafeSlow(size);
      this.#bytes += size;
      this.#allocated++;
    }
    this.#inUse++;
    return buf;
  }

  /** Back for reuse: nothing reads into it or writes from it any more. */
  give(buf: Buffer): void {
    this.#inUse--;
    const list = this.#free.get(buf.length);
    if (list) list.push(buf);
    else this.#free.set(buf.length, [buf]);
  }

  /** Left to the GC (a queued write still points into it): it no longer counts. */
  drop(buf: Buffer): void {
    this.#inUse--;
    this.#bytes -= buf.length;
  }

  /** Buffers allocated so far, in use now, kept free now; bytes counted against the cap. */
  stats(): { allocated: number; inUse: number; free: number; bytes: number } {
    let free = 0;
    for (const list of this.#free.values()) free += list.length;
    return { allocated: this.#allocated, inUse: this.#inUse, free, bytes: this.#bytes };
  }
}

/** A thread's pool with the default cap, warning at most once a minute while the cap turns buffers down. */
export function readBufferPool(log: Logger): ReadBufferPool {
  const capLog = new IntervalLog(60_000);
  return new ReadBufferPool(DEFAULT_READ_BUFFER_BYTES, () => {
    const refused = capLog.record();
    if (refused !== undefined) {
      log.warn({ capBytes: DEFAULT_READ_BUFFER_BYTES, refused }, 'relay read buffers at their cap: connections read through streams or smaller buffers (slower bulk transfers)');
    }
  });
}
