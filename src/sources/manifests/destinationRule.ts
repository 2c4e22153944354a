// Istio DestinationRule (networking.istio.io v1, v1beta1, v1alpha3), read for its load-balancer
// policy only: spec.host names the Service, spec.trafficPolicy.loadBalancer (and per port,
// portLevelSettings[].loadBalancer) picks the policy. Subsets, TLS, outlier detection and the
// rest are accepted and ignored.
import { z } from 'zod';
import type { DestinationRule, DestinationRuleLoadBalancer } from '../../model/types.ts';
import { serviceKey } from '../../model/types.ts';
import { describeValue } from './errors.ts';
import { metadataSchema, portNumber } from './schemas.ts';

export const DESTINATION_RULE_API_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'] as const;

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The Service a DestinationRule host names, resolved as Istio does: a bare name is relative to
 * the rule's namespace. Also accepted: "name.namespace", "name.namespace.svc" and
 * "name.namespace.svc.<cluster domain>" (any domain). Returns an error message otherwise.
 */
export function resolveDestinationHost(host: string, ruleNamespace: string): { namespace: string; name: string } | { error: string } {
  const h = host.endsWith('.') ? host.slice(0, -1) : host;
  if (h.startsWith('*')) return { error: `wildcard hosts are not supported: name one service (got ${describeValue(host)})` };
  const parts = h.split('.');
  const ok = parts.length === 1 || parts.length === 2 || (parts.length >= 3 && parts[2] === 'svc');
  const [name, namespace = ruleNamespace] = parts;
  if (!ok || name === undefined || !dnsLabel.test(name) || !dnsLabel.test(namespace) || parts.slice(3).some((p) => !dnsLabel.test(p))) {
    return {
      error: `must name a Kubernetes service: "name", "name.namespace", "name.namespace.svc" or "name.namespace.svc.cluster.local" (got ${describeValue(host)})`,
    };
  }
  return { namespace, name };
}

const SIMPLE = ['UNSPECIFIED', 'ROUND_ROBIN', 'RANDOM', 'LEAST_REQUEST', 'LEAST_CONN', 'PASSTHROUGH'] as const;
const HASH_KEYS = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'] as const;

const loadBalancerSchema = z
  .object({
    simple: z.enum(SIMPLE).nullish(),
    consistentHash: z
      .object({
        httpHeaderName: z.string().nullish(),
        httpCookie: z.object({ name: z.string() }).nullish(),
        useSourceIp: z.boolean().nullish(),
        httpQueryParameterName: z.string().nullish(),
      })
      .nullish(),
  })
  .superRefine((lb, ctx) => {
    if (lb.simple != null && lb.consistentHash != null) {
      ctx.addIssue({ code: 'custom', path: [], message: 'set either simple or consistentHash, not both' });
    }
    if (lb.simple === 'PASSTHROUGH') {
      ctx.addIssue({ code: 'custom', path: ['simple'], message: 'PASSTHROUGH is not supported: edgeproxy always balances over the service endpoints' });
    }
    const keys = HASH_KEYS.filter((k) => lb.consistentHash?.[k] != null);
    if (keys.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['consistentHash'], message: `set only one hash key (got ${keys.join(', ')})` });
    }
  });
type LoadBalancerManifest = z.output<typeof loadBalancerSchema>;

export const destinationRuleSchema = z
  .object({
    metadata: metadataSchema,
    spec: z.object({
      host: z.string().min(1, { error: 'required' }),
      trafficPolicy: z
        .object({
          loadBalancer: loadBalancerSchema.nullish(),
          portLevelSettings: z
            .array(z.object({ port: z.object({ number: portNumber }), loadBalancer: loadBalancerSchema.nullish() }))
            .nullish(),
        })
        .nullish(),
    }),
  })
  .superRefine((dr, ctx) => {
    const resolved = resolveDestinationHost(dr.spec.host, dr.metadata.namespace || 'default');
    if ('error' in resolved) ctx.addIssue({ code: 'custom', path: ['spec', 'host'], message: resolved.error });
    const seen = new Map<number, number>();
    (dr.spec.trafficPolicy?.portLevelSettings ?? []).forEach((s, i) => {
      const first = seen.get(s.port.number);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['spec', 'trafficPolicy', 'portLevelSettings', i, 'port', 'number'], message: `duplicate port ${s.port.number} (also portLevelSettings[${first}])` });
      } else seen.set(s.port.number, i);
    });
  });
export type DestinationRuleManifest = z.output<typeof destinationRuleSchema>;

const L4_HASH_NOTE = 'hashed on the client IP: edgeproxy is an L4 proxy and sees no headers, cookies or query parameters';

/** The policy edgeproxy applies for one loadBalancer block; undefined when it leaves the choice to the default. */
export function loadBalancerPolicy(lb: LoadBalancerManifest | null | undefined): DestinationRuleLoadBalancer | undefined {
  if (lb == null) return undefined;
  if (lb.consistentHash != null) {
    const key = HASH_KEYS.find((k) => lb.consistentHash?.[k] != null);
    const source = key ? `consistentHash.${key}` : 'consistentHash';
    return { policy: 'CONSISTENT_HASH', source, ...(key !== undefined && key !== 'useSourceIp' && { note: L4_HASH_NOTE }) };
  }
  switch (lb.simple) {
    case 'ROUND_ROBIN':
    case 'RANDOM':
      return { policy: lb.simple, source: lb.simple };
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      return { policy: 'ROUND_ROBIN', source: lb.simple, note: `${lb.simple} is approximated by round robin` };
    default:
      return undefined; // UNSPECIFIED, absent, or only settings we ignore (locality, warmup)
  }
}

export function destinationRuleFromManifest(m: DestinationRuleManifest): DestinationRule {
  const namespace = m.metadata.namespace || 'default';
  const resolved = resolveDestinationHost(m.spec.host, namespace);
  if ('error' in resolved) throw new Error(resolved.error); // the schema has already refused it
  const loadBalancer = loadBalancerPolicy(m.spec.trafficPolicy?.loadBalancer);
  const portLoadBalancers: DestinationRule['portLoadBalancers'] = [];
  for (const s of m.spec.trafficPolicy?.portLevelSettings ?? []) {
    const lb = loadBalancerPolicy(s.loadBalancer);
    if (lb !== undefined) portLoadBalancers.push({ port: s.port.number, loadBalancer: lb });
  }
  return {
    namespace,
    name: m.metadata.name,
    host: m.spec.host,
    service: serviceKey(resolved.namespace, resolved.name),
    ...(loadBalancer !== undefined && { loadBalancer }),
    portLoadBalancers,
  };
}
