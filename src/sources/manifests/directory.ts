// Watches a manifest directory and keeps a StateSink in step with it: every change to the
// directory triggers a debounced full rescan, and only objects that differ are sent.
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import type { DestinationRule, EndpointSlice, Service } from '../../model/types.ts';
import type { StateSink } from '../../state/types.ts';
import { sendChanges } from './diff.ts';
import { formatManifestError, type ManifestError } from './errors.ts';
import { ManifestScanner, type ScanResult } from './scan.ts';

export interface ManifestDirectorySourceOptions {
  dir: string;
  sink: StateSink;
  logger: Logger;
  /** Quiet time after the last file event before rescanning (default 100 ms). */
  debounceMs?: number;
  /** Full rescan at this interval as a safety net for missed watch events; 0 disables (default 60 s). */
  resyncIntervalMs?: number;
  /** How long a freshly emptied file keeps its old objects, waiting for the writer (default 1000 ms). */
  settleMs?: number;
  /** Called after each rescan that follows start(), once its changes are in the sink. */
  onApplied?: (summary: { changes: number; errors: number }) => void;
}

export class ManifestDirectorySource {
  readonly #dir: string;
  readonly #sink: StateSink;
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #resyncIntervalMs: number;
  readonly #onApplied: ((summary: { changes: number; errors: number }) => void) | undefined;
  readonly #settleMs: number;
  readonly #scanner: ManifestScanner;

  #sent: { services: Map<string, Service>; slices: Map<string, EndpointSlice>; destinationRules: Map<string, DestinationRule> } = {
    services: new Map(),
    slices: new Map(),
    destinationRules: new Map(),
  };
  #errors: ManifestError[] = [];
  #loggedErrors = new Set<string>();
  #filesWithErrors = new Set<string>();
  #scanFailure: string | undefined;

  #watcher: FSWatcher | undefined;
  #debounceTimer: NodeJS.Timeout | undefined;
  #firstEventAt = 0;
  #resyncTimer: NodeJS.Timeout | undefined;
  #settleTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #started = false;
  #changedDuringLoad = false;
  #stopped = false;

  constructor(options: ManifestDirectorySourceOptions) {
    this.#dir = options.dir;
    this.#sink = options.sink;
    this.#log = options.logger;
    this.#debounceMs = options.debounceMs ?? 100;
    this.#resyncIntervalMs = options.resyncIntervalMs ?? 60_000;
    this.#onApplied = options.onApplied;
    this.#settleMs = options.settleMs ?? 1000;
    this.#scanner = new ManifestScanner(options.dir, { settleMs: this.#settleMs });
  }

  /** Loads the directory into the sink and starts watching. Rejects if the directory cannot be read. */
  async start(): Promise<void> {
    // Watch first so a change made during the initial load is not missed.
    this.#watch(true);
    try {
      const view = await this.#scanner.scan();
      this.#apply(view);
    } catch (err) {
      this.#closeWatcher();
      throw new Error(`cannot load manifest directory ${this.#dir}: ${(err as Error).message}`, { cause: err });
    }
    this.#started = true;
    if (this.#changedDuringLoad) this.#scheduleRescan();
    if (this.#resyncIntervalMs > 0) {
      this.#resyncTimer = setInterval(() => {
        if (!this.#watcher) this.#watch(false);
        void this.rescan();
      }, this.#resyncIntervalMs);
      this.#resyncTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#closeWatcher();
    clearTimeout(this.#debounceTimer);
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#settleTimer);
    await this.#running;
  }

  /** Errors of the current directory contents (including duplicates), sorted by file and document. */
  errors(): ManifestError[] {
    return [...this.#errors];
  }

  /** Rescans now; resolves when that rescan (or the one already running plus a follow-up) is applied. */
  rescan(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#rescanOnce();
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #rescanOnce(): Promise<void> {
    let view: ScanResult;
    try {
      view = await this.#scanner.scan();
    } catch (err) {
      // Keep serving what we have: a directory that is briefly unreadable must not drop every service.
      const message = (err as Error).message;
      if (this.#scanFailure !== message) {
        this.#log.warn({ dir: this.#dir, err: message }, 'cannot read manifest directory; keeping the last loaded state');
        this.#scanFailure = message;
      }
      return;
    }
    if (this.#stopped) return;
    if (this.#scanFailure !== undefined) {
      this.#log.info({ dir: this.#dir }, 'manifest directory readable again');
      this.#scanFailure = undefined;
    }
    let changes = 0;
    try {
      changes = this.#apply(view);
    } catch (err) {
      this.#log.error({ dir: this.#dir, err }, 'applying manifest changes failed');
      return;
    }
    try {
      this.#onApplied?.({ changes, errors: view.errors.length });
    } catch (err) {
      this.#log.error({ dir: this.#dir, err }, 'onApplied callback failed');
    }
  }

  #apply(view: ScanResult): number {
    if (view.unsettled && !this.#settleTimer && !this.#stopped) {
      this.#settleTimer = setTimeout(() => {
        this.#settleTimer = undefined;
        void this.rescan();
      }, this.#settleMs + 10);
    }
    const changes = sendChanges(this.#sink, this.#sent, view);
    this.#sent = { services: view.services, slices: view.slices, destinationRules: view.destinationRules };
    this.#errors = view.errors;
    this.#logErrorChanges(view);
    if (changes > 0) this.#log.debug({ dir: this.#dir, changes }, 'manifest changes applied');
    return changes;
  }

  /** Logs each error once when it appears (not on every rescan), and files that became clean. */
  #logErrorChanges(view: ScanResult): void {
    const current = new Set<string>();
    const filesWithErrors = new Set<string>();
    for (const e of view.errors) {
      const line = formatManifestError(e);
      current.add(line);
      filesWithErrors.add(e.file);
      if (this.#loggedErrors.has(line)) continue;
      this.#log.warn(
        { file: e.file, doc: e.documentIndex, kind: e.kind, namespace: e.namespace, name: e.name, field: e.field },
        line,
      );
    }
    const present = new Set(view.files);
    for (const file of this.#filesWithErrors) {
      if (!filesWithErrors.has(file) && present.has(file)) this.#log.info({ file }, 'manifest file recovered: no errors');
    }
    this.#loggedErrors = current;
    this.#filesWithErrors = filesWithErrors;
  }

  #watch(initial: boolean): void {
    try {
      // Recursive watching sees renames into place (editors, ConfigMap "..data" swaps) as events too;
      // any event just schedules a full rescan, so which file it names does not matter.
      const w = watch(this.#dir, { recursive: true, persistent: false }, () => this.#scheduleRescan());
      w.on('error', (err) => {
        this.#log.warn({ dir: this.#dir, err: err.message }, 'manifest directory watch failed; relying on periodic rescans');
        if (this.#watcher === w) this.#closeWatcher();
      });
      this.#watcher = w;
    } catch (err) {
      if (initial) throw new Error(`cannot watch manifest directory ${this.#dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  #closeWatcher(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #scheduleRescan(): void {
    if (this.#stopped) return;
    if (!this.#started) {
      this.#changedDuringLoad = true; // rescan right after the initial load
      return;
    }
    const now = Date.now();
    if (this.#debounceTimer === undefined) this.#firstEventAt = now;
    clearTimeout(this.#debounceTimer);
    // Trailing debounce, but never postpone longer than a few periods under a steady stream of events.
    const maxWait = Math.max(1000, this.#debounceMs * 5);
    const delay = Math.max(0, Math.min(this.#debounceMs, this.#firstEventAt + maxWait - now));
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = undefined;
      void this.rescan();
    }, delay);
  }
}
