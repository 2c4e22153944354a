// iptables-restore text helpers shared by the renderer and the netfilter layer.
import type { JumpRule } from './types.ts';

// Same rule as xtables_save_string() in iptables 1.8: bare when only [A-Za-z0-9_-], else
// double-quoted with ", \ and ' backslash-escaped. Rendering exactly what iptables-save prints
// keeps our text byte-identical to what we read back.
const BARE = /^[A-Za-z0-9_-]+$/;

export function quoteString(value: string): string {
  if (BARE.test(value)) return value;
  return `"${value.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

/** The rule spec (everything after "-A CHAIN") of a jump from a built-in chain to ours. */
export function jumpRuleSpec(jump: JumpRule): string {
  return `-m comment --comment ${quoteString(jump.comment)} -j ${jump.target}`;
}
