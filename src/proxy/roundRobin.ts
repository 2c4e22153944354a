// Round robin: each new connection goes to the next backend in a stable order.
import type { Backend } from '../model/types.ts';
import type { Balancer } from './balancer.ts';
import { compareBackends } from './balancers/sorted.ts';

/**
 * A rotation shared by the listeners of one port in several threads: [0] the next ticket, [1]
 * the index last picked (-1 before any pick), in a SharedArrayBuffer. One thread owns it and
 * moves it on updates; the others only draw tickets, so the threads together keep one rotation.
 */
export interface SharedRotation {
  cell: Int32Array;
  owner: boolean;
}

export function newSharedRotation(): SharedRotation {
  const cell = new Int32Array(new SharedArrayBuffer(8));
  cell[1] = -1;
  return { cell, owner: true };
}

export class RoundRobinBalancer implements Balancer {
  readonly usesClientIp = false;
  #list: Backend[] = [];
  /** Index of the backend the next pick returns. */
  #next = 0;
  /** The last picked backend, so an update continues after it instead of restarting. */
  #last: Backend | undefined;
  #shared: SharedRotation | undefined;

  constructor(backends: readonly Backend[] = [], shared?: SharedRotation) {
    this.#shared = shared;
    this.update(backends);
  }

  update(backends: readonly Backend[]): void {
    // Sorted so that a reordered but equal list (sources give no order guarantee) does not
    // disturb the rotation, and so that the successor of a removed backend is well defined.
    const before = this.#list;
    this.#list = [...backends].sort(compareBackends);
    if (this.#shared !== undefined) {
      if (!this.#shared.owner) return;
      const lastIndex = Atomics.load(this.#shared.cell, 1);
      const lastShared = lastIndex >= 0 ? before[lastIndex] : undefined;
      const after = lastShared === undefined ? 0 : this.#list.findIndex((b) => compareBackends(b, lastShared) > 0);
      Atomics.store(this.#shared.cell, 0, after >= 0 ? after : 0);
      return;
    }
    const last = this.#last;
    if (last === undefined) {
      this.#next = 0;
      return;
    }
    // The first backend after the last pick in the stable order; wraps to the start.
    const after = this.#list.findIndex((b) => compareBackends(b, last) > 0);
    this.#next = after >= 0 ? after : 0;
  }

  pick(_clientIp: string): Backend | undefined {
    if (this.#shared !== undefined) return this.#pickShared();
    const b = this.#list[this.#next];
    if (b === undefined) return undefined;
    this.#last = b;
    this.#next = (this.#next + 1) % this.#list.length;
    return b;
  }

  #pickShared(): Backend | undefined {
    const n = this.#list.length;
    if (n === 0) return undefined;
    const ticket = Atomics.add(this.#shared!.cell, 0, 1);
    const i = ((ticket % n) + n) % n; // the ticket wraps to negative after 2^31 picks
    Atomics.store(this.#shared!.cell, 1, i);
    this.#next = (i + 1) % n;
    return this.#list[i];
  }

  candidates(clientIp: string): Backend[] {
    const first = this.pick(clientIp);
    if (first === undefined) return [];
    const n = this.#list.length;
    const start = (this.#next + n - 1) % n; // the index just picked
    const out = [first];
    for (let i = 1; i < n; i++) {
      const b = this.#list[(start + i) % n];
      if (b !== undefined) out.push(b);
    }
    return out;
  }

  dialSucceeded(_clientIp: string, _backend: Backend): void {}

  dialFailed(_clientIp: string, _backend: Backend): void {}

  backends(): readonly Backend[] {
    return this.#list;
  }
}
