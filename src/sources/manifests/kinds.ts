// Kind dispatch: which (apiVersion, kind) pairs become which model objects. Adding a kind
// (e.g. networking.istio.io DestinationRule) means adding a handler here and a ModelObject variant.
import { isIP } from 'node:net';
import type { z } from 'zod';
import type { DestinationRule, Endpoint, EndpointPort, EndpointSlice, Service } from '../../model/types.ts';
import { DESTINATION_RULE_API_VERSIONS, destinationRuleFromManifest, destinationRuleSchema } from './destinationRule.ts';
import {
  endpointSliceSchema,
  endpointsSchema,
  SERVICE_NAME_LABEL,
  serviceSchema,
  type EndpointSliceManifest,
  type EndpointsManifest,
  type ServiceManifest,
} from './schemas.ts';

/** What one manifest object turns into. */
export type ModelObject =
  | { kind: 'Service'; value: Service }
  | { kind: 'EndpointSlice'; value: EndpointSlice }
  | { kind: 'DestinationRule'; value: DestinationRule };

export type ValidationResult = { ok: true; objects: ModelObject[] } | { ok: false; issues: z.core.$ZodIssue[] };

export interface KindHandler {
  /** Exact apiVersion, e.g. "v1" or "discovery.k8s.io/v1". */
  apiVersion: string;
  kind: string;
  validate(raw: unknown): ValidationResult;
}

function defineKind<S extends z.ZodType>(
  apiVersion: string,
  kind: string,
  schema: S,
  convert: (m: z.output<S>) => ModelObject[],
): KindHandler {
  return {
    apiVersion,
    kind,
    validate(raw) {
      const r = schema.safeParse(raw, { reportInput: true });
      return r.success ? { ok: true, objects: convert(r.data) } : { ok: false, issues: r.error.issues };
    },
  };
}

const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

export function serviceFromManifest(m: ServiceManifest): Service {
  const spec = m.spec;
  const clusterIP = spec.clusterIP || spec.clusterIPs?.[0] || undefined;
  const clusterIPs = spec.clusterIPs?.length ? [...spec.clusterIPs] : clusterIP ? [clusterIP] : [];
  return {
    namespace: m.metadata.namespace || 'default',
    name: m.metadata.name,
    labels: { ...(m.metadata.labels ?? {}) },
    type: spec.type ?? 'ClusterIP',
    ...(clusterIP !== undefined ? { clusterIP } : {}),
    clusterIPs,
    ports: (spec.ports ?? []).map((p) => ({
      name: p.name ?? '',
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      targetPort: p.targetPort ?? p.port,
      ...(p.nodePort != null ? { nodePort: p.nodePort } : {}),
    })),
    sessionAffinity: spec.sessionAffinity ?? 'None',
    sessionAffinityTimeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS,
    internalTrafficPolicy: spec.internalTrafficPolicy ?? 'Cluster',
  };
}

function endpointPorts(ports: EndpointSliceManifest['ports']): EndpointPort[] {
  return (ports ?? []).map((p) => ({ name: p.name ?? '', protocol: p.protocol ?? 'TCP', port: p.port }));
}

export function sliceFromManifest(m: EndpointSliceManifest): EndpointSlice {
  return {
    namespace: m.metadata.namespace || 'default',
    name: m.metadata.name,
    serviceName: m.metadata.labels?.[SERVICE_NAME_LABEL] ?? '',
    addressType: m.addressType,
    ports: endpointPorts(m.ports),
    endpoints: (m.endpoints ?? []).map((ep) => {
      // Kubernetes: a nil ready means ready; serving follows ready unless given.
      const ready = ep.conditions?.ready ?? true;
      const out: Endpoint = {
        addresses: [...ep.addresses],
        conditions: { ready, serving: ep.conditions?.serving ?? ready, terminating: ep.conditions?.terminating ?? false },
      };
      if (ep.nodeName) out.nodeName = ep.nodeName;
      if (ep.targetRef?.name) out.targetName = ep.targetRef.name;
      return out;
    }),
  };
}

type EndpointAddress = NonNullable<NonNullable<NonNullable<EndpointsManifest['subsets']>[number]['addresses']>[number]>;

function legacyEndpoint(a: EndpointAddress, ready: boolean): Endpoint {
  const out: Endpoint = { addresses: [a.ip], conditions: { ready, serving: ready, terminating: false } };
  if (a.nodeName) out.nodeName = a.nodeName;
  if (a.targetRef?.name) out.targetName = a.targetRef.name;
  return out;
}

/** Legacy v1 Endpoints: one slice per subset, named "<name>" then "<name>#1", "<name>#2", ... */
export function slicesFromEndpoints(m: EndpointsManifest): EndpointSlice[] {
  const namespace = m.metadata.namespace || 'default';
  const name = m.metadata.name;
  return (m.subsets ?? []).map((subset, i) => {
    const ready = subset.addresses ?? [];
    const notReady = subset.notReadyAddresses ?? [];
    const first = ready[0] ?? notReady[0];
    return {
      namespace,
      name: i === 0 ? name : `${name}#${i}`,
      serviceName: name,
      addressType: first && isIP(first.ip) === 6 ? 'IPv6' : 'IPv4',
      ports: endpointPorts(subset.ports),
      endpoints: [...ready.map((a) => legacyEndpoint(a, true)), ...notReady.map((a) => legacyEndpoint(a, false))],
    };
  });
}

export const defaultKindHandlers: readonly KindHandler[] = [
  defineKind('v1', 'Service', serviceSchema, (m) => [{ kind: 'Service', value: serviceFromManifest(m) }]),
  defineKind('discovery.k8s.io/v1', 'EndpointSlice', endpointSliceSchema, (m) => [
    { kind: 'EndpointSlice', value: sliceFromManifest(m) },
  ]),
  defineKind('v1', 'Endpoints', endpointsSchema, (m) =>
    slicesFromEndpoints(m).map((value) => ({ kind: 'EndpointSlice' as const, value })),
  ),
  ...DESTINATION_RULE_API_VERSIONS.map((apiVersion) =>
    defineKind(apiVersion, 'DestinationRule', destinationRuleSchema, (m) => [{ kind: 'DestinationRule', value: destinationRuleFromManifest(m) }]),
  ),
];

/** The API group of an apiVersion ("" for the core group "v1"). */
export function apiGroup(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}
