// Node's user-buffer read mode (net.Socket's `onread` option) for sockets Node creates itself:
// an accepted socket cannot be given `onread`, so this does afterwards what the constructor does
// for it: mark the socket with the option's (internal) symbols and hand the buffer to its handle.
// The symbols are found on a socket made with `onread`; where any piece is missing (another Node
// version), enableUserBuffer returns false and the socket keeps stream reads. Tests run both.
import net from 'node:net';

interface Symbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

interface UserBufferHandle {
  reading?: boolean;
  useUserBuffer?: (buf: Uint8Array) => void;
}

let found: Symbols | null | undefined;

/** The symbols net.Socket keeps `onread` under; null when this Node has other internals. */
function symbols(): Symbols | null {
  if (found !== undefined) return found;
  const probe = new net.Socket({ onread: { buffer: () => Buffer.alloc(1), callback: () => true } });
  const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  probe.destroy();
  const buffer = byName.get('kBuffer');
  const callback = byName.get('kBufferCb');
  const generator = byName.get('kBufferGen');
  found = buffer && callback && generator ? { buffer, callback, generator } : null;
  return found;
}

/** Whether this Node lets accepted sockets read into user buffers (see enableUserBuffer). */
export function userBuffersSupported(): boolean {
  return symbols() !== null;
}

export interface UserBufferReads {
  /** The buffer for the next read; called after every read. */
  buffer: () => Buffer;
  /** Bytes read into buf[0, n); return true (pause() stops the reads). */
  callback: (n: number, buf: Buffer) => boolean;
}

/**
 * Switches a connected socket that is not reading yet (accepted with pauseOnConnect) to user
 * buffers: reads go to `reads.callback`, no 'data' events, and pause()/resume() stop and start
 * the reads. False (nothing changed) when this Node does not allow it.
 */
export function enableUserBuffer(socket: net.Socket, reads: UserBufferReads, allowed = true): boolean {
  const sym = allowed ? symbols() : null;
  const handle = (socket as unknown as { _handle?: UserBufferHandle })._handle;
  if (sym === null || handle === undefined || typeof handle.useUserBuffer !== 'function' || handle.reading === true) return false;
  const first = reads.buffer();
  const target = socket as unknown as Record<symbol, unknown>;
  target[sym.buffer] = first;
  target[sym.callback] = reads.callback;
  target[sym.generator] = reads.buffer;
  handle.useUserBuffer(first);
  return true;
}
