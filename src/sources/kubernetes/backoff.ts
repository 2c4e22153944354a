// Exponential backoff with jitter for watch restarts: many agents losing the same API server must
// not come back in lock step, and a watch that fails at once must not spin.

export interface BackoffOptions {
  /** First delay (default 1 s). */
  baseMs?: number;
  /** Cap (default 30 s). */
  maxMs?: number;
  /** Random in [0, 1); injectable for tests. */
  random?: () => number;
}

/**
 * Delay before attempt n (0-based): base·2ⁿ capped at max, then "equal jitter" — a uniform pick in
 * [d/2, d) — so the delay always grows with n yet two clients rarely pick the same one.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 1000;
  const max = opts.maxMs ?? 30_000;
  const random = opts.random ?? Math.random;
  const d = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}

/** Jitter for a delay chosen by someone else (the client library's reconnect delay): ±25 %. */
export function jittered(ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.75 + random() * 0.5));
}
