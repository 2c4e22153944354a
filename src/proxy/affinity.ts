// Session affinity (Service sessionAffinity: ClientIP): a client IP keeps going to the backend it
// last used for as long as it keeps connecting within the timeout; the wrapped policy chooses
// for clients without a live entry. Like kube-proxy's `recent` match, every new connection
// refreshes the entry, so the timeout counts from the client's LAST connection.
//
// Memory is bounded without a timer per client: an expired entry is ignored when looked up
// (lazy), and a sweep over the table drops the expired ones at most every sweepIntervalMs,
// run from pick/candidates/update (the agent updates every sync, so it runs even when no
// client connects). Refreshing updates the entry in place: re-inserting it would leave Map
// tombstones that make every walk from the head slow. At maxEntries, after a sweep, the
// oldest eighth (by first use) is dropped in one pass.
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';
import type { Balancer } from './balancer.ts';
import { monotonicNow } from './limits.ts';

/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds. */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
export const DEFAULT_AFFINITY_MAX_ENTRIES = 65536;
const SWEEP_INTERVAL_MS = 10_000;

export interface AffinityOptions {
  timeoutSeconds: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
  maxEntries?: number;
}

interface Entry {
  backend: string;
  lastUsed: number;
}

export class AffinityBalancer implements Balancer {
  readonly usesClientIp = true;
  #inner: Balancer;
  #timeoutMs: number;
  #now: () => number;
  #maxEntries: number;
  /** clientIp → entry, in order of first use. */
  #table = new Map<string, Entry>();
  #byId = new Map<string, Backend>();
  #nextSweepAt: number;

  constructor(inner: Balancer, opts: AffinityOptions) {
    this.#inner = inner;
    this.#timeoutMs = opts.timeoutSeconds * 1000;
    this.#now = opts.now ?? monotonicNow;
    this.#maxEntries = opts.maxEntries ?? DEFAULT_AFFINITY_MAX_ENTRIES;
    this.#byId = new Map(inner.backends().map((b) => [backendId(b), b]));
    this.#nextSweepAt = this.#now() + Math.min(this.#timeoutMs, SWEEP_INTERVAL_MS);
  }

  update(backends: readonly Backend[]): void {
    this.#inner.update(backends);
    // Entries naming a backend that is gone stay until used or expired; #sticky drops them then,
    // so a client of a removed backend chooses anew on its very next connection.
    this.#byId = new Map(this.#inner.backends().map((b) => [backendId(b), b]));
    this.#maybeSweep(this.#now());
  }

  pick(clientIp: string): Backend | undefined {
    const now = this.#now();
    const chosen = this.#sticky(clientIp, now) ?? this.#inner.pick(clientIp);
    if (chosen !== undefined) this.#remember(clientIp, chosen, now);
    return chosen;
  }

  candidates(clientIp: string): Backend[] {
    const now = this.#now();
    const sticky = this.#sticky(clientIp, now);
    if (sticky === undefined) {
      const out = this.#inner.candidates(clientIp);
      if (out[0] !== undefined) this.#remember(clientIp, out[0], now);
      return out;
    }
    this.#remember(clientIp, sticky, now);
    // Failover order without consulting the policy, so sticky clients do not move its rotation:
    // the backends after the sticky one in the stable order, wrapping.
    const list = this.#inner.backends();
    const at = list.findIndex((b) => backendId(b) === backendId(sticky));
    return [sticky, ...list.slice(at + 1), ...list.slice(0, Math.max(at, 0))];
  }

  /** The backend actually reached becomes the sticky one (it differs from the pick after a failover). */
  dialSucceeded(clientIp: string, backend: Backend): void {
    this.#remember(clientIp, backend, this.#now());
    this.#inner.dialSucceeded(clientIp, backend);
  }

  /** A failed sticky backend releases the client, as kube-proxy's userspace proxier resets affinity on a failed dial. */
  dialFailed(clientIp: string, backend: Backend): void {
    if (this.#table.get(clientIp)?.backend === backendId(backend)) this.#table.delete(clientIp);
    this.#inner.dialFailed(clientIp, backend);
  }

  backends(): readonly Backend[] {
    return this.#inner.backends();
  }

  /** Clients currently remembered (expired ones may linger until the next sweep). */
  size(): number {
    return this.#table.size;
  }

  #sticky(clientIp: string, now: number): Backend | undefined {
    this.#maybeSweep(now);
    const entry = this.#table.get(clientIp);
    if (entry === undefined) return undefined;
    const backend = now - entry.lastUsed < this.#timeoutMs ? this.#byId.get(entry.backend) : undefined;
    // Expired, or its backend is gone: forget it and choose anew.
    if (backend === undefined) this.#table.delete(clientIp);
    return backend;
  }

  #remember(clientIp: string, backend: Backend, now: number): void {
    const id = backendId(backend);
    const entry = this.#table.get(clientIp);
    if (entry !== undefined) {
      entry.backend = id;
      entry.lastUsed = now;
      return;
    }
    if (this.#table.size >= this.#maxEntries) this.#makeRoom(now);
    this.#table.set(clientIp, { backend: id, lastUsed: now });
  }

  #maybeSweep(now: number): void {
    if (now < this.#nextSweepAt) return;
    this.#nextSweepAt = now + Math.min(this.#timeoutMs, SWEEP_INTERVAL_MS);
    this.#sweep(now);
  }

  #sweep(now: number): void {
    for (const [ip, entry] of this.#table) if (now - entry.lastUsed >= this.#timeoutMs) this.#table.delete(ip);
  }

  /** Full table: drop the expired; if that is not enough, the oldest eighth by first use. */
  #makeRoom(now: number): void {
    this.#sweep(now);
    if (this.#table.size < this.#maxEntries) return;
    let drop = Math.max(1, this.#maxEntries >> 3);
    for (const ip of this.#table.keys()) {
      this.#table.delete(ip);
      if (--drop === 0) break;
    }
  }
}
