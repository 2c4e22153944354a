// Changing a long chain of ours without deleting from it. iptables-nft fetches and parses the
// whole chain for every chain a `-D` touches (~10 µs a rule: ~100 ms at 10,000 rules), while
// `-I` and `-A` cost the same at any length. So in a long chain a changed rule is overridden:
// the new rule goes in at position 1, ahead of the old one, which no packet reaches any more; a
// rule no longer wanted is overridden by a RETURN with the same match, so its packets fall
// through to kube-proxy as if it were gone. The rules left behind are deleted by the next sync
// that has no change to make (the agent's periodic resync), off the path of a change.
import { quoteString } from '../rules/syntax.ts';
import { sameRule, splitRuleArgs } from './args.ts';

/** Chains at least this long take changes as overrides; shorter ones are cheap to delete from (~10 ms). */
export const OVERRIDE_FROM_RULES = 1000;

/** Beyond this many rules left behind in a chain, a change is written as an exact delta instead. */
export const MAX_LEFT_BEHIND = 500;

/** Comment of the RETURN that overrides a removed rule: says what it stands for. */
export const OVERRIDE_COMMENT_PREFIX = 'edgeproxy removed: ';

/** iptables keeps at most 255 characters of a comment. */
const MAX_COMMENT = 255;

// A rule's comment as iptables-save prints it (bare, or double-quoted with backslash escapes).
const COMMENT = / -m comment --comment (?:"(?:[^"\\]|\\.)*"|[^\s"]+)/;
const TARGET = / -[jg] /;

/**
 * The packets a rule matches, as text: the line without its comment and target. Runs on every
 * rule of a long chain at each sync, so it is a regex over the canonical text iptables-save
 * prints (and we render), not an argument parse.
 */
export function matchKey(line: string): string {
  const bare = line.replace(COMMENT, '');
  const at = bare.search(TARGET);
  return at >= 0 ? bare.slice(0, at) : bare;
}

/** Whether a line is a RETURN written to override a removed rule. */
export function isOverrideReturn(line: string): boolean {
  if (!line.endsWith(' -j RETURN') || !line.includes(OVERRIDE_COMMENT_PREFIX)) return false;
  const args = splitRuleArgs(line);
  const at = args.indexOf('--comment');
  return at >= 0 && (args[at + 1]?.startsWith(OVERRIDE_COMMENT_PREFIX) ?? false);
}

/** The RETURN that overrides `line` (same chain, same match). */
export function overrideReturn(chain: string, line: string): string {
  const all = splitRuleArgs(line).slice(2);
  const targetAt = all.findIndex((a) => a === '-j' || a === '-g');
  const args = targetAt >= 0 ? all.slice(0, targetAt) : all;
  const at = args.findIndex((a, i) => a === '--comment' && args[i - 1] === 'comment');
  const note = `${OVERRIDE_COMMENT_PREFIX}${at >= 0 ? args[at + 1] : ''}`.slice(0, MAX_COMMENT);
  if (at >= 0) args[at + 1] = note;
  else args.push('-m', 'comment', '--comment', note);
  // Only the comment can hold characters that need quoting; the rest is printed bare.
  return `-A ${chain} ${args.map((a, i) => (args[i - 1] === '--comment' ? quoteString(a) : a)).join(' ')} -j RETURN`;
}

export interface OverridePlan {
  /** "-I CHAIN 1 ..." lines: the new rules that override old ones, and the RETURNs. */
  inserts: string[];
  /** "-A CHAIN ..." lines: rules for packets no rule of the chain matched. */
  appends: string[];
  /** The chain as it reads once the lines are applied. */
  next: string[];
}

/**
 * A cheap test that `line` may share `key`'s match: a rule with that key has its destination
 * (iptables-save prints `-d` verbatim, and matchKey keeps it) somewhere in its text.
 */
function keyFilter(key: string): (line: string) => boolean {
  const d = / -d (\S+)/.exec(key);
  if (d === null) return () => true;
  const needle = ` -d ${d[1]}`;
  return (line) => line.includes(`${needle} `) || line.endsWith(needle);
}

/**
 * Changes that make `have` behave as `want` (a set of rules with distinct matches) without any
 * deletion. 'identical' when `have` holds exactly `want`; 'unchanged' when it already behaves as
 * `want` but holds leftovers (for a tidy-up); undefined when an exact delta must be written
 * instead: `want` has two rules for the same packets (among those that changed), or more than
 * MAX_LEFT_BEHIND rules would be left behind. Runs at every sync on chains of 10,000 rules, so
 * exact text is compared first and only the matches of rules that differ are looked at.
 */
export function planOverrides(chain: string, have: readonly string[], want: readonly string[]): OverridePlan | 'unchanged' | 'identical' | undefined {
  const unmatchedWant = new Set(want);
  if (unmatchedWant.size !== want.length) return undefined;
  /** Lines of `have` not wanted as they are, or wanted but there twice. */
  const odd = new Set<number>();
  for (let i = 0; i < have.length; i++) if (!unmatchedWant.delete(have[i] as string)) odd.add(i);
  if (odd.size === 0 && unmatchedWant.size === 0) return 'identical';

  // Only matches that a differing line has can need a change.
  const keys = new Map<string, (line: string) => boolean>();
  const oddKey = new Map<number, string>();
  for (const i of odd) {
    const key = matchKey(have[i] as string);
    oddKey.set(i, key);
    if (!keys.has(key)) keys.set(key, keyFilter(key));
  }
  const wanted = new Map<string, string>();
  for (const line of unmatchedWant) {
    const key = matchKey(line);
    if (wanted.has(key)) return undefined;
    wanted.set(key, line);
    if (!keys.has(key)) keys.set(key, keyFilter(key));
  }
  const keyOf = (line: string): string | undefined => {
    for (const [key, mayShare] of keys) if (mayShare(line) && matchKey(line) === key) return key;
    return undefined;
  };
  // The rule a packet meets first, per such match; wanted rules already in place join `wanted`.
  const effective = new Map<string, string>();
  for (let i = 0; i < have.length; i++) {
    const line = have[i] as string;
    const key = odd.has(i) ? oddKey.get(i) : keyOf(line);
    if (key === undefined) continue;
    if (!odd.has(i)) {
      if (wanted.has(key) && wanted.get(key) !== line) return undefined;
      wanted.set(key, line);
    }
    if (!effective.has(key)) effective.set(key, line);
  }
  const inserts: string[] = [];
  const appends: string[] = [];
  for (const [key, line] of wanted) {
    const current = effective.get(key);
    if (current === undefined) appends.push(line);
    else if (current !== line && !sameRule(current, line)) inserts.push(line);
  }
  for (const [key, line] of effective) {
    if (!wanted.has(key) && !isOverrideReturn(line)) inserts.push(overrideReturn(chain, line));
  }
  if (inserts.length === 0 && appends.length === 0) return 'unchanged';
  // Inserted at 1 one after the other, so the chain reads them in reverse.
  const next = [...[...inserts].reverse(), ...have, ...appends];
  if (next.length - want.length > MAX_LEFT_BEHIND) return undefined;
  return {
    inserts: inserts.map((line) => `-I ${chain} 1${line.slice(3 + chain.length)}`),
    appends,
    next,
  };
}

/** Rules of a chain that no packet meets or that only stand in for a removed rule: what a tidy-up deletes. */
export function countLeftBehind(rules: readonly string[]): number {
  const seen = new Set<string>();
  let n = 0;
  for (const line of rules) {
    const key = matchKey(line);
    if (seen.has(key) || isOverrideReturn(line)) n++;
    seen.add(key);
  }
  return n;
}
