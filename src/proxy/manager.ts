// Keeps one user-space listener per proxied service port in step with the agent's desired
// state: opens listeners before the rules pointing at them exist, closes them after.
import net from 'node:net';
import type { Logger } from 'pino';
import type { Backend } from '../model/types.ts';
import { TcpProxyPort } from './tcpPort.ts';
import { readBufferPool, type ReadBufferPool } from './readBuffers.ts';
import { userBuffersSupported } from './userBuffer.ts';
import type { ConnectFn, TcpProxyCounters, TcpProxyTuning } from './tcpPort.ts';
import { ConnectionBudget } from './limits.ts';
import { UdpProxyPort } from './udpPort.ts';
import type { UdpProxyCounters } from './udpPort.ts';
import type { ProxyPortSpec, ProxyPortStatus } from './types.ts';
import { ReconfigurableBalancer, policyLabel, type BalancerOptions } from './balancers/index.ts';
import { TcpWorkerPool } from './workers/pool.ts';
import { newSharedRotation, type SharedRotation } from './roundRobin.ts';
import { addCounters } from './workers/counters.ts';
import { PortAllocator, formatPortRange, type PortRange } from './portAllocator.ts';

export interface ProxyManagerOptions {
  logger: Logger;
  /** Listener bind address, default '0.0.0.0'. */
  host?: string;
  /** Per-attempt backend dial timeout, default 2000 ms. */
  connectTimeoutMs?: number;
  /** Backend dialer, for tests. */
  connect?: ConnectFn;
  /** Clock and randomness of the balancing policies, for tests. */
  balancing?: BalancerOptions;
  /** Failover, passive health, idle timeout, grace period and per-port limit of every TCP port. */
  tcp?: TcpProxyTuning;
  /** Concurrent connections over all ports (one budget shared by them); default unlimited. */
  maxConnections?: number;
  /** Flow table of every UDP port (config udp.idleTimeout, udp.maxFlowsPerPort). */
  udp?: { idleTimeoutMs?: number; maxFlowsPerPort?: number };
  /**
   * Threads accepting TCP connections (config proxy.workers), the main thread included; default
   * 1. Above 1, each TCP port also listens in that many - 1 worker threads (SO_REUSEPORT), except
   * sessionAffinity ports, which stay on the main thread so a client's table is one table.
   */
  workers?: number;
  /**
   * Listener ports come from this range (config proxy.portRange), one allocator per protocol;
   * unset: the kernel picks them. A port that finds the range used up is not served.
   */
  portRange?: PortRange;
}

/** Per listener; `protocol` tells which counters it has. */
export type ProxyPortStats = ProxyPortStatsOf<'TCP', TcpProxyCounters> | ProxyPortStatsOf<'UDP', UdpProxyCounters>;
export type TcpPortStats = Extract<ProxyPortStats, { protocol: 'TCP' }>;
export type UdpPortStats = Extract<ProxyPortStats, { protocol: 'UDP' }>;

interface ProxyPortStatsOf<P extends 'TCP' | 'UDP', C> {
  id: string;
  portName: string;
  protocol: P;
  listenPort: number;
  counters: C;
  /** Backends as given in the last spec. */
  backends: readonly Backend[];
  /** The ones traffic goes to (ready, else serving; deduplicated). */
  usableBackends: readonly Backend[];
}

interface Entry {
  spec: ProxyPortSpec;
  port: TcpProxyPort | UdpProxyPort;
  /** The port's policy; reconfigured in place when the spec's policy or affinity changes. */
  balancer: ReconfigurableBalancer;
  /** The per-port limit shared with the worker threads (workers > 1 only). */
  portBudget?: ConnectionBudget;
  /** The round-robin rotation shared with the worker threads (workers > 1 only). */
  rotation?: SharedRotation;
}

