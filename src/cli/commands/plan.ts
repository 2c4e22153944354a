// `edgeproxy plan`: what the agent would do with these manifests and this config — the service
// table with reasons, and the exact rules — without root and without touching anything.
import { resolveConfig } from './run.ts';
import { loadManifestDirectory } from '../../sources/manifests/load.ts';
import { formatManifestError } from '../../sources/manifests/errors.ts';
import { StateStore } from '../../state/store.ts';
import { computeDesired, desiredRules, type Desired } from '../../agent/desired.ts';
import { renderRules } from '../../rules/render.ts';
import { backendId } from '../../model/types.ts';
import { policyLabel } from '../../proxy/balancers/index.ts';

/** Listener ports are picked by the kernel when the agent starts; the plan numbers them from here. */
const ILLUSTRATIVE_FIRST_PORT = 40000;

export async function planCommand(opts: { manifests?: string; config?: string }, out: NodeJS.WritableStream): Promise<number> {
  const config = await resolveConfig(opts);
  const loaded = await loadManifestDirectory(config.manifests);
  const store = new StateStore();
  for (const svc of loaded.services) store.upsertService(svc);
  for (const slice of loaded.slices) store.upsertSlice(slice);
  for (const rule of loaded.destinationRules) store.upsertDestinationRule(rule);
  const desired = computeDesired(store.snapshot(), config);

  for (const err of loaded.errors) out.write(`error: ${formatManifestError(err)}\n`);
  if (loaded.errors.length > 0) out.write('(invalid documents are skipped; everything else is planned)\n\n');

  out.write(serviceTable(desired));
  const listenPorts = new Map<string, number>();
  for (const spec of desired.proxySpecs) listenPorts.set(spec.id, ILLUSTRATIVE_FIRST_PORT + listenPorts.size);
  const rendered = renderRules(desiredRules(desired, listenPorts, { layout: config.layout, ...(config.serviceCIDR ? { serviceCIDR: config.serviceCIDR } : {}) }));
  out.write(`\n# nat rules for layout "${config.layout}" (listener ports are assigned at start; shown from ${ILLUSTRATIVE_FIRST_PORT})\n`);
  for (const chain of rendered.chains) out.write(`:${chain} - [0:0]\n`);
  for (const jump of rendered.jumps) out.write(`-I ${jump.chain} 1 -m comment --comment "${jump.comment}" -j ${jump.target}\n`);
  for (const rule of rendered.rules) out.write(`${rule}\n`);
  return loaded.errors.length > 0 ? 1 : 0;
}

export function serviceTable(desired: Desired): string {
  const rows: string[][] = [['SERVICE', 'CLUSTER-IP', 'PORTS', 'ENDPOINTS', 'HANDLED BY', 'POLICY', 'REASON']];
  for (const plan of desired.services) {
    const svc = plan.service;
    // A starred port belongs to a proxied service but stays with kube-proxy; the reason says why.
    const ports = plan.ports.map((p) => `${p.port.port}/${p.port.protocol}${p.skipped ? '*' : ''}`).join(',') || '-';
    const endpoints = [...new Set(plan.ports.flatMap((p) => p.backends.filter((b) => b.ready || b.serving).map(backendId)))];
    const notes = plan.ports.flatMap((p) => [
      ...(p.skipped ? [`${p.portName}: ${p.skipped}`] : []),
      ...(p.trafficPolicyNote ? [`${p.portName}: ${p.trafficPolicyNote}`] : []),
      ...(p.balancing?.note ? [`${p.portName}: ${p.balancing.note}`] : []),
    ]);
    // One label per distinct policy of the proxied ports ("hash", "affinity 10800s"), with a
    // DestinationRule named when it chose; the full source is in the logs.
    const policies = [...new Set(plan.ports.flatMap((p) => (p.spec && p.balancing ? [policyLabel(p.spec) + (p.balancing.source.startsWith('DestinationRule') ? ' (DR)' : '')] : [])))];
    rows.push([
      plan.key,
      svc.clusterIP ?? '-',
      ports,
      endpoints.length > 3 ? `${endpoints.slice(0, 3).join(',')} +${endpoints.length - 3}` : endpoints.join(',') || '<none>',
      plan.decision.proxied ? 'edgeproxy' : 'kube-proxy',
      policies.join(',') || '-',
      [plan.decision.reason, ...notes].join('; '),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
