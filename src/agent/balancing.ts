// Pure balancing decisions for one proxied service port: which policy (the service's Istio
// DestinationRule, else the config default; sessionAffinity ClientIP on top), and which endpoints
// internalTrafficPolicy allows (Local: only this node's, none means connections are refused).
import type { Backend, DestinationRule, LoadBalancerPolicy, Service, ServiceKey, ServicePort } from '../model/types.ts';
import { usableBackends } from '../proxy/backends.ts';

export interface BalancingConfig {
  /** This node's name: endpoints with this nodeName are local. */
  nodeName?: string;
  proxy?: { loadBalancer?: LoadBalancerPolicy };
}

export interface PortBalancing {
  policy: LoadBalancerPolicy;
  /** Set for sessionAffinity ClientIP. */
  sessionAffinitySeconds?: number;
  /** Where the policy came from: "config proxy.loadBalancer" or "DestinationRule ns/name (RANDOM)". */
  source: string;
  /** Something the user should know: an approximated policy, another rule that was ignored. */
  note?: string;
}

/**
 * DestinationRules by the service they name, in precedence order: rules in the service's own
 * namespace first (the namespace Istio looks in for a service's rules), then by namespace/name.
 */
export function destinationRulesByService(rules: ReadonlyMap<string, DestinationRule>): Map<ServiceKey, DestinationRule[]> {
  const out = new Map<ServiceKey, DestinationRule[]>();
  for (const rule of rules.values()) {
    const list = out.get(rule.service);
    if (list) list.push(rule);
    else out.set(rule.service, [rule]);
  }
  for (const [key, list] of out) {
    const ns = key.slice(0, key.indexOf('/'));
    list.sort((a, b) => Number(b.namespace === ns) - Number(a.namespace === ns) || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  }
  return out;
}

/** The first rule (by precedence) decides: its setting for this port, else its top-level one, else the config default. */
export function resolveBalancing(service: Service, port: ServicePort, rules: readonly DestinationRule[], config: BalancingConfig): PortBalancing {
  const [rule, ...others] = rules;
  const lb = rule?.portLoadBalancers.find((p) => p.port === port.port)?.loadBalancer ?? rule?.loadBalancer;
  const notes: string[] = [];
  if (lb?.note) notes.push(lb.note);
  if (others.length > 0) notes.push(`also named by ${others.map((r) => `DestinationRule ${r.namespace}/${r.name}`).join(', ')} (ignored: the first applies)`);
  const out: PortBalancing =
    rule !== undefined && lb !== undefined
      ? { policy: lb.policy, source: `DestinationRule ${rule.namespace}/${rule.name} (${lb.source})` }
      : { policy: config.proxy?.loadBalancer ?? 'ROUND_ROBIN', source: rule ? `config proxy.loadBalancer (DestinationRule ${rule.namespace}/${rule.name} sets no load balancer)` : 'config proxy.loadBalancer' };
  if (service.sessionAffinity === 'ClientIP') out.sessionAffinitySeconds = service.sessionAffinityTimeoutSeconds;
  if (notes.length > 0) out.note = notes.join('; ');
  return out;
}

/**
 * internalTrafficPolicy Local keeps only the endpoints on this node (kube-proxy's semantics: no
 * fallback to other nodes); note says why when that leaves nothing to send traffic to.
 */
export function applyTrafficPolicy(service: Service, backends: Backend[], config: BalancingConfig): { backends: Backend[]; note?: string } {
  if (service.internalTrafficPolicy !== 'Local') return { backends };
  const nodeName = config.nodeName ?? '';
  const local = nodeName === '' ? [] : backends.filter((b) => b.nodeName === nodeName);
  if (usableBackends(local).length > 0) return { backends: local };
  const elsewhere = usableBackends(backends).length;
  const note =
    nodeName === ''
      ? `internalTrafficPolicy Local: config nodeName is not set, so no endpoint is local (${elsewhere} elsewhere); connections are refused`
      : `internalTrafficPolicy Local: no usable endpoint on node "${nodeName}" (${elsewhere} elsewhere); connections are refused`;
  return { backends: local, note };
}
