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
import { PortAllocator, formatPortRange, type PortRange } from '../../proxy/portAllocator.ts';

/** Without proxy.portRange the kernel picks listener ports at start; the plan numbers them from here. */
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
  const listenPorts = planListenPorts(desired, config.proxy.portRange);
  const rendered = renderRules(desiredRules(desired, listenPorts, { layout: config.layout, ...(config.serviceCIDR ? { serviceCIDR: config.serviceCIDR } : {}) }));
  const portsNote =
    config.proxy.portRange === undefined
      ? `listener ports are assigned at start; shown from ${ILLUSTRATIVE_FIRST_PORT}`
      : `listener ports from proxy.portRange ${formatPortRange(config.proxy.portRange)}, as a fresh start with every port free would assign them`;
  out.write(`\n# nat rules for layout "${config.layout}" (${portsNote})\n`);
  const unserved = desired.proxySpecs.filter((spec) => (spec.protocol === 'TCP' || spec.protocol === 'UDP') && !listenPorts.has(spec.id));
  if (unserved.length > 0) out.write(`# proxy.portRange used up, left to kube-proxy: ${unserved.map((spec) => spec.id).join(', ')}\n`);
  for (const chain of rendered.chains) out.write(`:${chain} - [0:0]\n`);
  for (const jump of rendered.jumps) out.write(`-I ${jump.chain} 1 -m comment --comment "${jump.comment}" -j ${jump.target}\n`);
  for (const rule of rendered.rules) out.write(`${rule}\n`);
  return loaded.errors.length > 0 ? 1 : 0;
}

/**
 * With a range: the ports a fresh agent assigns (in spec order, per protocol, as ProxyManager's
 * allocators do when no port is held elsewhere); ports beyond the range get none, as in the agent.
 */
function planListenPorts(desired: Desired, range: PortRange | undefined): Map<string, number> {
  const listenPorts = new Map<string, number>();
  const allocators = new Map<string, PortAllocator>();
  for (const spec of desired.proxySpecs) {
    if (range === undefined) {
      listenPorts.set(spec.id, ILLUSTRATIVE_FIRST_PORT + listenPorts.size);
      continue;
    }
    if (spec.protocol !== 'TCP' && spec.protocol !== 'UDP') continue;
    let alloc = allocators.get(spec.protocol);
    if (alloc === undefined) allocators.set(spec.protocol, (alloc = new PortAllocator(range)));
    const port = alloc.allocate(spec.id);
    if (port !== undefined) listenPorts.set(spec.id, port);
  }
  return listenPorts;
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