/** Listens on the port without SO_REUSEPORT and closes again: rejects (EADDRINUSE) when anyone holds it. */
function probeTcpPort(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** Worker threads serve a TCP port unless it has session affinity (one table per port). */
const servedByWorkers = (spec: ProxyPortSpec): boolean => spec.protocol === 'TCP' && spec.sessionAffinitySeconds === undefined;

export class ProxyManager {
  #opts: ProxyManagerOptions;
  #log: Logger;
  #ports = new Map<string, Entry>();
  /** Ids in the last prepare(); the others are retired by retire(). */
  #wanted = new Set<string>();
  /** Serialises prepare/retire/close so they never interleave on the same listener. */
  #queue: Promise<unknown> = Promise.resolve();
  #budget: ConnectionBudget | undefined;
  /** Read buffers of this thread's TCP relays, one cap for all its ports. */
  #readBuffers: ReadBufferPool;
  /** TCP worker threads, started with the first TCP port when workers > 1. */
  #pool: TcpWorkerPool | undefined;
  /** Listener ports of the configured range, per protocol (TCP and UDP ports are separate spaces). */
  #allocators = new Map<'TCP' | 'UDP', PortAllocator>();
  /** Ids left unserved because the range was used up: logged once, not on every sync. */
  #unserved = new Set<string>();
  #workerRestarts = 0;
  /** The last prepare()'s specs and answer, while every spec is served and none has affinity. */
  #lastPrepared: { specs: readonly ProxyPortSpec[]; listening: ProxyPortStatus[] } | undefined;

  constructor(opts: ProxyManagerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#readBuffers = readBufferPool(this.#log);
    if (!userBuffersSupported()) {
      this.#log.warn({ node: process.version }, 'this Node lacks user-buffer reads for accepted sockets: client-to-backend bytes go through streams (slower bulk transfers)');
    }
    if (opts.maxConnections !== undefined) {
      this.#budget = this.#threads() > 0 ? ConnectionBudget.shared(opts.maxConnections) : new ConnectionBudget(opts.maxConnections);
    }
  }

  /** Worker threads wanted besides the main thread. */
  #threads(): number {
    return Math.max(0, Math.floor(this.#opts.workers ?? 1) - 1);
  }

  #workerPool(): TcpWorkerPool | undefined {
    if (this.#pool === undefined && this.#threads() > 0) {
      this.#pool = new TcpWorkerPool({
        threads: this.#threads(),
        logger: this.#log,
        tuning: this.#opts.tcp ?? {},
        ...(this.#opts.host !== undefined && { host: this.#opts.host }),
        ...(this.#opts.connectTimeoutMs !== undefined && { connectTimeoutMs: this.#opts.connectTimeoutMs }),
        ...(this.#budget !== undefined && { totalBudget: this.#budget }),
        onRestart: () => this.#workerRestarts++,
      });
      this.#log.info({ threads: this.#pool.threads + 1 }, 'TCP proxy worker threads started');
    }
    return this.#pool;
  }

  /**
   * Opens listeners for new TCP and UDP specs and updates the backends of known ones. Returns
   * where each served spec listens, in spec order. SCTP specs are not served and are left out,
   * as is a spec whose listener failed to open (logged with its id; retried next time).
   */
  prepare(specs: readonly ProxyPortSpec[]): Promise<ProxyPortStatus[]> {
    return this.#serialised(async () => {
      // The agent's resync hands the same array while nothing changed: when every spec got its
      // listener last time and none needs a sweep (affinity), there is nothing to do, and the
      // same answer keeps the agent's render cached. (A rebuild cost ~4 MB at 10,000 ports.)
      const last = this.#lastPrepared;
      if (last !== undefined && last.specs === specs) return last.listening;
      const tcp = new Map<string, ProxyPortSpec>();
      for (const spec of specs) {
        if (spec.protocol !== 'TCP' && spec.protocol !== 'UDP') {
          this.#log.debug({ proxyPort: spec.id, protocol: spec.protocol }, 'protocol not proxied yet, skipped');
          continue;
        }
        if (!tcp.has(spec.id)) tcp.set(spec.id, spec);
      }
      this.#wanted = new Set(tcp.keys());
      for (const id of this.#unserved) if (!this.#wanted.has(id)) this.#unserved.delete(id);

      const opening: Promise<void>[] = [];
      for (const spec of tcp.values()) {
        const existing = this.#ports.get(spec.id);
        if (existing !== undefined) {
          // The agent hands out the same spec object while its inputs are unchanged: nothing to
          // update (at 10,000 ports a resync would otherwise rebuild every balancer). Affinity
          // ports still get the update, which sweeps their expired clients.
          if (existing.spec === spec && spec.sessionAffinitySeconds === undefined) continue;
          existing.spec = spec;
          if (existing.balancer.configure(spec)) this.#log.info({ proxyPort: spec.id, policy: policyLabel(spec) }, 'balancing policy changed');
          existing.port.update(spec.backends);
          if (this.#pool !== undefined && existing.port instanceof TcpProxyPort) opening.push(this.#syncWorkers(existing));
          continue;
        }
        opening.push(this.#open(spec));
      }
      await Promise.all(opening);

      const out: ProxyPortStatus[] = [];
      for (const id of tcp.keys()) {
        const entry = this.#ports.get(id);
        if (entry !== undefined) out.push({ id, listenPort: entry.port.port });
      }
      const settled = out.length === tcp.size && !specs.some((s) => s.sessionAffinitySeconds !== undefined);
      this.#lastPrepared = settled ? { specs, listening: out } : undefined;
      return out;
    });
  }

  /**
   * Closes the listeners whose id was absent from the last prepare(); call once no rule
   * points at them any more. Their open connections are left to finish. Returns their ids.
   */
  retire(): Promise<string[]> {
    return this.#serialised(async () => {
      const gone = [...this.#ports.keys()].filter((id) => !this.#wanted.has(id));
      await Promise.all(gone.map((id) => this.#closePort(id)));
      return gone;
    });
  }

  /**
   * Per listener: counters and backends, for status and metrics. TCP counters include the
   * worker threads' as of the last refreshStats().
   */
  stats(): ProxyPortStats[] {
    return [...this.#ports.values()].map(({ spec, port }): ProxyPortStats => {
      const { configured, usable } = port.backends();
      const common = { id: spec.id, portName: spec.portName, listenPort: port.port, backends: configured, usableBackends: usable };
      if (port instanceof UdpProxyPort) return { ...common, protocol: 'UDP', counters: port.counters() };
      const inWorkers = this.#pool?.counters(spec.id);
      return { ...common, protocol: 'TCP', counters: inWorkers === undefined ? port.counters() : addCounters(port.counters(), inWorkers) };
    });
  }

  /** TCP worker threads restarted after they died (edgeproxy_worker_restarts_total). */
  get workerRestarts(): number {
    return this.#workerRestarts;
  }

  /** Fetches the worker threads' counters, so the next stats() is current (call before a scrape). */
  async refreshStats(): Promise<void> {
    await this.#pool?.refresh();
  }

  /**
   * Closes every listener. Open TCP connections then get up to `drainMs` to end on their own
   * (a restart of the agent need not cut requests in flight); whatever is still open after
   * that, or at once with destroyConnections, is reset.
   */
  close(opts: { destroyConnections?: boolean; drainMs?: number } = {}): Promise<void> {
    return this.#serialised(async () => {
      const ids = [...this.#ports.keys()];
      const ports = ids.map((id) => this.#ports.get(id)?.port);
      await Promise.all(ids.map((id) => this.#closePort(id)));
      if (opts.destroyConnections !== true && (opts.drainMs ?? 0) > 0) await this.#drain(ports, opts.drainMs!);
      for (const p of ports) p?.destroyConnections();
      this.#pool?.destroyConnections();
      // Ending the threads also ends their connections, as the process exit that follows would.
      const pool = this.#pool;
      this.#pool = undefined;
      await pool?.stop();
      this.#wanted = new Set();
    });
  }

  async #open(spec: ProxyPortSpec): Promise<void> {
    const pool = spec.protocol === 'TCP' ? this.#workerPool() : undefined;
    const rotation = pool !== undefined ? newSharedRotation() : undefined;
    const balancer = rotation !== undefined ? new ReconfigurableBalancer(spec, { ...this.#opts.balancing, rotation }) : this.#balancerFor(spec);
    const maxPerPort = this.#opts.tcp?.maxConnections;
    const portBudget = pool !== undefined && maxPerPort !== undefined ? ConnectionBudget.shared(maxPerPort) : undefined;
    // A fresh listener per bind attempt: a range may need several.
    const makePort = (listenPort: number): TcpProxyPort | UdpProxyPort =>
      spec.protocol === 'UDP'
        ? this.#udpPort(spec, balancer, listenPort)
        : new TcpProxyPort({
            id: spec.id,
            port: listenPort,
            balancer,
            logger: this.#log,
            backends: spec.backends,
            ...this.#opts.tcp,
            ...(pool !== undefined && { reusePort: true }),
            ...(portBudget !== undefined && { portBudget }),
            ...(this.#budget !== undefined && { connectionBudget: this.#budget }),
            readBuffers: this.#readBuffers,
            ...(this.#opts.host !== undefined && { host: this.#opts.host }),
            ...(this.#opts.connectTimeoutMs !== undefined && { connectTimeoutMs: this.#opts.connectTimeoutMs }),
            ...(this.#opts.connect !== undefined && { connect: this.#opts.connect }),
          });
    try {
      const port = await this.#listen(spec, makePort);
      if (port === undefined) return;
      const listenPort = port.port;
      const entry: Entry = { spec, port, balancer, ...(portBudget !== undefined && { portBudget }), ...(rotation !== undefined && { rotation }) };
      this.#ports.set(spec.id, entry);
      // The workers listen before prepare() returns, so a rule never points at a half-open port.
      if (pool !== undefined) await this.#syncWorkers(entry);
      this.#log.info({ proxyPort: spec.id, listenPort }, 'proxy listener opened');
    } catch (err) {
      if (!this.#ports.has(spec.id)) this.#allocatorFor(spec)?.release(spec.id);
      this.#log.error({ err, proxyPort: spec.id }, 'proxy listener failed to open');
    }
  }

  #allocatorFor(spec: ProxyPortSpec): PortAllocator | undefined {
    const range = this.#opts.portRange;
    if (range === undefined || (spec.protocol !== 'TCP' && spec.protocol !== 'UDP')) return undefined;
    let alloc = this.#allocators.get(spec.protocol);
    if (alloc === undefined) this.#allocators.set(spec.protocol, (alloc = new PortAllocator(range)));
    return alloc;
  }

  /**
   * Binds the spec's listener: on a kernel-chosen port, or on the next free port of the range,
   * skipping ports another process holds. Undefined when the range has no port left for it.
   */
  async #listen<P extends TcpProxyPort | UdpProxyPort>(spec: ProxyPortSpec, makePort: (listenPort: number) => P): Promise<P | undefined> {
    const alloc = this.#allocatorFor(spec);
    if (alloc === undefined) {
      const port = makePort(0);
      await port.listen();
      return port;
    }
    // Each free port is tried at most once: one that fails goes to the end of the queue.
    for (let tries = Math.max(1, alloc.available); tries > 0; tries--) {
      const listenPort = alloc.allocate(spec.id);
      if (listenPort === undefined) break;
      const port = makePort(listenPort);
      try {
        // SO_REUSEPORT would silently join another process's SO_REUSEPORT listener on the port;
        // a plain bind first fails on it instead.
        if (spec.protocol === 'TCP' && this.#pool !== undefined) await probeTcpPort(this.#opts.host ?? '0.0.0.0', listenPort);
        await port.listen();
        this.#unserved.delete(spec.id);
        return port;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        alloc.markHeldElsewhere(spec.id);
        this.#log.warn({ proxyPort: spec.id, listenPort }, 'listener port held by another process; trying the next one of the range');
      }
    }
    if (!this.#unserved.has(spec.id)) {
      this.#unserved.add(spec.id);
      this.#log.warn(
        { proxyPort: spec.id, portRange: formatPortRange(alloc.range), heldElsewhere: alloc.heldElsewhere.length },
        'no free listener port left in proxy.portRange: this port is not served (kube-proxy keeps handling it)',
      );
    }
    return undefined;
  }

  #udpPort(spec: ProxyPortSpec, balancer: ReconfigurableBalancer, listenPort: number): UdpProxyPort {
    const udp = this.#opts.udp ?? {};
    return new UdpProxyPort({
      id: spec.id,
      port: listenPort,
      balancer,
      logger: this.#log,
      backends: spec.backends,
      ...(this.#opts.host !== undefined && { host: this.#opts.host }),
      ...(udp.idleTimeoutMs !== undefined && { idleTimeoutMs: udp.idleTimeoutMs }),
      ...(udp.maxFlowsPerPort !== undefined && { maxFlows: udp.maxFlowsPerPort }),
    });
  }

  /** Waits until no TCP connection is open on `ports` or in the workers, or until drainMs passed. */
  async #drain(ports: readonly (TcpProxyPort | UdpProxyPort | undefined)[], drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs;
    const open = async () => {
      let n = 0;
      for (const p of ports) if (p instanceof TcpProxyPort) n += p.counters().active;
      return n + ((await this.#pool?.activeConnections()) ?? 0);
    };
    let active = await open();
    if (active === 0) return;
    this.#log.info({ connections: active, drainMs }, 'listeners closed; waiting for open connections to end');
    while (active > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, Math.max(1, deadline - Date.now()))));
      active = await open();
    }
    if (active > 0) this.#log.warn({ connections: active }, 'drain period over: resetting the connections still open');
  }

  /** Every port, whatever its protocol, gets its balancer here: the spec's policy and affinity. */
  #balancerFor(spec: ProxyPortSpec): ReconfigurableBalancer {
    return new ReconfigurableBalancer(spec, this.#opts.balancing);
  }

  async #closePort(id: string): Promise<void> {
    const entry = this.#ports.get(id);
    if (entry === undefined) return;
    this.#ports.delete(id);
    this.#lastPrepared = undefined;
    await Promise.all([entry.port.close(), this.#pool?.close(id)]);
    this.#allocatorFor(entry.spec)?.release(id);
    this.#log.info({ proxyPort: id }, 'proxy listener closed');
  }

  /** Opens, updates or closes a TCP port in the workers, as its spec now wants. */
  async #syncWorkers(entry: Entry): Promise<void> {
    const pool = this.#pool;
    if (pool === undefined) return;
    const { spec } = entry;
    const want = servedByWorkers(spec);
    if (want && !pool.has(spec.id)) await pool.open(spec, entry.port.port, entry.portBudget, entry.rotation?.cell);
    else if (want) pool.update(spec);
    else if (pool.has(spec.id)) await pool.close(spec.id);
  }

  #serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}
