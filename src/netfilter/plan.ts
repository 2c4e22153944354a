// Pure planning: from the live nat table and the rendered rules, the one
// `iptables-restore --noflush` payload that makes the kernel match, touching only our chains
// and our jumps. Declaring a chain (":NAME - [0:0]") under --noflush flushes it, so our chains
// are emptied and refilled in the same atomic transaction; kube-proxy's chains are never named.
import { isOurChain, OUR_CHAINS } from '../rules/chains.ts';
import { jumpRuleSpec } from '../rules/syntax.ts';
import type { JumpRule, RenderedRules } from '../rules/types.ts';
import { ruleTarget, sameRule, splitRuleArgs } from './args.ts';
import { checkJumpOrder, type JumpOrder } from './order.ts';
import type { NatTable } from './save.ts';

export interface SyncPlan {
  /** Body of the nat-table restore (without "*nat"/"COMMIT"); '' when the table already matches. */
  payload: string;
  /** What was wrong with our jumps or chains and is being fixed, for logs and metrics. */
  repairs: string[];
  /** Jumps inserted because our chain did not exist yet: a first install, not a repair. */
  installed: string[];
}

interface OurJump {
  line: string;
  position: number;
  target: string;
}

function toPayload(lines: string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

function declare(chain: string): string {
  return `:${chain} - [0:0]`;
}

/** "-A CHAIN spec" -> "-D CHAIN spec": deletes exactly that rule, never one by position. */
function deleteLine(savedLine: string): string {
  return `-D${savedLine.slice(2)}`;
}

function chainOfRule(line: string): string {
  return splitRuleArgs(line)[1] ?? '';
}

function ourJumps(live: NatTable, chain: string): OurJump[] {
  return (live.chains.get(chain)?.rules ?? []).flatMap((line, i) => {
    const target = ruleTarget(line);
    return target !== undefined && isOurChain(target) ? [{ line, position: i + 1, target }] : [];
  });
}

function chainsHoldRenderedRules(rendered: RenderedRules, live: NatTable): boolean {
  return rendered.chains.every((name) => {
    const have = live.chains.get(name)?.rules;
    if (!have) return false;
    const want = rendered.rules.filter((r) => chainOfRule(r) === name);
    return have.length === want.length && have.every((line, i) => sameRule(line, want[i] as string));
  });
}

function jumpRepair(o: JumpOrder): string {
  const { chain, target, positions, expectedPosition: at, kubeServicesPosition: ks } = o;
  const firstAt = positions[0];
  if (firstAt === undefined) return `${chain}: jump to ${target} was missing; inserted at position ${at}`;
  if (positions.length > 1) {
    return `${chain}: jump to ${target} was duplicated (positions ${positions.join(', ')}); kept one at position ${at}`;
  }
  if (ks !== undefined && ks < firstAt) {
    return `${chain}: jump to ${target} was behind KUBE-SERVICES (position ${firstAt}, KUBE-SERVICES at ${ks}); moved to position ${at}`;
  }
  if (firstAt !== at) return `${chain}: jump to ${target} was at position ${firstAt}; moved to position ${at}`;
  return `${chain}: jump to ${target} differed from the expected rule; replaced it`;
}

export function planSync(rendered: RenderedRules, live: NatTable): SyncPlan {
  const declarations: string[] = [];
  const deletions: string[] = [];
  const appends: string[] = [];
  const inserts: string[] = [];
  const removals: string[] = [];
  const repairs: string[] = [];
  const installed: string[] = [];
  const wanted = new Set(rendered.chains);

  if (!chainsHoldRenderedRules(rendered, live)) {
    declarations.push(...rendered.chains.map(declare));
    appends.push(...rendered.rules);
  }

  const stale = OUR_CHAINS.filter((name) => !wanted.has(name) && live.chains.has(name));
  for (const name of stale) {
    declarations.push(declare(name));
    removals.push(`-X ${name}`);
    repairs.push(`removed chain ${name}: not used by the current layout`);
  }

  const expectedByChain = new Map<string, JumpRule[]>();
  for (const j of rendered.jumps) expectedByChain.set(j.chain, [...(expectedByChain.get(j.chain) ?? []), j]);
  const orders = checkJumpOrder(live, rendered.jumps);
  const foreignChains = new Set([...[...live.chains.keys()].filter((c) => !isOurChain(c)), ...expectedByChain.keys()]);

  for (const chain of foreignChains) {
    const expected = expectedByChain.get(chain) ?? [];
    const specs = expected.map((j) => `-A ${chain} ${jumpRuleSpec(j)}`);
    const present = ourJumps(live, chain);
    const inPlace = (k: number) => {
      const p = present[k];
      return p !== undefined && p.position === k + 1 && sameRule(p.line, specs[k] as string);
    };
    if (present.length === expected.length && expected.every((_, k) => inPlace(k))) continue;

    // Delete every jump of ours in this chain by its exact text, then insert the expected
    // ones at the top in order; deleting first keeps the insert positions exact.
    deletions.push(...present.map((p) => deleteLine(p.line)));
    expected.forEach((j, k) => inserts.push(`-I ${chain} ${k + 1} ${jumpRuleSpec(j)}`));

    expected.forEach((j, k) => {
      const order = orders.find((o) => o.chain === chain && o.target === j.target && o.expectedPosition === k + 1);
      if (!order || (order.first && inPlace(k))) return;
      const fresh = order.positions.length === 0 && !live.chains.has(j.target);
      if (fresh) installed.push(`${chain}: jump to ${j.target} inserted at position ${k + 1}`);
      else repairs.push(jumpRepair(order));
    });
    const expectedTargets = new Set(expected.map((j) => j.target));
    for (const p of present.filter((p) => !expectedTargets.has(p.target))) {
      const why = wanted.has(p.target) ? 'not expected in this chain' : `${p.target} is not used by the current layout`;
      repairs.push(`${chain}: removed jump to ${p.target} at position ${p.position} (${why})`);
    }
  }

  return { payload: toPayload([...declarations, ...deletions, ...appends, ...inserts, ...removals]), repairs, installed };
}

/** Removes every rule and chain of ours (either layout) and every jump to them; '' when none exist. */
export function planCleanup(live: NatTable): string {
  const deletions = [...live.chains.keys()]
    .filter((c) => !isOurChain(c))
    .flatMap((c) => ourJumps(live, c).map((p) => deleteLine(p.line)));
  const ours = OUR_CHAINS.filter((name) => live.chains.has(name));
  return toPayload([...ours.map(declare), ...deletions, ...ours.map((name) => `-X ${name}`)]);
}
