// Consistent hash on the client IP: a ring of virtual nodes (several points per backend), so a
// client keeps its backend while the backend exists, and when one backend is added or removed
// only about 1/N of the clients move (a removal moves only the removed backend's clients).
// We are an L4 proxy: the key is always the client's source IP.
import { backendId } from '../../model/types.ts';
import type { Backend } from '../../model/types.ts';
import type { Balancer } from '../balancer.ts';
import { hash32 } from './hash.ts';
import { stableBackends } from './sorted.ts';

/** Points per backend: enough that each backend's share of the ring is within a few percent of 1/N. */
export const DEFAULT_VIRTUAL_NODES = 160;

export class ConsistentHashBalancer implements Balancer {
  readonly usesClientIp = true;
  #list: Backend[] = [];
  /** Sorted ring positions, and for each the index in #list of the backend owning it. */
  #points = new Uint32Array(0);
  #owners = new Uint32Array(0);
  #ringIds = '';
  #virtualNodes: number;

  constructor(backends: readonly Backend[] = [], virtualNodes = DEFAULT_VIRTUAL_NODES) {
    this.#virtualNodes = virtualNodes;
    this.update(backends);
  }

  update(backends: readonly Backend[]): void {
    this.#list = stableBackends(backends);
    // The ring depends only on the backends' identities; the agent updates every sync, so
    // rebuild only when the set changed.
    const ids = this.#list.map(backendId).join(',');
    if (ids === this.#ringIds) return;
    this.#ringIds = ids;
    const entries: Array<[number, number]> = [];
    this.#list.forEach((b, owner) => {
      const id = backendId(b);
      for (let v = 0; v < this.#virtualNodes; v++) entries.push([hash32(`${id}#${v}`), owner]);
    });
    // Ties (two points on one position) are broken by backend order, so the ring is deterministic.
    entries.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    this.#points = Uint32Array.from(entries, (e) => e[0]);
    this.#owners = Uint32Array.from(entries, (e) => e[1]);
  }

  pick(clientIp: string): Backend | undefined {
    if (this.#points.length === 0) return undefined;
    return this.#list[this.#owners[this.#slot(clientIp)]!];
  }

  /** The owner of the client's point, then the next distinct backends clockwise around the ring. */
  candidates(clientIp: string): Backend[] {
    const n = this.#points.length;
    if (n === 0) return [];
    const seen = new Set<number>();
    const out: Backend[] = [];
    const start = this.#slot(clientIp);
    for (let i = 0; i < n && out.length < this.#list.length; i++) {
      const owner = this.#owners[(start + i) % n]!;
      if (seen.has(owner)) continue;
      seen.add(owner);
      out.push(this.#list[owner]!);
    }
    return out;
  }

  dialSucceeded(_clientIp: string, _backend: Backend): void {}

  dialFailed(_clientIp: string, _backend: Backend): void {}

  backends(): readonly Backend[] {
    return this.#list;
  }

  /** The first ring point at or after the client's hash, wrapping past the top. */
  #slot(clientIp: string): number {
    const h = hash32(clientIp);
    let lo = 0;
    let hi = this.#points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.#points.length ? 0 : lo;
  }
}
