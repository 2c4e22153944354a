// The main thread's side of the TCP proxy worker threads. Each proxied TCP port listens in the
// main thread (SO_REUSEPORT, OS-chosen port) and in every worker on that same port, so the
// kernel spreads new connections over all cores. Limits are shared exactly (a SharedArrayBuffer
// count per port and one for the total); round robin and passive health are per thread.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { ConnectionBudget } from '../limits.ts';
import type { TcpProxyCounters, TcpProxyTuning } from '../tcpPort.ts';
import type { ProxyPortSpec } from '../types.ts';
import { addCounters } from './counters.ts';
import type { FromWorker, SharedBudget, ToWorker, WorkerInit } from './protocol.ts';

export interface TcpWorkerPoolOptions {
  /** Worker threads to start (the main thread's listener comes on top). */
  threads: number;
  logger: Logger;
  host?: string;
  connectTimeoutMs?: number;
  tuning: TcpProxyTuning;
  /** The total limit; must be ConnectionBudget.shared(). */
  totalBudget?: ConnectionBudget;
}

interface Pending {
  resolve: (msg: FromWorker) => void;
}

interface PoolWorker {
  worker: Worker;
  alive: boolean;
  pending: Map<number, Pending>;
  /** Counters per port id from the last refresh(). */
  counters: Map<string, TcpProxyCounters>;
}

const shared = (b: ConnectionBudget): SharedBudget => ({ max: b.max, cell: b.cell });

export class TcpWorkerPool {
  #log: Logger;
  #workers: PoolWorker[] = [];
  #nextReq = 1;
  /** Port ids open in the workers. */
  #open = new Set<string>();

  constructor(opts: TcpWorkerPoolOptions) {
    this.#log = opts.logger;
    for (let i = 1; i <= opts.threads; i++) {
      const init: WorkerInit = {
        index: i,
        logLevel: opts.logger.level,
        tuning: opts.tuning,
        ...(opts.host !== undefined && { host: opts.host }),
        ...(opts.connectTimeoutMs !== undefined && { connectTimeoutMs: opts.connectTimeoutMs }),
        ...(opts.totalBudget !== undefined && { totalBudget: shared(opts.totalBudget) }),
      };
      const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: init, name: `edgeproxy-tcp-${i}` });
      const w: PoolWorker = { worker, alive: true, pending: new Map(), counters: new Map() };
      worker.on('message', (msg: FromWorker) => {
        const p = w.pending.get(msg.reqId);
        if (p === undefined) return;
        w.pending.delete(msg.reqId);
        if (w.pending.size === 0) worker.unref();
        p.resolve(msg);
      });
      worker.on('error', (err) => this.#log.error({ err, worker: i }, 'proxy worker thread failed; its listeners are gone, the other threads serve'));
      worker.once('exit', () => {
        w.alive = false;
        w.counters.clear();
        for (const p of w.pending.values()) p.resolve({ type: 'done', reqId: 0, error: 'worker exited' });
        w.pending.clear();
      });
      // The main thread decides when the agent ends, never a worker: a worker keeps the process
      // alive only while the main thread awaits its answer.
      worker.unref();
      this.#workers.push(w);
    }
  }

  get threads(): number {
    return this.#workers.length;
  }

  /** Whether the workers serve this port id. */
  has(id: string): boolean {
    return this.#open.has(id);
  }

  /**
   * Opens the port in every worker, bound to listenPort (already bound with SO_REUSEPORT by the
   * main thread). Resolves once all are listening; a worker that fails is logged and skipped.
   */
  async open(spec: ProxyPortSpec, listenPort: number, portBudget?: ConnectionBudget, rotation?: Int32Array): Promise<void> {
    this.#open.add(spec.id);
    const replies = await this.#all((reqId) => ({
      type: 'open',
      reqId,
      spec,
      listenPort,
      ...(portBudget !== undefined && { portBudget: shared(portBudget) }),
      ...(rotation !== undefined && { rotation }),
    }));
    for (const r of replies) {
      if (r.type === 'done' && r.error !== undefined) this.#log.error({ proxyPort: spec.id, listenPort, error: r.error }, 'proxy worker failed to listen');
    }
  }

  /** New backends or policy for a port the workers serve (applied in order with open/close). */
  update(spec: ProxyPortSpec): void {
    if (!this.#open.has(spec.id)) return;
    this.#post({ type: 'update', spec });
  }

  /** Closes the port's listeners in every worker; their open connections carry on. */
  async close(id: string): Promise<void> {
    if (!this.#open.delete(id)) return;
    await this.#all((reqId) => ({ type: 'close', reqId, id }));
  }

  destroyConnections(): void {
    this.#post({ type: 'destroyConnections' });
  }

  /** Fetches every worker's counters (for a scrape); counters() then returns them. */
  async refresh(): Promise<void> {
    await Promise.all(
      this.#workers.map(async (w) => {
        const r = await this.#ask(w, (reqId) => ({ type: 'stats', reqId }));
        if (r.type === 'stats') w.counters = new Map(r.counters);
      }),
    );
  }

  /** A port's counters summed over the workers, as of the last refresh(). */
  counters(id: string): TcpProxyCounters | undefined {
    let sum: TcpProxyCounters | undefined;
    for (const w of this.#workers) {
      const c = w.counters.get(id);
      if (c !== undefined) sum = addCounters(sum, c);
    }
    return sum;
  }

  /** Per worker thread, for tests: the counters of one port as of the last refresh(). */
  countersByWorker(id: string): (TcpProxyCounters | undefined)[] {
    return this.#workers.map((w) => w.counters.get(id));
  }

  /** TCP connections still open in the worker threads, on open and closed (draining) listeners. */
  async activeConnections(): Promise<number> {
    await this.refresh();
    let n = 0;
    for (const w of this.#workers) for (const c of w.counters.values()) n += c.active;
    return n;
  }

  /** Ends the threads (their listeners and connections close with them). */
  async stop(): Promise<void> {
    this.#open.clear();
    // ref(): an unref'd worker's exit would not keep the loop alive until terminate() resolves.
    await Promise.all(
      this.#workers.map((w) => {
        w.worker.ref();
        return w.worker.terminate();
      }),
    );
  }

  #post(msg: ToWorker): void {
    for (const w of this.#workers) if (w.alive) w.worker.postMessage(msg);
  }

  #all(make: (reqId: number) => ToWorker): Promise<FromWorker[]> {
    return Promise.all(this.#workers.map((w) => this.#ask(w, make)));
  }

  #ask(w: PoolWorker, make: (reqId: number) => ToWorker): Promise<FromWorker> {
    const reqId = this.#nextReq++;
    if (!w.alive) return Promise.resolve({ type: 'done', reqId, error: 'worker exited' });
    return new Promise((resolve) => {
      if (w.pending.size === 0) w.worker.ref();
      w.pending.set(reqId, { resolve });
      w.worker.postMessage(make(reqId));
    });
  }
}
