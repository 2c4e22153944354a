// Pure per-rule delta for our chains: from what a chain holds now (the last state we wrote,
// or the live table) to the rendered rules, as `-D <exact line>` / `-A` / `-I` lines for one
// `iptables-restore --noflush`. Rule order inside our chains does not matter (every rule matches
// a distinct destination ip/protocol/port), except in EDGE-MESH, where the RETURNs of ignored
// services must come before the protocol jumps: new RETURNs go in with `-I EDGE-MESH 1`.
import { EDGE_MESH_CHAIN } from '../rules/chains.ts';
import type { RenderedRules } from '../rules/types.ts';
import { splitRuleArgs } from './args.ts';
import { planOverrides } from './override.ts';

/** Per chain of ours, its rule lines ("-A CHAIN ...") in kernel order. */
export type ChainRules = ReadonlyMap<string, readonly string[]>;

export interface ChainDelta {
  /** Restore lines: chain declarations (create or flush) first, then -D, -I, -A. */
  lines: string[];
  /** Every rendered chain as it reads after `lines` are applied, in kernel order. */
  next: Map<string, string[]>;
  /** Chains declared: created, or flushed and refilled. */
  rewritten: string[];
}

/**
 * A `-D` by spec makes iptables (nft) fetch the chain and compare rule by rule, so deleting
 * many rules from a long chain is quadratic: at 10,000 rules one deletion scans ~1 µs per rule,
 * while refilling costs ~25 µs per rule. A chain is flushed and refilled when its deletions
 * would cost more than that.
 */
export const REFILL_COST_IN_SCANNED_RULES = 25;

/** Rules that must precede every other rule of their chain (EDGE-MESH's RETURNs). */
export function mustLead(chain: string, line: string): boolean {
  return chain === EDGE_MESH_CHAIN && /\s-j RETURN$/.test(line);
}

