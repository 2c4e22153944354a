// Turns two consecutive desired states into log lines: one per service whose treatment or
// endpoints changed, never one per sync when nothing did.
import type { Desired, ServicePlan } from './desired.ts';
import { backendId } from '../model/types.ts';
import { policyLabel } from '../proxy/balancers/index.ts';

export interface ChangeLine {
  msg: string;
  fields: Record<string, unknown>;
}

function summary(plan: ServicePlan): string {
  return JSON.stringify([plan.decision, plan.ports.map((p) => [p.portName, p.port.protocol, p.port.port, p.skipped, p.backends.map(backendId), p.balancing, p.trafficPolicyNote])]);
}

export function describeChanges(before: Desired | undefined, after: Desired): ChangeLine[] {
  const old = new Map(before?.services.map((s) => [s.key, s]));
  const lines: ChangeLine[] = [];
  for (const plan of after.services) {
    const prev = old.get(plan.key);
    old.delete(plan.key);
    // A reused plan (same inputs as last sync) is unchanged: no need to compare summaries.
    if (prev === plan || (prev && summary(prev) === summary(plan))) continue;
    const ports = plan.ports.map((p) => ({
      port: `${p.port.port}/${p.port.protocol}`,
      name: p.portName,
      backends: p.backends.map(backendId),
      ...(p.skipped ? { skipped: p.skipped } : {}),
      ...(p.spec && p.balancing ? { policy: policyLabel(p.spec), policySource: p.balancing.source } : {}),
      ...(p.balancing?.note ? { policyNote: p.balancing.note } : {}),
      ...(p.trafficPolicyNote ? { trafficPolicy: p.trafficPolicyNote } : {}),
    }));
    lines.push({
      msg: plan.decision.proxied ? 'service proxied' : 'service left to kube-proxy',
      fields: { service: plan.key, reason: plan.decision.reason, ports, ...(prev ? { updated: true } : {}) },
    });
  }
  for (const key of old.keys()) lines.push({ msg: 'service removed', fields: { service: key } });
  return lines;
}
