// One user-space TCP listener for one proxied service port: every accepted connection is
// spliced to a backend chosen by the balancer, failing over to the next one if a dial fails.
import net from 'node:net';
import type { Logger } from 'pino';
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';
import { usableBackends } from './backends.ts';
import type { Balancer } from './balancer.ts';
import { EjectionTracker } from './health.ts';
import { ConnectionBudget, IntervalLog } from './limits.ts';
import { ReadBufferPool } from './readBuffers.ts';
import { connectPooled, readPooled, relay } from './relay.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

/** Opens a (not yet connected) socket to a backend; injectable so tests can simulate black holes. */
export type ConnectFn = (backend: Backend) => net.Socket;

/** How the proxy dials a backend: half-open allowed (the half-close is relayed), no Nagle. */
const dialOptions = (b: Backend): net.NetConnectOpts => ({ host: b.ip, port: b.port, allowHalfOpen: true, noDelay: true });

export const defaultConnect: ConnectFn = (b) => net.connect(dialOptions(b));

/** Failover, health, timeout and limit settings (config `proxy.*`); the same for every port. */
export interface TcpProxyTuning {
  /** Per-attempt dial timeout, default 2000 ms. */
  connectTimeoutMs?: number;
  /**
   * Dial attempts per client connection, cycling through the candidates (so one endpoint is
   * retried); default one attempt per candidate.
   */
  maxDialAttempts?: number;
  /** Pause between two dial attempts, default 0. */
  dialBackoffMs?: number;
  /** Passive health: a failed endpoint is skipped this long, doubling; 0/unset (default) = off. */
  ejectionTimeMs?: number;
  /** Cap of the doubling, default 12 × ejectionTimeMs. */
  maxEjectionTimeMs?: number;
  /** Close a connection idle in both directions this long; 0 (default) = never. */
  idleTimeoutMs?: number;
  /** Close the connections of an endpoint removed by update() after this long; 0 (default) = never. */
  removedEndpointGracePeriodMs?: number;
  /** Concurrent connections on this port; beyond it new clients are reset. Default unlimited. */
  maxConnections?: number;
}

export interface TcpProxyPortOptions extends TcpProxyTuning {
  /** For logs, e.g. "default/web:http/TCP". */
  id: string;
  logger: Logger;
  /** Bind address, default '0.0.0.0'. */
  host?: string;
  /** 0 (default) lets the OS choose. */
  port?: number;
  /** The limit over all ports: one budget shared by every port of a manager. */
  connectionBudget?: ConnectionBudget;
  /**
   * This port's limit as a budget (replaces maxConnections), so listeners of the same port in
   * several worker threads share it.
   */
  portBudget?: ConnectionBudget;
  /** Bind with SO_REUSEPORT, so worker threads can listen on the same port. */
  reusePort?: boolean;
  /** Monotonic clock (ms) for ejections and log throttling; injectable for tests. */
  now?: () => number;
  backends?: readonly Backend[];
  balancer?: Balancer;
  connect?: ConnectFn;
  /** Minimum interval between dial-failure warnings, default 10 s; failures in between are counted. */
  warnIntervalMs?: number;
  /** Read buffers shared by the ports of a manager (default: one pool for this port). */
  readBuffers?: ReadBufferPool;
  /**
   * Relay through pooled read buffers (relay.ts), default true; false keeps stream reads and
   * pipe(), which is also what a Node without user-buffer reads on accepted sockets gets.
   */
  pooledReads?: boolean;
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
  /** Clients reset at once because the port's or the total connection limit was reached. */
  refused: number;
  /** Times an endpoint was ejected (passive health). */
  ejections: number;
  /** Connections closed by the idle timeout. */
  idleClosed: number;
}

interface Connection {
  client: net.Socket;
  upstream?: net.Socket;
  /** The connected backend (its id is only built when a grace period needs it). */
  backend?: Backend;
}

const kOwner = Symbol('tcpProxyPort');
type OwnedServer = net.Server & { [kOwner]: TcpProxyPort };

