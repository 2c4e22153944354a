// The backends a policy chooses from, in a stable order without duplicates: sources give no
// order guarantee, and a policy's choices must not change when only the order does.
import type { Backend } from '../../model/types.ts';
import { dedupe } from '../backends.ts';

export function stableBackends(backends: readonly Backend[]): Backend[] {
  return dedupe(backends).sort(compareBackends);
}

export function compareBackends(a: Backend, b: Backend): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  return a.port - b.port;
}
