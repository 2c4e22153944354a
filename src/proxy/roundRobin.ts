// Round robin: each new connection goes to the next backend in a stable order.
import type { Backend } from '../model/types.ts';
import type { Balancer } from './balancer.ts';

export class RoundRobinBalancer implements Balancer {
  #list: Backend[] = [];
  /** Index of the backend the next pick returns. */
  #next = 0;
  /** The last picked backend, so an update continues after it instead of restarting. */
  #last: Backend | undefined;

  constructor(backends: readonly Backend[] = []) {
    this.update(backends);
  }

  update(backends: readonly Backend[]): void {
    // Sorted so that a reordered but equal list (sources give no order guarantee) does not
    // disturb the rotation, and so that the successor of a removed backend is well defined.
    this.#list = [...backends].sort(compareBackends);
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
    const b = this.#list[this.#next];
    if (b === undefined) return undefined;
    this.#last = b;
    this.#next = (this.#next + 1) % this.#list.length;
    return b;
  }

  candidates(clientIp: string): Backend[] {
    const start = this.#next;
    const first = this.pick(clientIp);
    if (first === undefined) return [];
    const n = this.#list.length;
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

function compareBackends(a: Backend, b: Backend): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  return a.port - b.port;
}