export class TcpProxyPort {
  readonly id: string;
  #log: Logger;
  #host: string;
  #port: number;
  #connectTimeoutMs: number;
  #balancer: Balancer;
  #connect: ConnectFn | undefined;
  #server: net.Server;
  #boundPort = 0;
  /** Open connections; made with the first one (most of a node's many ports stay idle). */
  #conns: Set<Connection> | undefined;
  #counters: TcpProxyCounters = {
    accepted: 0,
    active: 0,
    failed: 0,
    bytesIn: 0,
    bytesOut: 0,
    dialErrors: 0,
    refused: 0,
    ejections: 0,
    idleClosed: 0,
  };
  #configured: readonly Backend[] = [];
  #warnIntervalMs: number;
  #lastWarnAt = -Infinity;
  #suppressedFailures = 0;
  #maxDialAttempts: number | undefined;
  #dialBackoffMs: number;
  #health: EjectionTracker | undefined;
  #idleTimeoutMs: number;
  #graceMs: number;
  /** One timer per removed endpoint (ip:port) whose connections are closed when it fires. */
  #graceTimers: Map<string, NodeJS.Timeout> | undefined;
  #maxConnections: number;
  #budget: ConnectionBudget | undefined;
  #portBudget: ConnectionBudget | undefined;
  #reusePort: boolean;
  /** Made on the first refusal (most ports never refuse). */
  #refusedLog: IntervalLog | undefined;
  #now: (() => number) | undefined;
  #readBuffers: ReadBufferPool;
  #pooledReads: boolean;

  constructor(opts: TcpProxyPortOptions) {
    this.id = opts.id;
    this.#log = opts.logger;
    this.#host = opts.host ?? '0.0.0.0';
    this.#port = opts.port ?? 0;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
    this.#balancer = opts.balancer ?? new RoundRobinBalancer();
    this.#readBuffers = opts.readBuffers ?? new ReadBufferPool();
    this.#pooledReads = opts.pooledReads ?? true;
    // Undefined: dial with pooled reads (a plain dial at the pool's cap); no closure per port.
    this.#connect = opts.connect ?? (this.#pooledReads ? undefined : defaultConnect);
    this.#warnIntervalMs = opts.warnIntervalMs ?? 10_000;
    this.#maxDialAttempts = opts.maxDialAttempts;
    this.#dialBackoffMs = opts.dialBackoffMs ?? 0;
    const ejectionMs = opts.ejectionTimeMs ?? 0;
    if (ejectionMs > 0) {
      this.#health = new EjectionTracker({
        baseMs: ejectionMs,
        maxMs: opts.maxEjectionTimeMs ?? 12 * ejectionMs,
        ...(opts.now !== undefined && { now: opts.now }),
      });
    }
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 0;
    this.#graceMs = opts.removedEndpointGracePeriodMs ?? 0;
    this.#maxConnections = opts.maxConnections ?? Infinity;
    this.#budget = opts.connectionBudget;
    this.#portBudget = opts.portBudget;
    this.#reusePort = opts.reusePort ?? false;
    this.#now = opts.now;
    this.update(opts.backends ?? []);
    // pauseOnConnect: nothing is read from the client until the upstream is connected, so
    // no data is lost and none is buffered beyond the kernel's socket buffers.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }) as OwnedServer;
    server[kOwner] = this;
    server.on('connection', TcpProxyPort.#onConnection);
    this.#server = server;
  }

  // The servers' listeners, shared by every port (a node may have 10,000): no closures per port.
  static readonly #onConnection = function (this: OwnedServer, client: net.Socket): void {
    this[kOwner].#accept(client);
  };

  static readonly #onListenerError = function (this: OwnedServer, err: Error): void {
    const port = this[kOwner];
    port.#log.error({ err, proxyPort: port.id }, 'proxy listener error');
  };

  /** Starts listening; resolves the bound port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#host, port: this.#port, ...(this.#reusePort && { reusePort: true }) }, () => {
        this.#server.off('error', onError);
        // Errors before this point reject listen(); the caller reports them.
        this.#server.on('error', TcpProxyPort.#onListenerError);
        const addr = this.#server.address();
        this.#boundPort = addr !== null && typeof addr === 'object' ? addr.port : 0;
        resolve(this.port);
      });
    });
  }

  /** The bound port (0 before listen() and after close()); kept, since address() is a syscall and every sync asks. */
  get port(): number {
    return this.#server.listening ? this.#boundPort : 0;
  }

  /**
   * Applies a new backend list to future connections. Open connections are untouched, except
   * that with a grace period those of a removed endpoint are closed once it has passed.
   */
  update(backends: readonly Backend[]): void {
    const previous = this.#configured;
    this.#configured = [...backends];
    this.#balancer.update(usableBackends(backends));
    this.#health?.retain(this.#configured);
    if (this.#graceMs <= 0) return;
    const before = new Set(previous.map(backendId));
    const now = new Set(this.#configured.map(backendId));
    const timers = (this.#graceTimers ??= new Map());
    for (const [id, timer] of timers) {
      if (!now.has(id)) continue;
      clearTimeout(timer); // back before its grace period ended: its connections stay
      timers.delete(id);
    }
    for (const id of before) {
      if (now.has(id) || timers.has(id)) continue;
      const timer = setTimeout(() => this.#closeRemoved(id), this.#graceMs);
      timer.unref();
      timers.set(id, timer);
    }
  }

  /** Endpoints currently ejected by passive health. */
  ejectedCount(): number {
    return this.#health?.ejectedCount() ?? 0;
  }

  /** The backends as last given, and the usable ones traffic goes to. */
  backends(): { configured: readonly Backend[]; usable: readonly Backend[] } {
    return { configured: this.#configured, usable: this.#balancer.backends() };
  }

  /** Counters; byte counts include the connections still open. */
  counters(): TcpProxyCounters {
    const c = { ...this.#counters };
    for (const conn of this.#conns ?? []) {
      c.bytesIn += conn.client.bytesRead;
      c.bytesOut += conn.upstream?.bytesRead ?? 0;
    }
    return c;
  }

  /** Bytes queued in the proxy's own socket write buffers, to observe backpressure. */
  bufferedBytes(): number {
    let n = 0;
    for (const conn of this.#conns ?? []) n += conn.client.writableLength + (conn.upstream?.writableLength ?? 0);
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
    for (const timer of this.#graceTimers?.values() ?? []) clearTimeout(timer);
    this.#graceTimers?.clear();
    for (const conn of this.#conns ?? []) {
      reset(conn.client);
      if (conn.upstream !== undefined) reset(conn.upstream);
    }
  }

  #closeRemoved(id: string): void {
    this.#graceTimers?.delete(id);
    let closed = 0;
    for (const conn of this.#conns ?? []) {
      if (conn.backend === undefined || backendId(conn.backend) !== id) continue;
      reset(conn.client);
      if (conn.upstream !== undefined) reset(conn.upstream);
      closed++;
    }
    if (closed > 0) this.#log.info({ proxyPort: this.id, backend: id, closed }, 'grace period over: closed connections of a removed endpoint');
  }

  /** Takes a slot under the port's and the total limit; false when either is full. */
  #admit(): boolean {
    let limit: 'port' | 'total' | undefined;
    if (this.#portBudget !== undefined ? !this.#portBudget.tryAcquire() : this.#counters.active >= this.#maxConnections) limit = 'port';
    else if (this.#budget !== undefined && !this.#budget.tryAcquire()) {
      this.#portBudget?.release();
      limit = 'total';
    }
    if (limit === undefined) return true;
    this.#counters.refused++;
    this.#refusedLog ??= new IntervalLog(this.#warnIntervalMs, this.#now);
    const n = this.#refusedLog.record();
    if (n !== undefined) {
      const max = limit === 'port' ? (this.#portBudget?.max ?? this.#maxConnections) : this.#budget?.max;
      this.#log.warn({ proxyPort: this.id, limit, max, refused: n }, 'connection limit reached, new clients refused');
    }
    return false;
  }

  #accept(client: net.Socket): void {
    if (!this.#admit()) {
      client.on('error', () => {});
      reset(client);
      return;
    }
    this.#counters.accepted++;
    this.#counters.active++;
    if (this.#pooledReads) readPooled(client, this.#readBuffers);
    const conn: Connection = { client };
    (this.#conns ??= new Set()).add(conn);
    client.on('error', (err) => this.#log.debug({ err, proxyPort: this.id }, 'client socket error'));
    let open = 2; // client and upstream; the upstream counts as closed if never connected
    const closed = () => {
      if (--open > 0) return;
      this.#conns?.delete(conn);
      this.#counters.active--;
      this.#budget?.release();
      this.#portBudget?.release();
      this.#counters.bytesIn += client.bytesRead;
      this.#counters.bytesOut += conn.upstream?.bytesRead ?? 0;
    };
    client.once('close', closed);
    this.#dial(client, (dialed) => {
      if (dialed === undefined) {
        closed();
        return;
      }
      const upstream = dialed.socket;
      conn.upstream = upstream;
      conn.backend = dialed.backend;
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
      if (this.#idleTimeoutMs > 0) this.#watchIdle(client, upstream);
    });
  }

  /**
   * Closes both sides once neither has moved a byte for the idle timeout. Each socket's
   * timer is refreshed by its reads and writes, and every byte is read on one side and
   * written on the other, so either timer firing means both directions were idle.
   */
  #watchIdle(client: net.Socket, upstream: net.Socket): void {
    const onIdle = () => {
      if (client.destroyed && upstream.destroyed) return;
      this.#counters.idleClosed++;
      this.#log.debug({ proxyPort: this.id, idleMs: this.#idleTimeoutMs }, 'idle connection closed');
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.setTimeout(this.#idleTimeoutMs);
      s.once('timeout', onIdle);
    }
  }

  /**
   * Dials the candidates in turn, at most maxDialAttempts times with the backoff in between;
   * calls done with the connected upstream, or undefined after resetting the client. Callbacks
   * rather than promises: this runs once per connection, and the microtask hops showed.
   */
  #dial(client: net.Socket, done: (dialed: { socket: net.Socket; backend: Backend } | undefined) => void): void {
    const clientIp = this.#balancer.usesClientIp ? (client.remoteAddress ?? '') : '';
    const candidates = this.#balancer.candidates(clientIp);
    if (candidates.length === 0) {
      this.#counters.failed++;
      this.#log.debug({ proxyPort: this.id, client: client.remoteAddress }, 'no usable backend, resetting client');
      reset(client);
      done(undefined);
      return;
    }
    // Healthy ones first in the balancer's order, then the ejected ones (see EjectionTracker.order).
    const order = this.#health?.order(candidates) ?? candidates;
    const attempts = this.#maxDialAttempts ?? order.length;
    const attempt = (i: number): void => {
      if (client.destroyed) {
        done(undefined);
        return;
      }
      const backend = order[i % order.length]!;
      this.#dialOne(backend, client, (result) => {
        if (result instanceof net.Socket) {
          this.#health?.succeeded(backend);
          this.#balancer.dialSucceeded(clientIp, backend);
          done({ socket: result, backend });
          return;
        }
        if (client.destroyed) {
          done(undefined);
          return;
        }
        this.#counters.dialErrors++;
        this.#balancer.dialFailed(clientIp, backend);
        this.#log.debug({ proxyPort: this.id, backend: backendId(backend), err: result }, 'backend dial failed');
        const ejectedMs = this.#health?.failed(backend) ?? 0;
        if (ejectedMs > 0) {
          this.#counters.ejections++;
          this.#log.info({ proxyPort: this.id, backend: backendId(backend), ejectedMs, err: result.message }, 'endpoint ejected after a failed dial');
        }
        if (i + 1 < attempts) {
          if (this.#dialBackoffMs > 0) setTimeout(attempt, this.#dialBackoffMs, i + 1);
          else attempt(i + 1);
          return;
        }
        this.#counters.failed++;
        this.#warnAllFailed(attempts);
        reset(client);
        done(undefined);
      });
    };
    attempt(0);
  }

  #dialOne(backend: Backend, client: net.Socket, done: (result: net.Socket | Error) => void): void {
    let sock: net.Socket;
    try {
      sock = this.#connect?.(backend) ?? connectPooled(dialOptions(backend), this.#readBuffers);
    } catch (err) {
      // Asynchronously, as a failed connect would be.
      process.nextTick(done, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // Stays attached: a late error on an abandoned attempt must not become uncaught.
    sock.on('error', ignore);
    const finish = (err: Error | undefined) => {
      clearTimeout(timer);
      sock.off('connect', onConnect);
      sock.off('error', onError);
      client.off('close', onClientClose);
      if (err !== undefined) {
        sock.destroy();
        done(err);
      } else {
        done(sock);
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
 * Splices two connected sockets. relay() (pooled buffers, or pipe()) gives backpressure and
 * turns one side's end (FIN) into end() of the other's write side, which is the half-close;
 * each socket closes itself once both of its directions are done (allowHalfOpen +
 * autoDestroy). An error (e.g. RST) on one side resets the other, so nothing is leaked and the
 * peer learns of the failure.
 */
function splice(client: net.Socket, upstream: net.Socket): void {
  // The client was accepted with noDelay (server option); defaultConnect dials with it too.
  // setNoDelay skips the syscall when the option is already set, as for those.
  upstream.setNoDelay(true);
  spliceOneWay(client, upstream);
  spliceOneWay(upstream, client);
}

function spliceOneWay(a: net.Socket, b: net.Socket): void {
  a.once('close', (hadError) => {
    // Closed before its read side ended: an abort (error, reset, destroy), pass it on.
    if (hadError || !a.readableEnded) reset(b);
    // A clean close: pipe has already ended b's write side; b closes once it has flushed.
    else if (!b.destroyed && !b.writableEnded) b.end();
  });
  relay(a, b);
}

function ignore(): void {}

/** Closes with a TCP RST, so the peer sees ECONNRESET at once instead of a clean EOF. */
function reset(sock: net.Socket): void {
  if (sock.destroyed) return;
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}
