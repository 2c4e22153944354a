// Connection limits: a budget shared by every listener (the total), and a log throttle so
// that a flood of refused clients produces one log line per interval, not one per client.

/**
 * A concurrency budget; one instance is shared by all ports for the total limit. Its count may
 * live in a SharedArrayBuffer (`cell`), so proxy worker threads serving the same port share one
 * exact limit instead of each getting a slice of it.
 */
export class ConnectionBudget {
  readonly max: number;
  /** One Int32 slot: the slots taken. */
  readonly cell: Int32Array;

  constructor(max: number, cell: Int32Array = new Int32Array(1)) {
    this.max = max;
    this.cell = cell;
  }

  /** A budget whose count can be handed to worker threads (new ConnectionBudget(max, b.cell)). */
  static shared(max: number): ConnectionBudget {
    return new ConnectionBudget(max, new Int32Array(new SharedArrayBuffer(4)));
  }

  /** Takes one slot; false (and nothing taken) when the budget is used up. */
  tryAcquire(): boolean {
    if (Atomics.add(this.cell, 0, 1) < this.max) return true;
    Atomics.sub(this.cell, 0, 1);
    return false;
  }

  release(): void {
    if (Atomics.sub(this.cell, 0, 1) <= 0) Atomics.add(this.cell, 0, 1);
  }

  get active(): number {
    return Atomics.load(this.cell, 0);
  }
}

/** performance.now as a plain function: one shared default clock, not a closure per object. */
export function monotonicNow(): number {
  return performance.now();
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

  constructor(intervalMs: number, now: () => number = monotonicNow) {
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
