// One resource kept in step with the API server through the client library's list/watch informer
// (ListWatch — what makeInformer builds — constructed directly to pass two hooks: a Watch that asks
// for bookmarks and reports activity, and a jittered reconnect delay). Around it, what the library
// leaves to us:
//   - 410 Gone: the library relists by itself; we count and log it.
//   - any other error stops the library's informer for good: we retire that informer and start a
//     fresh one (fresh list) after an exponential backoff with jitter — never a hot loop.
//   - a watchdog restarts a run that has shown no sign of life (list, event, bookmark, reconnect)
//     for too long: a half-open connection or a hung list otherwise goes unnoticed.
//   - handlers are idempotent: objects equal to what was last sent are not sent again, and a
//     relist deletes exactly what disappeared, so a restart never drops anything briefly.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, jittered, type BackoffOptions } from './backoff.ts';
import { collectionPath, sourceName, type ApiResource } from './resources.ts';
import { keepIdentityOnly, slimObject } from './slim.ts';

export type RestartReason = 'error' | 'watchdog' | 'expired' | 'closed' | 'resync';

export interface WatchStatus {
  source: string;
  /** The initial list has been delivered (stays true: we keep serving what we know). */
  synced: boolean;
  /** The current run has not yet been confirmed alive after an error or watchdog restart. */
  stale: boolean;
  /** When stale: since when (ms epoch). */
  staleSince?: number;
  /** Last list, watch event or bookmark (ms epoch). */
  lastEventAt?: number;
  restarts: Record<RestartReason, number>;
  lastError?: string;
}

export interface ObjectHandlers {
  /** An object was added or changed (may be called again with the same object). */
  upsert(obj: KubernetesObject): void;
  delete(obj: KubernetesObject): void;
  /** After each successful list: everything not in `objects` is gone. */
  relisted(objects: readonly KubernetesObject[]): void;
}

export interface ResourceWatcherOptions {
  kubeConfig: KubeConfig;
  /** With the version to use (discovery may have picked it). */
  resource: ApiResource;
  list: () => Promise<KubernetesListObject<KubernetesObject>>;
  handlers: ObjectHandlers;
  logger: Logger;
  /** Server-side timeoutSeconds of each watch request. */
  watchTimeoutMs: number;
  /** Restart a run silent for this long; 0 disables. */
  watchdogMs: number;
  /** Full relist at this interval as a safety net; 0 disables. */
  resyncPeriodMs?: number;
  backoff?: BackoffOptions;
  now?: () => number;
}

/** A Watch that asks for bookmarks and a server-side timeout, and reports what it sees. */
class ObservedWatch extends Watch {
  dead = false;
  readonly #params: Record<string, string | number | boolean>;
  readonly #onEvent: (phase: string, obj: { code?: number } | undefined) => void;
  readonly #onConnected: (first: boolean) => void;
  readonly #controllers = new Set<AbortController>();
  #calls = 0;

