// Passive health: an endpoint whose dial failed is skipped for a while (ejected), longer each
// time it fails again without a success in between. Shared by any balancing policy: it only
// reorders the candidates a balancer proposes, it never chooses.
import { backendId } from '../model/types.ts';
import { monotonicNow } from './limits.ts';

export interface EjectionTrackerOptions {
  /** First ejection's length. */
  baseMs: number;
  /** Upper bound of the doubling. */
  maxMs: number;
  /** Monotonic clock in ms; injectable for tests. Default performance.now. */
  now?: () => number;
}

interface EndpointHealth {
  /** Ejections since the last successful dial (the doubling exponent). */
  ejections: number;
  /** Clock time the current ejection ends. */
  until: number;
}

type Endpoint = { ip: string; port: number };

export class EjectionTracker {
  #baseMs: number;
  #maxMs: number;
  #now: () => number;
  /** Endpoints that failed since their last success; made on the first failure (a port per service: most never see one). */
  #failing: Map<string, EndpointHealth> | undefined;

  constructor(opts: EjectionTrackerOptions) {
    this.#baseMs = Math.max(0, opts.baseMs);
    this.#maxMs = Math.max(this.#baseMs, opts.maxMs);
    this.#now = opts.now ?? monotonicNow;
  }

  /**
   * Records a failed dial. An endpoint not currently ejected is ejected for base × 2^(n-1)
   * (n = ejections since its last success), capped at max; returns that length. A failure
   * while already ejected (a dial that started before, or the all-ejected fallback) returns 0
   * and changes nothing, so a burst of concurrent failures counts as one ejection.
   */
  failed(endpoint: Endpoint): number {
    if (this.#baseMs === 0) return 0;
    const id = backendId(endpoint);
    const now = this.#now();
    this.#failing ??= new Map();
    const h = this.#failing.get(id) ?? { ejections: 0, until: -Infinity };
    if (h.until > now) return 0;
    h.ejections++;
    const ms = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(h.ejections - 1, 30));
    h.until = now + ms;
    this.#failing.set(id, h);
    return ms;
  }

  /** A successful dial: the endpoint is healthy again and its cool-down starts over. */
  succeeded(endpoint: Endpoint): void {
    if (this.#failing !== undefined && this.#failing.size > 0) this.#failing.delete(backendId(endpoint)); // no id string per connection when all are healthy
  }

  isEjected(endpoint: Endpoint): boolean {
    const h = this.#failing?.get(backendId(endpoint));
    return h !== undefined && h.until > this.#now();
  }

  /**
   * The candidates to dial, in the balancer's order: the non-ejected ones first, then the
   * ejected ones — when everything is ejected they are still tried, since a slow success
   * beats a certain failure.
   */
  order<T extends Endpoint>(candidates: readonly T[]): readonly T[] {
    if (this.#failing === undefined || this.#failing.size === 0) return candidates;
    const healthy: T[] = [];
    const ejected: T[] = [];
    for (const c of candidates) (this.isEjected(c) ? ejected : healthy).push(c);
    return healthy.concat(ejected);
  }

  /** Forgets endpoints not in the list (they were removed), so the map stays bounded. */
  retain(endpoints: readonly Endpoint[]): void {
    if (this.#failing === undefined || this.#failing.size === 0) return;
    const keep = new Set(endpoints.map(backendId));
    for (const id of this.#failing.keys()) if (!keep.has(id)) this.#failing.delete(id);
  }

  /** Endpoints ejected right now. */
  ejectedCount(): number {
    const now = this.#now();
    let n = 0;
    for (const h of this.#failing?.values() ?? []) if (h.until > now) n++;
    return n;
  }
}
