// The contract between a proxied port and its balancing policy, so policies (round robin,
// random, client-IP hash, session affinity, with passive health later) are interchangeable.
import type { Backend } from '../model/types.ts';

export interface Balancer {
  /**
   * Whether the choice depends on the client's address (affinity, hashing). When not, the
   * TCP proxy passes '' instead of looking the address up (a getpeername per connection).
   */
  readonly usesClientIp: boolean;
  /** Replaces the set of backends to choose from (already filtered to the usable ones). */
  update(backends: readonly Backend[]): void;
  /** The backend for a new connection or flow from clientIp; undefined when there is none. */
  pick(clientIp: string): Backend | undefined;
  /**
   * The order in which to try backends for one new connection: the pick first, then the
   * failover candidates; each backend at most once, so callers are bounded by its length.
   * Consumes one pick (advances the rotation like pick()).
   */
  candidates(clientIp: string): Backend[];
  /** Feedback after a dial: lets affinity remember the backend and health eject failing ones. */
  dialSucceeded(clientIp: string, backend: Backend): void;
  dialFailed(clientIp: string, backend: Backend): void;
  /** The backends currently chosen from. */
  backends(): readonly Backend[];
}
