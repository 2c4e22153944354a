// Session affinity (Service sessionAffinity: ClientIP): a client IP keeps going to the backend it
// last used for as long as it keeps connecting within the timeout; the wrapped policy chooses
// for clients without a live entry. Like kube-proxy's `recent` match, every new connection
// refreshes the entry, so the timeout counts from the client's LAST connection.
//
// Memory is bounded without a timer per client: the table is a Map kept in last-use order
// (refresh = delete + re-insert), so expired entries are always at its head and are dropped
// from there on every access and on every update() (the agent updates each sync, which makes
// that the periodic sweep); beyond maxEntries the least recently used client is forgotten.
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';
import type { Balancer } from './balancer.ts';

/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds. */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
export const DEFAULT_AFFINITY_MAX_ENTRIES = 65536;

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
  #inner: Balancer;
  #timeoutMs: number;
  #now: () => number;
  #maxEntries: number;
  /** clientIp → entry, oldest last use first. */
  #table = new Map<string, Entry>();
  #byId = new Map<string, Backend>();

  constructor(inner: Balancer, opts: AffinityOptions) {
    this.#inner = inner;
    this.#timeoutMs = opts.timeoutSeconds * 1000;
    this.#now = opts.now ?? (() => performance.now());
    this.#maxEntries = opts.maxEntries ?? DEFAULT_AFFINITY_MAX_ENTRIES;
    this.#byId = new Map(inner.backends().map((b) => [backendId(b), b]));
  }

  update(backends: readonly Backend[]): void {
    this.#inner.update(backends);
    // Entries naming a backend that is gone stay until used or expired; #sticky drops them then,
    // so a client of a removed backend chooses anew on its very next connection.
    this.#byId = new Map(this.#inner.backends().map((b) => [backendId(b), b]));
    this.#expire(this.#now());
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

  /** Clients currently remembered (expired ones may linger until the next access). */
  size(): number {
    return this.#table.size;
  }

  #sticky(clientIp: string, now: number): Backend | undefined {
    this.#expire(now);
    const entry = this.#table.get(clientIp);
    if (entry === undefined) return undefined;
    const backend = this.#byId.get(entry.backend);
    if (backend === undefined) this.#table.delete(clientIp); // its backend is gone: choose anew
    return backend;
  }

  #remember(clientIp: string, backend: Backend, now: number): void {
    this.#table.delete(clientIp);
    this.#table.set(clientIp, { backend: backendId(backend), lastUsed: now });
    if (this.#table.size > this.#maxEntries) {
      const oldest = this.#table.keys().next();
      if (!oldest.done) this.#table.delete(oldest.value);
    }
  }

  /** Drops expired entries from the head of the table (oldest last use first). */
  #expire(now: number): void {
    for (const [ip, entry] of this.#table) {
      if (now - entry.lastUsed < this.#timeoutMs) break;
      this.#table.delete(ip);
    }
  }
}
