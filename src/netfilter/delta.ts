// Pure per-rule delta for our chains: from what a chain holds now (the last state we wrote,
// or the live table) to the rendered rules, as `-D <exact line>` / `-A` / `-I` lines for one
// `iptables-restore --noflush`. Rule order inside our chains does not matter (every rule matches
// a distinct destination ip/protocol/port), except in EDGE-MESH, where the RETURNs of ignored
// services must come before the protocol jumps: new RETURNs go in with `-I EDGE-MESH 1`.
import { EDGE_MESH_CHAIN } from '../rules/chains.ts';
import type { RenderedRules } from '../rules/types.ts';
import { splitRuleArgs } from './args.ts';

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
  const byChain = new Map<string, string[]>(rendered.chains.map((c) => [c, []]));
  for (const line of rendered.rules) {
    const chain = line.slice(3, line.indexOf(' ', 3));
    const list = byChain.get(chain);
    if (!list) throw new Error(`rendered rule for a chain not in rendered.chains: ${line}`);
    list.push(line);
  }
  return byChain;
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

/**
 * The lines that turn `current` into `rendered` for every rendered chain. A chain missing from
 * `current` is created; a chain whose order is wrong (a RETURN behind a protocol jump) or whose
 * deletions would cost more than a refill is flushed and refilled; otherwise only the rules that
 * differ are deleted (by their exact current text) or added. Chains not rendered are left alone.
 */
export function planDelta(current: ChainRules, rendered: RenderedRules): ChainDelta {
  const declarations: string[] = [];
  const deletions: string[] = [];
  const inserts: string[] = [];
  const appends: string[] = [];
  const next = new Map<string, string[]>();
  const rewritten: string[] = [];

  for (const [chain, want] of rulesByChain(rendered)) {
    const have = current.get(chain);
    const refill = () => {
      declarations.push(`:${chain} - [0:0]`);
      appends.push(...want);
      next.set(chain, [...want]);
      rewritten.push(chain);
    };
    if (have === undefined || !leadsInOrder(chain, have)) {
      refill();
      continue;
    }
    const { removed, added, kept } = diffChain(have, want);
    if (removed.length > 0 && removed.length * have.length > REFILL_COST_IN_SCANNED_RULES * want.length) {
      refill();
      continue;
    }
    deletions.push(...removed.map((line) => `-D${line.slice(2)}`));
    const leading = added.filter((line) => mustLead(chain, line));
    const trailing = added.filter((line) => !mustLead(chain, line));
    // Inserted at 1 in reverse, so they read in rendered order at the top of the chain.
    for (const line of [...leading].reverse()) inserts.push(`-I ${chain} 1${line.slice(3 + chain.length)}`);
    appends.push(...trailing);
    next.set(chain, added.length === 0 && kept === have ? [...have] : [...leading, ...kept, ...trailing]);
  }
  return { lines: [...declarations, ...deletions, ...inserts, ...appends], next, rewritten };
}
