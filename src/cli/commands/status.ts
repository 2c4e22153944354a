// `edgeproxy status`: reads the live nat table and says which of our chains exist, how many
// rules they hold, and whether our jumps come before kube-proxy's KUBE-SERVICES.
import { Iptables } from '../../netfilter/iptables.ts';
import { spawnRunner, type CommandRunner } from '../../netfilter/runner.ts';
import { detectBackend } from '../../netfilter/backend.ts';
import { checkJumpOrder } from '../../netfilter/order.ts';
import { countLeftBehind } from '../../netfilter/override.ts';
import { renderRules } from '../../rules/render.ts';
import { EDGE_MESH_CHAIN, OUR_CHAINS, KUBE_SERVICES_CHAIN } from '../../rules/chains.ts';
import type { Layout } from '../../rules/types.ts';

export async function statusCommand(out: NodeJS.WritableStream, runner: CommandRunner = spawnRunner): Promise<number> {
  const backend = await detectBackend(runner);
  out.write(`iptables backend: ${backend.mode} (${backend.reason})\n`);
  const table = await new Iptables({ runner, binaries: backend.binaries }).readNat();
  const present = OUR_CHAINS.filter((c) => table.chains.has(c));
  const kubeProxy = table.chains.has(KUBE_SERVICES_CHAIN);
  out.write(`kube-proxy: ${kubeProxy ? `${KUBE_SERVICES_CHAIN} present (${table.chains.get(KUBE_SERVICES_CHAIN)!.rules.length} rules)` : `no ${KUBE_SERVICES_CHAIN} chain`}\n`);
  if (present.length === 0) {
    out.write('edgeproxy: no chains of ours in the nat table (agent not running, or stopped cleanly)\n');
    return 0;
  }
  for (const chain of present) {
    const rules = table.chains.get(chain)!.rules;
    // EDGE-MESH itself never takes overrides (its RETURNs must lead), and two headless services
    // sharing a pod give it two RETURNs for one address.
    const leftBehind = chain === EDGE_MESH_CHAIN ? 0 : countLeftBehind(rules);
    const note = leftBehind > 0 ? ` (${leftBehind} overridden by a later change; the agent's next quiet resync deletes them)` : '';
    out.write(`chain ${chain}: ${rules.length} rule${rules.length === 1 ? '' : 's'}${note}\n`);
  }

  const layouts: Layout[] = present.some((c) => c.startsWith('EDGE-MESH')) ? ['edge-mesh'] : [];
  if (present.some((c) => c.startsWith('KUBE-PORTALS'))) layouts.push('portals');
  let wrong = 0;
  for (const layout of layouts) {
    const { jumps } = renderRules({ layout, family: 'ipv4', proxied: [], ignored: [] });
    for (const order of checkJumpOrder(table, jumps)) {
      const where = order.positions.length ? `position ${order.positions.join(',')}` : 'missing';
      const ks = order.kubeServicesPosition === undefined ? '' : `, KUBE-SERVICES at ${order.kubeServicesPosition}`;
      out.write(`${order.chain} -> ${order.target}: ${where}${ks} ${order.first ? 'ok' : 'WRONG'}\n`);
      if (order.message) {
        wrong++;
        out.write(`  warning: ${order.message}\n`);
      }
    }
  }
  if (layouts.length > 1) out.write('warning: chains of both layouts exist; the agent removes the unused layout on its next sync, or run `edgeproxy cleanup`\n');
  return wrong > 0 ? 1 : 0;
}