  constructor(
    kc: KubeConfig,
    params: Record<string, string | number | boolean>,
    onEvent: (phase: string, obj: { code?: number } | undefined) => void,
    onConnected: (first: boolean) => void,
  ) {
    super(kc);
    this.#params = params;
    this.#onEvent = onEvent;
    this.#onConnected = onConnected;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    // A retired run's informer may still try to reconnect: end its chain here, silently.
    if (this.dead) return new AbortController();
    const first = this.#calls++ === 0;
    let failed = false;
    let ended = false;
    const controller: AbortController = await super.watch(
      path,
      { ...queryParams, ...this.#params },
      (phase, obj, raw) => {
        if (this.dead) return;
        this.#onEvent(phase, obj as { code?: number } | undefined);
        callback(phase, phase === 'ERROR' ? obj : slimObject(obj as KubernetesObject | undefined), raw);
      },
      (err) => {
        // May run before super.watch() returns (a refused request): `controller` is not set yet.
        ended = true;
        if (err) failed = true;
        if (!this.dead && (err as { statusCode?: number } | null)?.statusCode === 410) this.#onEvent('ERROR', { code: 410 });
        if (!this.dead) done(err);
      },
    );
    if (this.dead) controller.abort();
    else {
      if (!ended) {
        this.#controllers.add(controller);
        controller.signal.addEventListener('abort', () => this.#controllers.delete(controller), { once: true });
      }
      if (!failed) this.#onConnected(first);
    }
    return controller;
  }

  kill(): void {
    this.dead = true;
    for (const c of this.#controllers) c.abort();
    this.#controllers.clear();
  }
}

interface Run {
  informer: ListWatch<KubernetesObject>;
  watch: ObservedWatch;
  dead: boolean;
  /** The last stream ended with 410 Gone (the next reconnect is a relist). */
  expired: boolean;
}

export class ResourceWatcher {
  readonly source: string;
  readonly #opts: ResourceWatcherOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #run: Run | undefined;
  #stopped = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #watchdogTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #lastAlive = 0;
  #status: WatchStatus;
  #resolveSynced!: () => void;
  readonly #synced: Promise<void>;

  constructor(opts: ResourceWatcherOptions) {
    this.#opts = opts;
    this.source = sourceName(opts.resource);
    this.#log = opts.logger.child({ source: this.source });
    this.#now = opts.now ?? Date.now;
    this.#status = { source: this.source, synced: false, stale: false, restarts: { error: 0, watchdog: 0, expired: 0, closed: 0, resync: 0 } };
    this.#synced = new Promise((resolve) => (this.#resolveSynced = resolve));
  }

  /** Resolves once the initial list is in the handlers; keeps retrying (with backoff) until then. */
  async start(): Promise<void> {
    this.#stopped = false;
    this.#lastAlive = this.#now();
    this.#startRun();
    const { watchdogMs, resyncPeriodMs } = this.#opts;
    if (watchdogMs > 0) {
      this.#watchdogTimer = setInterval(() => this.#checkWatchdog(), Math.max(10, Math.min(1000, Math.floor(watchdogMs / 4))));
      this.#watchdogTimer.unref();
    }
    if (resyncPeriodMs && resyncPeriodMs > 0) {
      this.#resyncTimer = setInterval(() => {
        if (this.#run && !this.#status.stale) this.#restart('resync', undefined, 0);
      }, resyncPeriodMs);
      this.#resyncTimer.unref();
    }
    await this.#synced;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#watchdogTimer);
    clearInterval(this.#resyncTimer);
    if (this.#run) await this.#retire(this.#run);
    this.#run = undefined;
    this.#resolveSynced(); // a stop during start must not leave start() hanging
  }

  status(): WatchStatus {
    return { ...this.#status, restarts: { ...this.#status.restarts } };
  }

  #startRun(): void {
    if (this.#stopped) return;
    const { kubeConfig, resource, handlers, watchTimeoutMs } = this.#opts;
    const watch: ObservedWatch = new ObservedWatch(
      kubeConfig,
      { allowWatchBookmarks: true, timeoutSeconds: Math.max(1, Math.round(watchTimeoutMs / 1000)) },
      (phase, obj) => this.#onWatchEvent(run, phase, obj),
      (first) => this.#onWatchConnected(run, first),
    );
    const list = async () => {
      const result = await this.#opts.list();
      if (run.dead) throw new Error('informer retired');
      for (const item of result.items ?? []) slimObject(item);
      handlers.relisted(result.items ?? []);
      this.#alive();
      if (!this.#status.synced) {
        // The library adds the items synchronously right after this promise settles; by the next
        // macrotask they are all in the handlers.
        setImmediate(() => {
          if (run.dead || this.#status.synced) return;
          this.#status.synced = true;
          this.#log.info({ objects: result.items?.length ?? 0 }, 'initial list synced');
          this.#resolveSynced();
        });
      }
      return result;
    };
    const informer = new ListWatch<KubernetesObject>(collectionPath(resource), watch, list, false, undefined, undefined, {
      delayFn: (ms) => new Promise((resolve) => setTimeout(resolve, jittered(ms)).unref()),
    });
    const run: Run = { informer, watch, dead: false, expired: false };
    // Converted, an object is cut down to what the informer's cache itself reads (slim.ts).
    const upsert = (obj: KubernetesObject) => {
      if (run.dead) return;
      handlers.upsert(obj);
      keepIdentityOnly(obj);
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj) => !run.dead && handlers.delete(obj));
    informer.on('error', (err) => {
      if (!run.dead) this.#restart('error', err);
    });
    this.#run = run;
    informer.start().catch((err: unknown) => {
      if (!run.dead) this.#restart('error', err);
    });
  }

  #onWatchEvent(run: Run, phase: string, obj: { code?: number } | undefined): void {
    if (run.dead) return;
    if (phase === 'ERROR') {
      if (obj?.code === 410) {
        run.expired = true;
        this.#log.info('watch resource version expired (410 Gone): relisting');
      } else {
        this.#log.warn({ status: obj }, 'watch error event');
      }
      return;
    }
    this.#attempt = 0; // real progress: the next failure starts from the shortest delay again
    this.#alive();
  }

  #onWatchConnected(run: Run, first: boolean): void {
    if (run.dead) return;
    if (!first) {
      // The library reconnected by itself: after 410 Gone (it relisted) or a closed stream.
      const reason: RestartReason = run.expired ? 'expired' : 'closed';
      this.#status.restarts[reason]++;
      this.#log.debug({ reason }, 'watch reconnected');
    }
    run.expired = false;
    this.#alive();
  }

  #alive(): void {
    const now = this.#now();
    this.#lastAlive = now;
    this.#status.lastEventAt = now;
    if (this.#status.stale) {
      this.#log.info({ staleForMs: now - (this.#status.staleSince ?? now) }, 'watch is back: state is current again');
      this.#status.stale = false;
      delete this.#status.staleSince;
      delete this.#status.lastError;
    }
  }

  #checkWatchdog(): void {
    if (!this.#run || this.#stopped) return; // waiting for a retry: nothing to watch yet
    const silentMs = this.#now() - this.#lastAlive;
    if (silentMs > this.#opts.watchdogMs) this.#restart('watchdog', new Error(`no list, event or bookmark for ${silentMs} ms`));
  }

  /** Retires the current run and starts a fresh one (a full relist) after a delay. */
  #restart(reason: RestartReason, err: unknown, delayMs?: number): void {
    const run = this.#run;
    if (!run || this.#stopped) return;
    this.#run = undefined;
    void this.#retire(run);
    this.#status.restarts[reason]++;
    const delay = delayMs ?? backoffDelay(this.#attempt++, this.#opts.backoff);
    const message = err === undefined ? undefined : describeError(err);
    if (reason !== 'resync') {
      if (!this.#status.stale) {
        this.#status.stale = true;
        this.#status.staleSince = this.#now();
      }
      if (message) this.#status.lastError = message;
      this.#log.warn({ reason, error: message, retryInMs: delay }, 'watch failed: serving the last known state, restarting');
    }
    this.#retryTimer = setTimeout(() => {
      this.#lastAlive = this.#now(); // the watchdog measures the new run from its start
      this.#startRun();
    }, delay); // not unref'd: while start() waits for the first list, this timer is what keeps us alive
  }

  async #retire(run: Run): Promise<void> {
    run.dead = true;
    run.watch.kill();
    await run.informer.stop().catch(() => undefined);
  }
}

export function describeError(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; statusCode?: unknown; message?: unknown; cause?: { message?: unknown; code?: unknown } };
    const status = typeof e.statusCode === 'number' ? e.statusCode : typeof e.code === 'number' ? e.code : undefined;
    const msg = typeof e.message === 'string' ? e.message.split('\n')[0]! : String(err);
    const cause = e.cause && typeof e.cause.message === 'string' ? `: ${String(e.cause.code ?? e.cause.message)}` : '';
    return status !== undefined ? `HTTP ${status}: ${msg}`.slice(0, 300) : `${msg}${cause}`.slice(0, 300);
  }
  return String(err);
}
