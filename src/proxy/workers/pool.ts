// The main thread's side of the TCP proxy worker threads. Each proxied TCP port listens in the
// main thread (SO_REUSEPORT, OS-chosen port) and in every worker on that same port, so the
// kernel spreads new connections over all cores. Limits are shared exactly (a SharedArrayBuffer
// count per port and one for the total); round robin and passive health are per thread.
// A worker that dies (uncaught error, out of memory) is started again after a backoff and
// re-opens every port the pool serves; the other threads and the main thread serve meanwhile.
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
  /** Delay before restarting a dead worker: initialMs, doubling per crash in a row, capped at maxMs (default 1 s to 30 s). */
  restartBackoff?: { initialMs?: number; maxMs?: number };
  /** Called once per worker restart (for the edgeproxy_worker_restarts_total metric). */
  onRestart?: () => void;
}

interface Pending {
  resolve: (msg: FromWorker) => void;
}

/** One thread slot: its current Worker, replaced when the thread dies. */
interface PoolWorker {
  /** 1-based; the main thread is listener 0. */
  index: number;
  worker: Worker;
  alive: boolean;
  pending: Map<number, Pending>;
  /** Counters per port id from the last refresh(). */
  counters: Map<string, TcpProxyCounters>;
  startedAt: number;
  /** The delay before the next restart (grows while the thread keeps dying young). */
  restartDelayMs: number;
  restartTimer?: NodeJS.Timeout;
  /** The error the current worker reported before exiting, if any. */
  lastError?: Error;
}

/** What the pool needs to open a port again in a restarted worker. */
interface OpenPort {
  spec: ProxyPortSpec;
  listenPort: number;
  portBudget?: SharedBudget;
  rotation?: Int32Array;
}

const shared = (b: ConnectionBudget): SharedBudget => ({ max: b.max, cell: b.cell });

export class TcpWorkerPool {
  #log: Logger;
  #opts: TcpWorkerPoolOptions;
  #workers: PoolWorker[] = [];
  #nextReq = 1;
  /** Ports open in the workers, with what a restarted worker needs to open them again. */
  #open = new Map<string, OpenPort>();
  /** Counters of dead workers, per port id, so that a port's totals never go down. */
  #deadCounters = new Map<string, TcpProxyCounters>();
  #stopped = false;
  #restarts = 0;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;