/** Rendered rule lines grouped by chain, every rendered chain present (maybe empty). */
export function rulesByChain(rendered: RenderedRules): Map<string, string[]> {
  if (rendered.byChain !== undefined) return new Map(rendered.chains.map((c) => [c, [...(rendered.byChain!.get(c) ?? [])]]));
  const byChain = new Map<string, string[]>(rendered.chains.map((c) => [c, []]));
  for (const line of rendered.rules) {
    const chain = line.slice(3, line.indexOf(' ', 3));
    const list = byChain.get(chain);
    if (!list) throw new Error(`rendered rule for a chain not in rendered.chains: ${line}`);
    list.push(line);
  }
  return byChain;
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Argument-wise identity, so a quoted and a bare spelling of one rule are the same rule. */
function ruleKey(line: string): string {
  return splitRuleArgs(line).join('\0');
}

function leadsInOrder(chain: string, rules: readonly string[]): boolean {
  let seenOther = false;
  for (const line of rules) {
    if (!mustLead(chain, line)) seenOther = true;
    else if (seenOther) return false;
  }
  return true;
}

interface ChainDiff {
  /** Lines of `have` to delete, in their exact text. */
  removed: string[];
  /** Lines of `want` to add. */
  added: string[];
  /** `have` minus the removed lines, in order (`have` itself when nothing is removed). */
  kept: readonly string[];
}

/** Multiset difference; exact text first (cheap), argument-wise identity for what is left. */
function diffChain(have: readonly string[], want: readonly string[]): ChainDiff {
  const wanted = new Map<string, number>();
  for (const line of want) wanted.set(line, (wanted.get(line) ?? 0) + 1);
  const unmatchedHave: number[] = [];
  for (let i = 0; i < have.length; i++) {
    const line = have[i] as string;
    const n = wanted.get(line);
    if (n === undefined || n === 0) unmatchedHave.push(i);
    else if (n === 1) wanted.delete(line);
    else wanted.set(line, n - 1);
  }
  const leftWant: string[] = [];
  for (const [line, n] of wanted) for (let k = 0; k < n; k++) leftWant.push(line);
  if (unmatchedHave.length === 0) return { removed: [], added: leftWant, kept: have };

  const byKey = new Map<string, number>();
  for (const line of leftWant) byKey.set(ruleKey(line), (byKey.get(ruleKey(line)) ?? 0) + 1);
  const removedAt = new Set<number>();
  for (const i of unmatchedHave) {
    const key = ruleKey(have[i] as string);
    const n = byKey.get(key) ?? 0;
    if (n > 0) byKey.set(key, n - 1);
    else removedAt.add(i);
  }
  const added = leftWant.filter((line) => {
    const key = ruleKey(line);
    const n = byKey.get(key) ?? 0;
    if (n === 0) return false;
    byKey.set(key, n - 1);
    return true;
  });
  return {
    removed: [...removedAt].map((i) => have[i] as string),
    added,
    kept: removedAt.size === 0 ? have : have.filter((_, i) => !removedAt.has(i)),
  };
}

export interface DeltaOptions {
  /**
   * Chains holding at least this many rules (and no rule that must lead) take changes as
   * overrides, without deletions (override.ts); their leftovers are deleted by the next delta
   * that has no change to make in any chain. Unset: every change is an exact delta.
   */
  overrideFrom?: number;
}

/**
 * The lines that turn `current` into `rendered` for every rendered chain. A chain missing from
 * `current` is created; a chain whose order is wrong (a RETURN behind a protocol jump) or whose
 * deletions would cost more than a refill is flushed and refilled; a long chain may take its
 * changes as overrides (options.overrideFrom); otherwise only the rules that differ are deleted
 * (by their exact current text) or added. Chains not rendered are left alone.
 */
export function planDelta(current: ChainRules, rendered: RenderedRules, options: DeltaOptions = {}): ChainDelta {
  const declarations: string[] = [];
  const deletions: string[] = [];
  const inserts: string[] = [];
  const appends: string[] = [];
  const next = new Map<string, string[]>();
  const rewritten: string[] = [];
  /** Long chains already behaving as rendered: tidied only if no chain has a change to make. */
  const unchanged = new Map<string, { have: readonly string[]; want: string[] }>();

  const exact = (chain: string, want: string[], have: readonly string[] | undefined): void => {
    const refill = () => {
      declarations.push(`:${chain} - [0:0]`);
      appends.push(...want);
      next.set(chain, [...want]);
      rewritten.push(chain);
    };
    if (have === undefined || !leadsInOrder(chain, have)) {
      refill();
      return;
    }
    const { removed, added, kept } = diffChain(have, want);
    if (removed.length > 0 && removed.length * have.length > REFILL_COST_IN_SCANNED_RULES * want.length) {
      refill();
      return;
    }
    deletions.push(...removed.map((line) => `-D${line.slice(2)}`));
    const leading = added.filter((line) => mustLead(chain, line));
    const trailing = added.filter((line) => !mustLead(chain, line));
    // Inserted at 1 in reverse, so they read in rendered order at the top of the chain.
    for (const line of [...leading].reverse()) inserts.push(`-I ${chain} 1${line.slice(3 + chain.length)}`);
    appends.push(...trailing);
    next.set(chain, added.length === 0 && kept === have ? [...have] : [...leading, ...kept, ...trailing]);
  };

  for (const [chain, want] of rulesByChain(rendered)) {
    const have = current.get(chain);
    // The common resync: the chain holds what was rendered, line for line (at 10,000 services
    // the set comparisons below cost ~2 MB of garbage per sync to find nothing).
    if (have !== undefined && sameLines(have, want)) {
      next.set(chain, want); // rulesByChain's own copy: the same lines, no second copy
      continue;
    }
    const overridable =
      options.overrideFrom !== undefined &&
      have !== undefined &&
      have.length >= options.overrideFrom &&
      !have.some((line) => mustLead(chain, line)) &&
      !want.some((line) => mustLead(chain, line));
    const overrides = overridable ? planOverrides(chain, have, want) : undefined;
    if (overrides === 'identical') {
      next.set(chain, [...have!]);
    } else if (overrides === 'unchanged') {
      unchanged.set(chain, { have: have!, want });
    } else if (overrides !== undefined) {
      inserts.push(...overrides.inserts);
      appends.push(...overrides.appends);
      next.set(chain, overrides.next);
    } else {
      exact(chain, want, have);
    }
  }
  const changing = declarations.length + deletions.length + inserts.length + appends.length > 0;
  for (const [chain, { have, want }] of unchanged) {
    if (changing) next.set(chain, [...have]);
    else exact(chain, want, have);
  }
  return { lines: [...declarations, ...deletions, ...inserts, ...appends], next, rewritten };
}
