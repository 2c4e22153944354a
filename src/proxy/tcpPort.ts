// One user-space TCP listener for one proxied service port: every accepted connection is
// spliced to a backend chosen by the balancer, failing over to the next one if a dial fails.
import net from 'node:net';
import type { Logger } from 'pino';
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';
import { usableBackends } from './backends.ts';
import type { Balancer } from './balancer.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

/** Opens a (not yet connected) socket to a backend; injectable so tests can simulate black holes. */
export type ConnectFn = (backend: Backend) => net.Socket;

export const defaultConnect: ConnectFn = (b) => net.connect({ host: b.ip, port: b.port, allowHalfOpen: true });

export interface TcpProxyPortOptions {
  /** For logs, e.g. "default/web:http/TCP". */
  id: string;
  logger: Logger;
  /** Bind address, default '0.0.0.0'. */
  host?: string;
  /** 0 (default) lets the OS choose. */
  port?: number;
  /** Per-attempt dial timeout, default 2000 ms. */
  connectTimeoutMs?: number;
  backends?: readonly Backend[];
  balancer?: Balancer;
  connect?: ConnectFn;
  /** Minimum interval between dial-failure warnings, default 10 s; failures in between are counted. */
  warnIntervalMs?: number;
}

export interface TcpProxyCounters {
  /** Connections accepted from clients. */
  accepted: number;
  /** Connections currently open (dialing or spliced). */
  active: number;
  /** Connections reset because no backend was usable or every dial failed. */
  failed: number;
  /** Bytes received from clients. */
  bytesIn: number;
  /** Bytes received from backends (and forwarded to clients). */
  bytesOut: number;
  /** Dial attempts that failed (refused, unreachable, timed out). */
  dialErrors: number;
}

interface Connection {
  client: net.Socket;
  upstream?: net.Socket;
}

export class TcpProxyPort {
  readonly id: string;
  #log: Logger;
  #host: string;
  #port: number;
  #connectTimeoutMs: number;
  #balancer: Balancer;
  #connect: ConnectFn;
  #server: net.Server;
  #conns = new Set<Connection>();
  #counters: TcpProxyCounters = { accepted: 0, active: 0, failed: 0, bytesIn: 0, bytesOut: 0, dialErrors: 0 };
  #configured: readonly Backend[] = [];
  #warnIntervalMs: number;
  #lastWarnAt = -Infinity;
  #suppressedFailures = 0;

