// Which of a service port's backends may receive traffic, by Kubernetes semantics.
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';

/**
 * The backends to balance over: the ready ones; when none is ready, the serving ones
 * (terminating pods that still answer), so that a rollout's tail or a scale-down to zero
 * ready pods does not drop connections that could still be served — what kube-proxy does.
 * A backend that is not serving is never used. An address listed twice (e.g. in two
 * slices) is kept once, first occurrence wins.
 */
export function usableBackends(backends: readonly Backend[]): Backend[] {
  const ready = dedupe(backends.filter((b) => b.ready && b.serving));
  if (ready.length > 0) return ready;
  return dedupe(backends.filter((b) => b.serving));
}

/** Each ip:port once, first occurrence wins. */
export function dedupe(backends: readonly Backend[]): Backend[] {
  const seen = new Set<string>();
  const out: Backend[] = [];
  for (const b of backends) {
    const id = backendId(b);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(b);
  }
  return out;
}
