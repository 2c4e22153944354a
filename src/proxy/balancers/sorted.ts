// The backends a policy chooses from, in a stable order without duplicates: sources give no
// order guarantee, and a policy's choices must not change when only the order does.
import { backendId } from '../../model/types.ts';
import type { Backend } from '../../model/types.ts';

export function stableBackends(backends: readonly Backend[]): Backend[] {
  const seen = new Set<string>();
  const out: Backend[] = [];
  for (const b of backends) {
    const id = backendId(b);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(b);
  }
  return out.sort(compareBackends);
}

export function compareBackends(a: Backend, b: Backend): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  return a.port - b.port;
}
