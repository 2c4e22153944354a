// Pure planning: from the live nat table (a full sync) or from the state we last wrote plus
// PREROUTING/OUTPUT (an incremental sync), the one `iptables-restore --noflush` payload that makes
// the kernel match, touching only our chains and our jumps. Chain contents change rule by rule
// (delta.ts); declaring a chain (":NAME - [0:0]") under --noflush flushes it, which is used for
// chains that are new or cheaper to refill. kube-proxy's chains are never named.
import { isOurChain, OUR_CHAINS } from '../rules/chains.ts';
import { jumpRuleSpec } from '../rules/syntax.ts';
import type { JumpRule, RenderedRules } from '../rules/types.ts';
import { ruleTarget, sameRule } from './args.ts';
import { planDelta, type ChainRules, type DeltaOptions } from './delta.ts';
import { checkJumpOrder, type JumpOrder } from './order.ts';
import type { NatTable } from './save.ts';

export interface SyncPlan {
  /** Body of the nat-table restore (without "*nat"/"COMMIT"); '' when the table already matches. */
  payload: string;
  /** What was wrong with our jumps or chains and is being fixed, for logs and metrics. */
  repairs: string[];
  /** Jumps inserted because our chain did not exist yet: a first install, not a repair. */
  installed: string[];
  /** Each of our rendered chains as it reads once the payload is applied (the next sync's baseline). */
  chains: Map<string, string[]>;
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

function ourJumps(live: NatTable, chain: string): OurJump[] {
  return (live.chains.get(chain)?.rules ?? []).flatMap((line, i) => {
    const target = ruleTarget(line);
    return target !== undefined && isOurChain(target) ? [{ line, position: i + 1, target }] : [];
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

interface JumpPlan {
  deletions: string[];
  inserts: string[];
  repairs: string[];
  installed: string[];
}

/** Our jumps in every chain of `live` that is not ours: the expected ones first, in order, no others. */
function planJumps(rendered: RenderedRules, live: NatTable): JumpPlan {
  const plan: JumpPlan = { deletions: [], inserts: [], repairs: [], installed: [] };
  const wanted = new Set(rendered.chains);
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
    plan.deletions.push(...present.map((p) => deleteLine(p.line)));
    expected.forEach((j, k) => plan.inserts.push(`-I ${chain} ${k + 1} ${jumpRuleSpec(j)}`));

    expected.forEach((j, k) => {
      const order = orders.find((o) => o.chain === chain && o.target === j.target && o.expectedPosition === k + 1);
      if (!order || (order.first && inPlace(k))) return;
      const fresh = order.positions.length === 0 && !live.chains.has(j.target);
      if (fresh) plan.installed.push(`${chain}: jump to ${j.target} inserted at position ${k + 1}`);
      else plan.repairs.push(jumpRepair(order));
    });
    const expectedTargets = new Set(expected.map((j) => j.target));
    for (const p of present.filter((p) => !expectedTargets.has(p.target))) {
      const why = wanted.has(p.target) ? 'not expected in this chain' : `${p.target} is not used by the current layout`;
      plan.repairs.push(`${chain}: removed jump to ${p.target} at position ${p.position} (${why})`);
    }
  }
  return plan;
}

export interface SyncOptions {
  /** Flush and refill our chains rather than delete rules by spec (the retry after a failed write). */
  refillChains?: boolean;
}

/** A full sync: plans against the whole live nat table (iptables-save). */
export function planSync(rendered: RenderedRules, live: NatTable, options: SyncOptions = {}): SyncPlan {
  const wanted = new Set(rendered.chains);
  const liveOurs = new Map<string, string[]>();
  for (const name of options.refillChains ? [] : rendered.chains) {
    const c = live.chains.get(name);
    if (c) liveOurs.set(name, c.rules);
  }
  const delta = planDelta(liveOurs, rendered);

  const declarations: string[] = [];
  const removals: string[] = [];
  const repairs: string[] = [];
  const stale = OUR_CHAINS.filter((name) => !wanted.has(name) && live.chains.has(name));
  for (const name of stale) {
    declarations.push(declare(name));
    removals.push(`-X ${name}`);
    repairs.push(`removed chain ${name}: not used by the current layout`);
  }
  const jumps = planJumps(rendered, live);
  return {
    payload: toPayload([...delta.lines, ...declarations, ...jumps.deletions, ...jumps.inserts, ...removals]),
    repairs: [...repairs, ...jumps.repairs],
    installed: jumps.installed,
    chains: delta.next,
  };
}

/** Why an incremental sync cannot be trusted and a full sync must run instead. */
export interface FullSyncNeeded {
  fullSyncNeeded: string;
}

/**
 * An incremental sync: plans our chains against `written` (what the last successful sync left
 * in them) and our jumps against `builtins`, a fresh read of just the chains our jumps live in
 * (PREROUTING and OUTPUT). A missing jump means the table may have been flushed or our chain
 * deleted, which only a full read can tell: that asks for a full sync. Long chains may take
 * their changes as overrides (deltaOptions; override.ts).
 */
export function planIncremental(
  rendered: RenderedRules,
  written: ChainRules,
  builtins: NatTable,
  deltaOptions: DeltaOptions = {},
): SyncPlan | FullSyncNeeded {
  const chains = [...written.keys()];
  if (chains.length !== rendered.chains.length || rendered.chains.some((c) => !written.has(c))) {
    return { fullSyncNeeded: `chains changed (${chains.join(', ')} -> ${rendered.chains.join(', ')})` };
  }
  const missing = checkJumpOrder(builtins, rendered.jumps).find((o) => o.positions.length === 0);
  if (missing) return { fullSyncNeeded: `${missing.chain}: jump to ${missing.target} is missing` };

  // Our chains exist (we wrote them); the jump planner only asks whether they do.
  const believed: NatTable = { chains: new Map(builtins.chains) };
  for (const name of written.keys()) believed.chains.set(name, { rules: [] });
  const delta = planDelta(written, rendered, deltaOptions);
  const jumps = planJumps(rendered, believed);
  return {
    payload: toPayload([...delta.lines, ...jumps.deletions, ...jumps.inserts]),
    repairs: jumps.repairs,
    installed: jumps.installed,
    chains: delta.next,
  };
}

/** Removes every rule and chain of ours (either layout) and every jump to them; '' when none exist. */
export function planCleanup(live: NatTable): string {
  const deletions = [...live.chains.keys()]
    .filter((c) => !isOurChain(c))
    .flatMap((c) => ourJumps(live, c).map((p) => deleteLine(p.line)));
  const ours = OUR_CHAINS.filter((name) => live.chains.has(name));
  return toPayload([...ours.map(declare), ...deletions, ...ours.map((name) => `-X ${name}`)]);
}
