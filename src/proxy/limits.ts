// Connection limits: a budget shared by every listener (the total), and a log throttle so
// that a flood of refused clients produces one log line per interval, not one per client.

/** A concurrency budget; one instance is shared by all ports for the total limit. */
export class ConnectionBudget {
  readonly max: number;
  #active = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Takes one slot; false (and nothing taken) when the budget is used up. */
  tryAcquire(): boolean {
    if (this.#active >= this.max) return false;
    this.#active++;
    return true;
  }

  release(): void {
    if (this.#active > 0) this.#active--;
  }

  get active(): number {
    return this.#active;
  }
}

/**
 * Counts events and lets the caller log at most once per interval, with how many happened
 * since the last log line.
 */
export class IntervalLog {
  #intervalMs: number;
  #now: () => number;
  #lastAt = -Infinity;
  #pending = 0;

  constructor(intervalMs: number, now: () => number = () => performance.now()) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /**
   * Records one event. Returns the number of events to report (this one included) when a
   * log line is due now, else undefined (the event is kept for the next line).
   */
  record(): number | undefined {
    this.#pending++;
    const now = this.#now();
    if (now - this.#lastAt < this.#intervalMs) return undefined;
    this.#lastAt = now;
    const n = this.#pending;
    this.#pending = 0;
    return n;
  }
}