  constructor(opts: TcpProxyPortOptions) {
    this.id = opts.id;
    this.#log = opts.logger;
    this.#host = opts.host ?? '0.0.0.0';
    this.#port = opts.port ?? 0;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
    this.#balancer = opts.balancer ?? new RoundRobinBalancer();
    this.#connect = opts.connect ?? defaultConnect;
    this.#warnIntervalMs = opts.warnIntervalMs ?? 10_000;
    this.update(opts.backends ?? []);
    // pauseOnConnect: nothing is read from the client until the upstream is connected, so
    // no data is lost and none is buffered beyond the kernel's socket buffers.
    this.#server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (c) => {
      this.#accept(c);
    });
  }

  /** Starts listening; resolves the bound port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#host, port: this.#port }, () => {
        this.#server.off('error', onError);
        // Errors before this point reject listen(); the caller reports them.
        this.#server.on('error', (err) => this.#log.error({ err, proxyPort: this.id }, 'proxy listener error'));
        resolve(this.port);
      });
    });
  }

  /** The bound port (0 before listen()). */
  get port(): number {
    const addr = this.#server.address();
    return addr !== null && typeof addr === 'object' ? addr.port : 0;
  }

  /** Applies a new backend list to future connections; open connections are untouched. */
  update(backends: readonly Backend[]): void {
    this.#configured = [...backends];
    this.#balancer.update(usableBackends(backends));
  }

  /** The backends as last given, and the usable ones traffic goes to. */
  backends(): { configured: readonly Backend[]; usable: readonly Backend[] } {
    return { configured: this.#configured, usable: this.#balancer.backends() };
  }

  /** Counters; byte counts include the connections still open. */
  counters(): TcpProxyCounters {
    const c = { ...this.#counters };
    for (const conn of this.#conns) {
      c.bytesIn += conn.client.bytesRead;
      c.bytesOut += conn.upstream?.bytesRead ?? 0;
    }
    return c;
  }

  /** Bytes queued in the proxy's own socket write buffers, to observe backpressure. */
  bufferedBytes(): number {
    let n = 0;
    for (const conn of this.#conns) n += conn.client.writableLength + (conn.upstream?.writableLength ?? 0);
    return n;
  }

  /**
   * Stops accepting; resolves once the listening socket is closed (the port refuses from
   * then on). Open connections carry on until they end; see destroyConnections().
   */
  close(): Promise<void> {
    if (!this.#server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      // server.close()'s callback waits for every open connection, so do not use it: the
      // listening fd is closed synchronously, the next turn of the loop is enough.
      this.#server.close();
      setImmediate(resolve);
    });
  }

  /** Resets every open connection (both sides). */
  destroyConnections(): void {
    for (const conn of this.#conns) {
      reset(conn.client);
      if (conn.upstream !== undefined) reset(conn.upstream);
    }
  }

  #accept(client: net.Socket): void {
    this.#counters.accepted++;
    this.#counters.active++;
    const conn: Connection = { client };
    this.#conns.add(conn);
    client.on('error', (err) => this.#log.debug({ err, proxyPort: this.id }, 'client socket error'));
    let open = 2; // client and upstream; the upstream counts as closed if never connected
    const closed = () => {
      if (--open > 0) return;
      this.#conns.delete(conn);
      this.#counters.active--;
      this.#counters.bytesIn += client.bytesRead;
      this.#counters.bytesOut += conn.upstream?.bytesRead ?? 0;
    };
    client.once('close', closed);
    void this.#dial(client).then((upstream) => {
      if (upstream === undefined) {
        closed();
        return;
      }
      conn.upstream = upstream;
      if (upstream.destroyed) {
        // Died between connect and now: its 'close' may already be past.
        reset(client);
        closed();
        return;
      }
      upstream.once('close', closed);
      if (client.destroyed) {
        reset(upstream);
        return;
      }
      splice(client, upstream);
    });
  }

  /** Dials the candidates in turn; resolves the connected upstream, or undefined after resetting the client. */
  async #dial(client: net.Socket): Promise<net.Socket | undefined> {
    const clientIp = client.remoteAddress ?? '';
    const candidates = this.#balancer.candidates(clientIp);
    if (candidates.length === 0) {
      this.#counters.failed++;
      this.#log.debug({ proxyPort: this.id, client: clientIp }, 'no usable backend, resetting client');
      reset(client);
      return undefined;
    }
    for (const backend of candidates) {
      if (client.destroyed) return undefined;
      const result = await this.#dialOne(backend, client);
      if (result instanceof net.Socket) {
        this.#balancer.dialSucceeded(clientIp, backend);
        return result;
      }
      if (client.destroyed) return undefined;
      this.#counters.dialErrors++;
      this.#balancer.dialFailed(clientIp, backend);
      this.#log.debug({ proxyPort: this.id, backend: backendId(backend), err: result }, 'backend dial failed');
    }
    this.#counters.failed++;
    this.#warnAllFailed(candidates.length);
    reset(client);
    return undefined;
  }

  #dialOne(backend: Backend, client: net.Socket): Promise<net.Socket | Error> {
    return new Promise((resolve) => {
      let sock: net.Socket;
      try {
        sock = this.#connect(backend);
      } catch (err) {
        resolve(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      // Stays attached: a late error on an abandoned attempt must not become uncaught.
      sock.on('error', () => {});
      const finish = (err: Error | undefined) => {
        clearTimeout(timer);
        sock.off('connect', onConnect);
        sock.off('error', onError);
        client.off('close', onClientClose);
        if (err !== undefined) {
          sock.destroy();
          resolve(err);
        } else {
          resolve(sock);
        }
      };
      const onConnect = () => finish(undefined);
      const onError = (err: Error) => finish(err);
      const onClientClose = () => finish(new Error('client went away while dialing'));
      const timer = setTimeout(
        () => finish(new Error(`connect timeout after ${this.#connectTimeoutMs} ms`)),
        this.#connectTimeoutMs,
      );
      sock.once('connect', onConnect);
      sock.once('error', onError);
      client.once('close', onClientClose);
    });
  }

  /** One warning per burst of failures, so a dead service cannot flood the log. */
  #warnAllFailed(attempts: number): void {
    const now = performance.now();
    if (now - this.#lastWarnAt < this.#warnIntervalMs) {
      this.#suppressedFailures++;
      return;
    }
    this.#log.warn(
      { proxyPort: this.id, attempts, suppressed: this.#suppressedFailures },
      'every backend dial failed, connection reset',
    );
    this.#lastWarnAt = now;
    this.#suppressedFailures = 0;
  }
}

/**
 * Splices two connected sockets. pipe() gives backpressure and turns one side's end (FIN)
 * into end() of the other's write side, which is the half-close; each socket closes itself
 * once both of its directions are done (allowHalfOpen + autoDestroy). An error (e.g. RST)
 * on one side resets the other, so nothing is leaked and the peer learns of the failure.
 */
function splice(client: net.Socket, upstream: net.Socket): void {
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  for (const [a, b] of [
    [client, upstream],
    [upstream, client],
  ] as const) {
    a.once('close', (hadError) => {
      // Closed before its read side ended: an abort (error, reset, destroy), pass it on.
      if (hadError || !a.readableEnded) reset(b);
      // A clean close: pipe has already ended b's write side; b closes once it has flushed.
      else if (!b.destroyed && !b.writableEnded) b.end();
    });
    a.pipe(b);
  }
}

/** Closes with a TCP RST, so the peer sees ECONNRESET at once instead of a clean EOF. */
function reset(sock: net.Socket): void {
  if (sock.destroyed) return;
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}
