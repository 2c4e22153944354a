// Runs one sync function the way kube-proxy's BoundedFrequencyRunner does: on request, but never
// more often than minInterval, and at least every period (the periodic resync that also repairs
// chain order). Syncs never overlap; requests during a sync coalesce into one more run.
export interface SyncRunnerOptions {
  sync: () => Promise<void>;
  minIntervalMs: number;
  periodMs: number;
  /** Called when a sync throws; the runner retries after minInterval, doubling per consecutive failure up to period. */
  onError: (err: unknown, consecutiveFailures: number) => void;
  now?: () => number;
}

export class SyncRunner {
  #opts: SyncRunnerOptions;
  #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #pending = false;
  #lastStart = -Infinity;
  #stopped = true;
  #failures = 0;

  constructor(opts: SyncRunnerOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  start(): void {
    this.#stopped = false;
    this.request();
  }

  /** Ask for a sync as soon as the minimum interval allows. */
  request(): void {
    if (this.#stopped) return;
    this.#pending = true;
    if (this.#running) return; // picked up when the current sync ends
    this.#schedule(Math.max(0, this.#lastStart + this.#opts.minIntervalMs - this.#now()));
  }

  /** Stops timers and waits for a sync in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(), delayMs);
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    this.#pending = false;
    this.#lastStart = this.#now();
    let failed = false;
    this.#running = this.#opts.sync().then(
      () => {
        this.#failures = 0;
      },
      (err: unknown) => {
        failed = true;
        this.#opts.onError(err, ++this.#failures);
      },
    );
    await this.#running;
    this.#running = undefined;
    if (this.#stopped) return;
    if (failed) {
      // Back off while something stays broken (iptables missing, say) instead of hammering it.
      this.#schedule(Math.min(this.#opts.minIntervalMs * 2 ** (this.#failures - 1), this.#opts.periodMs));
    } else if (this.#pending) this.#schedule(this.#opts.minIntervalMs);
    else this.#schedule(this.#opts.periodMs);
  }
}
