// Listener ports from a configured range (config proxy.portRange, like kube-proxy userspace's
// --proxy-port-range): predictable ports for firewalls, and a bind that skips the kernel's
// free-port search. Pure bookkeeping: the caller binds, and reports a port someone else holds.

export interface PortRange {
  from: number;
  to: number;
}

/** "FROM-TO" with 1024 ≤ FROM ≤ TO ≤ 65535; "" means none (kernel-chosen ports). Returns an error text when invalid. */
export function parsePortRange(text: string): PortRange | undefined | { error: string } {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(trimmed);
  if (m === null) return { error: `must be "FROM-TO" such as "40000-49999", or "" (got "${text}")` };
  const from = Number(m[1]);
  const to = Number(m[2]);
  if (from < 1024 || to > 65535 || from > to) return { error: `must satisfy 1024 ≤ FROM ≤ TO ≤ 65535 (got "${text}")` };
  return { from, to };
}

export const formatPortRange = (r: PortRange): string => `${r.from}-${r.to}`;

/**
 * Hands out the ports of one range to port ids. An id keeps its port until released. Free ports
 * wait in a queue: a released port goes to its end, so it is reused only after every other free
 * port (connections or conntrack entries of its old service may still be around). A port another
 * process holds goes to the end too, and is tried again only once the others are used.
 */
export class PortAllocator {
  readonly range: PortRange;
  #byId = new Map<string, number>();
  /** Free ports, next to hand out first. A Set iterates in insertion order, and deletes in O(1). */
  #free = new Set<number>();
  /** Ports whose bind failed because another process holds them (until handed out again). */
  #heldElsewhere = new Set<number>();

  constructor(range: PortRange) {
    this.range = range;
    for (let p = range.from; p <= range.to; p++) this.#free.add(p);
  }

  /** Ports in the range. */
  get size(): number {
    return this.range.to - this.range.from + 1;
  }

  /** Ports not assigned to an id (some may be held by another process). */
  get available(): number {
    return this.#free.size;
  }

  /** Ports last found held by another process. */
  get heldElsewhere(): readonly number[] {
    return [...this.#heldElsewhere];
  }

  portOf(id: string): number | undefined {
    return this.#byId.get(id);
  }

  /** The id's port: the one it has, else the free port that waited longest; undefined when none is free. */
  allocate(id: string): number | undefined {
    const own = this.#byId.get(id);
    if (own !== undefined) return own;
    const next = this.#free.values().next();
    if (next.done === true) return undefined;
    const port = next.value;
    this.#free.delete(port);
    this.#heldElsewhere.delete(port);
    this.#byId.set(id, port);
    return port;
  }

  /** The bind of the id's port failed because another process holds it: the id loses it, and the port is tried last. */
  markHeldElsewhere(id: string): void {
    const port = this.#byId.get(id);
    if (port === undefined) return;
    this.#byId.delete(id);
    this.#heldElsewhere.add(port);
    this.#free.add(port);
  }

  /** The id's listener is closed (or never opened): its port goes to the end of the queue. */
  release(id: string): void {
    const port = this.#byId.get(id);
    if (port === undefined) return;
    this.#byId.delete(id);
    this.#free.add(port);
  }
}
