// Read buffers reused across connections. A stream socket reads into a fresh 64 KB ArrayBuffer
// every time; at ~1 GB/s that is external memory V8 frees only by a full mark-compact, and it ran
// one every ~60 ms ("GC in old space requested"), a quarter of the agent's CPU in a bulk
// transfer. A relay (relay.ts) takes one buffer per direction and gives it back when its socket
// closes, so steady traffic allocates nothing. An open connection holds its buffers even while
// idle, so their number is capped: past the cap, connections read through streams as before.

/** libuv's read size for a stream: one read never returns more. */
export const READ_BUFFER_SIZE = 64 * 1024;

/** Default cap: 512 × 64 KB = 32 MB per thread, i.e. 256 connections relayed both ways at once. */
export const DEFAULT_READ_BUFFERS = 512;

export class ReadBufferPool {
  readonly #free: Buffer[] = [];
  readonly #capacity: number;
  #inUse = 0;
  #allocated = 0;

  /** capacity: buffers alive at once, in use or free (64 KB each). */
  constructor(capacity = DEFAULT_READ_BUFFERS) {
    this.#capacity = capacity;
  }

  /** A buffer, or undefined when `capacity` are alive already. */
  take(): Buffer | undefined {
    let buf = this.#free.pop();
    if (buf === undefined) {
      if (this.#inUse >= this.#capacity) return undefined;
      buf = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
      this.#allocated++;
    }
    this.#inUse++;
    return buf;
  }

  /** Back for reuse: nothing reads into it or writes from it any more. */
  give(buf: Buffer): void {
    this.#inUse--;
    this.#free.push(buf);
  }

  /** Left to the GC (a queued write still points into it): it no longer counts. */
  drop(): void {
    this.#inUse--;
  }

  /** Buffers allocated so far, in use now, kept free now: for tests and diagnosis. */
  stats(): { allocated: number; inUse: number; free: number } {
    return { allocated: this.#allocated, inUse: this.#inUse, free: this.#free.length };
  }
}