  constructor(opts: TcpWorkerPoolOptions) {
    this.#log = opts.logger;
    this.#opts = opts;
    this.#initialDelayMs = opts.restartBackoff?.initialMs ?? 1000;
    this.#maxDelayMs = Math.max(this.#initialDelayMs, opts.restartBackoff?.maxMs ?? 30_000);
    for (let i = 1; i <= opts.threads; i++) {
      // #spawn sets worker, alive and startedAt.
      const w = { index: i, pending: new Map(), counters: new Map(), restartDelayMs: this.#initialDelayMs } as unknown as PoolWorker;
      this.#spawn(w);
      this.#workers.push(w);
    }
  }

  /** Worker restarts since the pool started. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Starts (or restarts) the thread of slot w. */
  #spawn(w: PoolWorker): void {
    const opts = this.#opts;
    const init: WorkerInit = {
      index: w.index,
      logLevel: opts.logger.level,
      tuning: opts.tuning,
      ...(opts.host !== undefined && { host: opts.host }),
      ...(opts.connectTimeoutMs !== undefined && { connectTimeoutMs: opts.connectTimeoutMs }),
      ...(opts.totalBudget !== undefined && { totalBudget: shared(opts.totalBudget) }),
    };
    const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: init, name: `edgeproxy-tcp-${w.index}` });
    w.worker = worker;
    w.alive = true;
    w.startedAt = Date.now();
    delete w.lastError;
    worker.on('message', (msg: FromWorker) => {
      const p = w.pending.get(msg.reqId);
      if (p === undefined) return;
      w.pending.delete(msg.reqId);
      if (w.pending.size === 0) worker.unref();
      p.resolve(msg);
    });
    // Logged once, on exit, with the restart it leads to.
    worker.on('error', (err) => (w.lastError = err));
    worker.once('exit', (code) => this.#exited(w, worker, code));
    // The main thread decides when the agent ends, never a worker: a worker keeps the process
    // alive only while the main thread awaits its answer.
    worker.unref();
  }

  #exited(w: PoolWorker, worker: Worker, code: number): void {
    if (w.worker !== worker) return;
    w.alive = false;
    // Its connections died with it, but what it counted stays counted.
    for (const [id, c] of w.counters) this.#deadCounters.set(id, addCounters(this.#deadCounters.get(id), { ...c, active: 0 }));
    w.counters.clear();
    for (const p of w.pending.values()) p.resolve({ type: 'done', reqId: 0, error: 'worker exited' });
    w.pending.clear();
    if (this.#stopped) return;
    // A thread that ran a good while before dying gets the short delay again; one that keeps
    // dying young waits longer each time, so a crash loop does not spin.
    if (Date.now() - w.startedAt >= this.#maxDelayMs) w.restartDelayMs = this.#initialDelayMs;
    const delay = w.restartDelayMs;
    w.restartDelayMs = Math.min(this.#maxDelayMs, delay * 2);
    this.#log.warn(
      { worker: w.index, err: w.lastError, exitCode: code, ports: this.#open.size, restartInMs: delay },
      'proxy worker thread died; the other threads serve its ports until it is restarted',
    );
    w.restartTimer = setTimeout(() => this.#restart(w), delay);
    w.restartTimer.unref();
  }

  #restart(w: PoolWorker): void {
    delete w.restartTimer;
    if (this.#stopped) return;
    this.#spawn(w);
    this.#restarts++;
    this.#opts.onRestart?.();
    // Posted at once and handled in order, so any open/update/close the manager sends from now
    // on comes after these and applies on top of them.
    const ports = [...this.#open.values()];
    void Promise.all(ports.map((o) => this.#ask(w, (reqId) => ({ type: 'open', reqId, ...o })))).then((replies) => {
      replies.forEach((r, i) => {
        if (r.type === 'done' && r.error !== undefined) this.#log.error({ worker: w.index, proxyPort: ports[i]!.spec.id, error: r.error }, 'restarted proxy worker failed to listen');
      });
    });
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
    const port: OpenPort = {
      spec,
      listenPort,
      ...(portBudget !== undefined && { portBudget: shared(portBudget) }),
      ...(rotation !== undefined && { rotation }),
    };
    this.#open.set(spec.id, port);
    const replies = await this.#all((reqId) => ({ type: 'open', reqId, ...port }));
    for (const r of replies) {
      if (r.type === 'done' && r.error !== undefined) this.#log.error({ proxyPort: spec.id, listenPort, error: r.error }, 'proxy worker failed to listen');
    }
  }

  /** New backends or policy for a port the workers serve (applied in order with open/close). */
  update(spec: ProxyPortSpec): void {
    const port = this.#open.get(spec.id);
    if (port === undefined) return;
    port.spec = spec; // what a restarted worker opens
    this.#post({ type: 'update', spec });
  }

  /** Closes the port's listeners in every worker; their open connections carry on. */
  async close(id: string): Promise<void> {
    if (!this.#open.delete(id)) return;
    this.#deadCounters.delete(id);
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
    let sum = this.#deadCounters.get(id);
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
    this.#stopped = true;
    this.#open.clear();
    for (const w of this.#workers) clearTimeout(w.restartTimer);
    // ref(): an unref'd worker's exit would not keep the loop alive until terminate() resolves.
    await Promise.all(
      this.#workers.map((w) => {
        w.worker.ref();
        return w.worker.terminate();
      }),
    );
  }

  /** For tests: makes worker thread `index` (1-based) throw an uncaught error, as a crash would. */
  crashForTest(index: number, message = 'crash requested by a test'): void {
    const w = this.#workers[index - 1];
    if (w?.alive) w.worker.postMessage({ type: 'crash', message } satisfies ToWorker);
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
