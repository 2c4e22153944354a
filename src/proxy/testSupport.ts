// Loopback TCP fixtures shared by the proxy tests (not used by production code).
import net from 'node:net';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import type { Backend } from '../model/types.ts';
import { TcpProxyPort, type TcpProxyPortOptions } from './tcpPort.ts';

export const LOOPBACK = '127.0.0.1';

export interface TestServer {
  port: number;
  /** Server-side sockets currently open. */
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/** A loopback server; close() also destroys its open sockets. */
export async function startServer(onConnection: (s: net.Socket) => void, allowHalfOpen = false): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Answers every connection with its name, then closes. */
export function namedServer(name: string): Promise<TestServer> {
  return startServer((s) => s.end(name));
}

/** Echoes each chunk back prefixed with "name:". */
export function prefixEchoServer(name: string): Promise<TestServer> {
  return startServer((s) => s.on('data', (d) => s.write(`${name}:${d.toString()}`)));
}

/**
 * A loopback port that refuses connections and keeps refusing them. A port that was free a
 * moment ago is not enough: test files run in parallel processes, and another one's listen(0)
 * can take it (a CI run once dialled a live server through such a "dead" port). Ports below
 * 1024 lie outside the ephemeral range listen(0) draws from and no test binds them; each is
 * checked to refuse before it is handed out, and none is handed out twice in a process.
 */
export async function closedPort(): Promise<number> {
  while (nextRefusedPort >= 600) {
    const port = nextRefusedPort--;
    if (await refuses(port)) return port;
  }
  throw new Error(`no port below 1024 on ${LOOPBACK} refuses connections`);
}
let nextRefusedPort = 1023;

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: LOOPBACK, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

export function backend(port: number, overrides: Partial<Backend> = {}): Backend {
  return { ip: LOOPBACK, port, ready: true, serving: true, terminating: false, ...overrides };
}

export interface Exchange {
  data: string;
  error?: NodeJS.ErrnoException;
  ms: number;
}

/** Connects, optionally sends and half-closes, and collects everything until the connection ends. */
export function exchange(port: number, send?: string): Promise<Exchange> {
  const start = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    const s = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    s.on('data', (d) => chunks.push(d));
    s.on('error', (e) => (error = e));
    s.on('connect', () => {
      if (send !== undefined) s.end(send);
    });
    s.on('end', () => s.end());
    s.on('close', () =>
      resolve({
        data: Buffer.concat(chunks).toString(),
        ...(error !== undefined && { error }),
        ms: performance.now() - start,
      }),
    );
  });
}

/** An open client connection for request/response rounds. */
export async function openClient(port: number): Promise<{ socket: net.Socket; ask(msg: string): Promise<string> }> {
  const socket = net.connect({ host: LOOPBACK, port });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    ask: (msg) =>
      new Promise((resolve, reject) => {
        socket.once('data', (d) => resolve(d.toString()));
        socket.once('close', () => reject(new Error('closed before answer')));
        socket.write(msg);
      }),
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A proxy port on loopback for one test; closed (and its connections destroyed) when the test ends. */
export async function startProxy(t: TestContext, opts: Partial<TcpProxyPortOptions>): Promise<TcpProxyPort> {
  const port = new TcpProxyPort({ id: 'test/svc:p/TCP', logger: pino({ level: 'silent' }), host: LOOPBACK, ...opts });
  await port.listen();
  t.after(async () => {
    port.destroyConnections();
    await port.close();
  });
  return port;
}

/** Waits for test servers to start and closes them when the test ends. */
export async function servers(t: TestContext, ...started: Promise<TestServer>[]): Promise<TestServer[]> {
  const all = await Promise.all(started);
  t.after(() => Promise.all(all.map((s) => s.close())));
  return all;
}
