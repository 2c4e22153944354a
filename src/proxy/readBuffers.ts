// Read buffers reused across connections. A stream socket reads into a fresh 64 KB ArrayBuffer
// every time; at ~1 GB/s that is external memory V8 frees only by a full mark-compact, and it ran
// one every ~60 ms ("GC in old space requested"), a quarter of the agent's CPU in a bulk
// transfer. A relay (relay.ts) takes one buffer from here per direction and gives it back when
// its socket closes, so steady traffic allocates nothing.

/** libuv's read size for a stream: one read never returns more. */
export const READ_BUFFER_SIZE = 64 * 1024;

export class ReadBufferPool {
  readonly #free: Buffer[] = [];
  readonly #maxFree: number;
  #allocated = 0;

  /** maxFree: buffers kept for reuse (64 KB each); more are left to the GC. */
  constructor(maxFree = 256) {
    this.#maxFree = maxFree;
  }

  take(): Buffer {
    const buf = this.#free.pop();
    if (buf !== undefined) return buf;
    this.#allocated++;
    return Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  }

  /** Only for a buffer nothing reads into or writes from any more. */
  give(buf: Buffer): void {
    if (this.#free.length < this.#maxFree) this.#free.push(buf);
  }

  /** Buffers allocated so far, and kept free now: for tests and diagnosis. */
  stats(): { allocated: number; free: number } {
    return { allocated: this.#allocated, free: this.#free.length };
  }
}
