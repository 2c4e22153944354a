// Random: each new connection goes to a backend chosen uniformly at random (Istio's RANDOM,
// and what kube-proxy's iptables mode does); failover tries the others in random order.
import type { Backend } from '../../model/types.ts';
import type { Balancer } from '../balancer.ts';
import { stableBackends } from './sorted.ts';

/** A number in [0, 1); injectable so tests are deterministic. */
export type RandomFn = () => number;

export class RandomBalancer implements Balancer {
  readonly usesClientIp = false;
  #list: Backend[] = [];
  #random: RandomFn;

  constructor(backends: readonly Backend[] = [], random: RandomFn = Math.random) {
    this.#random = random;
    this.update(backends);
  }

  update(backends: readonly Backend[]): void {
    this.#list = stableBackends(backends);
  }

  pick(_clientIp: string): Backend | undefined {
    return this.#list[this.#index(this.#list.length)];
  }

  candidates(_clientIp: string): Backend[] {
    // Fisher-Yates on a copy: the first element is a uniform pick, the rest a random order.
    const out = [...this.#list];
    for (let i = 0; i < out.length - 1; i++) {
      const j = i + this.#index(out.length - i);
      const tmp = out[i]!;
      out[i] = out[j]!;
      out[j] = tmp;
    }
    return out;
  }

  dialSucceeded(_clientIp: string, _backend: Backend): void {}

  dialFailed(_clientIp: string, _backend: Backend): void {}

  backends(): readonly Backend[] {
    return this.#list;
  }

  #index(n: number): number {
    // Clamped: a RandomFn returning exactly 1 must not index past the end.
    return Math.min(n - 1, Math.floor(this.#random() * n));
  }
}
