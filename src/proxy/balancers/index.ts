// The policy factory: a port's spec (policy, session affinity) → its Balancer, and a balancer a
// listener can keep while its spec's policy changes (the manager reconfigures it in place).
import type { Backend, LoadBalancerPolicy } from '../../model/types.ts';
import { AffinityBalancer } from '../affinity.ts';
import type { Balancer } from '../balancer.ts';
import { RoundRobinBalancer, type SharedRotation } from '../roundRobin.ts';
import type { ProxyPortSpec } from '../types.ts';
import { ConsistentHashBalancer } from './consistentHash.ts';
import { RandomBalancer, type RandomFn } from './random.ts';

export { ConsistentHashBalancer } from './consistentHash.ts';
export { RandomBalancer } from './random.ts';
export { RoundRobinBalancer } from '../roundRobin.ts';
export { AffinityBalancer } from '../affinity.ts';

export type BalancerSpec = Pick<ProxyPortSpec, 'policy' | 'sessionAffinitySeconds'>;

export interface BalancerOptions {
  /** Monotonic milliseconds, for the affinity table. */
  now?: () => number;
  random?: RandomFn;
  /** Affinity table bound per port. */
  maxAffinityEntries?: number;
  /** Round robin's rotation, shared with the port's listeners in worker threads. */
  rotation?: SharedRotation;
}

export function createBalancer(spec: BalancerSpec, opts: BalancerOptions = {}): Balancer {
  const policy = createPolicy(spec.policy ?? 'ROUND_ROBIN', opts);
  if (spec.sessionAffinitySeconds === undefined) return policy;
  return new AffinityBalancer(policy, {
    timeoutSeconds: spec.sessionAffinitySeconds,
    ...(opts.now !== undefined && { now: opts.now }),
    ...(opts.maxAffinityEntries !== undefined && { maxEntries: opts.maxAffinityEntries }),
  });
}

function createPolicy(policy: LoadBalancerPolicy, opts: BalancerOptions): Balancer {
  switch (policy) {
    case 'ROUND_ROBIN':
      return new RoundRobinBalancer([], opts.rotation);
    case 'RANDOM':
      return new RandomBalancer([], opts.random);
    case 'CONSISTENT_HASH':
      return new ConsistentHashBalancer();
  }
}

/** Short human name, for plan and logs: "round-robin", "random", "hash", "affinity 10800s". */
export function policyLabel(spec: BalancerSpec): string {
  if (spec.sessionAffinitySeconds !== undefined) return `affinity ${spec.sessionAffinitySeconds}s`;
  switch (spec.policy ?? 'ROUND_ROBIN') {
    case 'ROUND_ROBIN':
      return 'round-robin';
    case 'RANDOM':
      return 'random';
    case 'CONSISTENT_HASH':
      return 'hash';
  }
}

function balancerKey(spec: BalancerSpec): string {
  return `${spec.policy ?? 'ROUND_ROBIN'}/${spec.sessionAffinitySeconds ?? '-'}`;
}

/**
 * A Balancer whose policy can be swapped without replacing the listener that holds it: the
 * new policy gets the current backends at once. Swapping starts the new policy fresh (an
 * affinity table is not carried over: its timeout or first choice may have changed).
 */
export class ReconfigurableBalancer implements Balancer {
  get usesClientIp(): boolean {
    return this.#inner.usesClientIp;
  }

  #opts: BalancerOptions;
  #key: string;
  #inner: Balancer;
  #backends: readonly Backend[] = [];

  constructor(spec: BalancerSpec, opts: BalancerOptions = {}) {
    this.#opts = opts;
    this.#key = balancerKey(spec);
    this.#inner = createBalancer(spec, opts);
  }

  /** Applies spec's policy; returns true when it differed and the policy was replaced. */
  configure(spec: BalancerSpec): boolean {
    const key = balancerKey(spec);
    if (key === this.#key) return false;
    this.#key = key;
    this.#inner = createBalancer(spec, this.#opts);
    this.#inner.update(this.#backends);
    return true;
  }

  update(backends: readonly Backend[]): void {
    this.#backends = [...backends];
    this.#inner.update(backends);
  }

  pick(clientIp: string): Backend | undefined {
    return this.#inner.pick(clientIp);
  }

  candidates(clientIp: string): Backend[] {
    return this.#inner.candidates(clientIp);
  }

  dialSucceeded(clientIp: string, backend: Backend): void {
    this.#inner.dialSucceeded(clientIp, backend);
  }

  dialFailed(clientIp: string, backend: Backend): void {
    this.#inner.dialFailed(clientIp, backend);
  }

  backends(): readonly Backend[] {
    return this.#inner.backends();
  }
}
