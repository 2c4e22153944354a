// Where our jumps sit in PREROUTING/OUTPUT relative to kube-proxy's KUBE-SERVICES, with a
// message a human can act on. A jump counts as ours by its target, whatever its comment.
import { KUBE_SERVICES_CHAIN } from '../rules/chains.ts';
import type { JumpRule } from '../rules/types.ts';
import { ruleTarget } from './args.ts';
import type { NatTable } from './save.ts';

export interface JumpOrder {
  chain: JumpRule['chain'];
  target: string;
  /** 1-based positions of every rule in `chain` that jumps to `target`. */
  positions: number[];
  /** Where the jump belongs: 1, or k for the k-th of several jumps into one chain. */
  expectedPosition: number;
  /** First rule in `chain` jumping to KUBE-SERVICES, if kube-proxy has one. */
  kubeServicesPosition?: number;
  /** True when the jump is there exactly once, at expectedPosition. */
  first: boolean;
  /** Why the order is wrong and what it does to traffic; undefined when `first`. */
  message?: string;
}

const REPAIR_NOTE = 'edgeproxy repairs this on its next sync.';

function describe(o: Omit<JumpOrder, 'message'>): string | undefined {
  if (o.first) return undefined;
  const { chain, target, positions, expectedPosition, kubeServicesPosition: ks } = o;
  const firstAt = positions[0];
  if (firstAt === undefined) {
    const where = ks === undefined ? '' : ` (KUBE-SERVICES is at position ${ks})`;
    return `${chain}: no jump to ${target}${where}: proxied services are not intercepted and go to kube-proxy. ${REPAIR_NOTE}`;
  }
  const parts: string[] = [];
  if (ks !== undefined && ks < firstAt) {
    parts.push(
      `KUBE-SERVICES (position ${ks}) is before ${target} (position ${firstAt}): kube-proxy will DNAT proxied services first; clients may see 'No route to host'.`,
    );
  } else if (firstAt !== expectedPosition) {
    parts.push(`${target} is at position ${firstAt}, expected ${expectedPosition}: the rules before it see proxied traffic first.`);
  }
  if (positions.length > 1) {
    parts.push(`${target} is jumped to ${positions.length} times (positions ${positions.join(', ')}).`);
  }
  return `${chain}: ${parts.join(' ')} ${REPAIR_NOTE}`;
}

export function checkJumpOrder(table: NatTable, jumps: JumpRule[]): JumpOrder[] {
  const seenPerChain = new Map<string, number>();
  return jumps.map((jump) => {
    const expectedPosition = (seenPerChain.get(jump.chain) ?? 0) + 1;
    seenPerChain.set(jump.chain, expectedPosition);
    const targets = (table.chains.get(jump.chain)?.rules ?? []).map(ruleTarget);
    const positions = targets.flatMap((t, i) => (t === jump.target ? [i + 1] : []));
    const ksIndex = targets.indexOf(KUBE_SERVICES_CHAIN);
    const order: Omit<JumpOrder, 'message'> = {
      chain: jump.chain,
      target: jump.target,
      positions,
      expectedPosition,
      ...(ksIndex >= 0 ? { kubeServicesPosition: ksIndex + 1 } : {}),
      first: positions.length === 1 && positions[0] === expectedPosition,
    };
    const message = describe(order);
    return message === undefined ? order : { ...order, message };
  });
}
