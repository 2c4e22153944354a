// zod schemas for the Kubernetes kinds edgeproxy reads from manifests. They check shape and
// ranges and report precise fields; defaults are applied in kinds.ts when converting.
import { isIP } from 'node:net';
import { z } from 'zod';
import { describeValue } from './errors.ts';

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

const portMessage = (iss: { input?: unknown }) =>
  iss.input === undefined ? 'required' : `must be an integer from 1 to 65535 (got ${describeValue(iss.input)})`;
export const portNumber = z
  .number({ error: portMessage })
  .int({ error: portMessage })
  .min(1, { error: portMessage })
  .max(65535, { error: portMessage });

const protocol = z.enum(PROTOCOLS).nullish();

// RFC 1123 subdomain (object names) and label (namespaces, port names), as Kubernetes checks them.
const subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const objectName = z.string().refine((s) => s.length <= 253 && subdomain.test(s), {
  error: (iss) => `must be a lowercase RFC 1123 name (letters, digits, '-', '.') (got ${describeValue(iss.input)})`,
});
const namespaceName = z.string().refine((s) => s === '' || (s.length <= 63 && dnsLabel.test(s)), {
  error: (iss) => `must be a lowercase RFC 1123 label (got ${describeValue(iss.input)})`,
});
const portName = z.string().refine((s) => s === '' || (s.length <= 63 && dnsLabel.test(s)), {
  error: (iss) => `must be a lowercase RFC 1123 label (got ${describeValue(iss.input)})`,
});

/** IANA_SVC_NAME: 1-15 chars of [a-z0-9-], at least one letter, no leading/trailing/double '-'. */
export function isIanaSvcName(s: string): boolean {
  return s.length >= 1 && s.length <= 15 && dnsLabel.test(s) && /[a-z]/.test(s) && !s.includes('--');
}

const targetPort = z.custom<number | string>(
  (v) => (typeof v === 'number' ? Number.isInteger(v) && v >= 1 && v <= 65535 : typeof v === 'string' && isIanaSvcName(v)),
  {
    error: (iss) =>
      `must be an integer from 1 to 65535 or a port name (IANA_SVC_NAME: up to 15 of a-z, 0-9, '-', with a letter) (got ${describeValue(iss.input)})`,
  },
);

const clusterIP = z.string().refine((s) => s === '' || s === 'None' || isIP(s) !== 0, {
  error: (iss) => `must be "None", empty, or an IPv4/IPv6 address (got ${describeValue(iss.input)})`,
});

const ipAddress = z.string().refine((s) => isIP(s) !== 0, {
  error: (iss) => `must be an IPv4 or IPv6 address (got ${describeValue(iss.input)})`,
});

const labels = z.record(z.string(), z.string()).nullish();

export const metadataSchema = z.object({
  name: objectName,
  namespace: namespaceName.nullish(),
  labels,
});

const servicePort = z.object({
  name: portName.nullish(),
  protocol,
  port: portNumber,
  targetPort: targetPort.optional(),
  nodePort: portNumber.nullish(),
});

const timeoutMessage = (iss: { input?: unknown }) =>
  iss.input === undefined ? 'required' : `must be an integer from 1 to 86400 (got ${describeValue(iss.input)})`;
const affinityTimeout = z
  .number({ error: timeoutMessage })
  .int({ error: timeoutMessage })
  .min(1, { error: timeoutMessage })
  .max(86400, { error: timeoutMessage });

const serviceSpec = z
  .object({
    type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).nullish(),
    clusterIP: clusterIP.nullish(),
    clusterIPs: z.array(clusterIP).nullish(),
    ports: z.array(servicePort).nullish(),
    sessionAffinity: z.enum(['None', 'ClientIP']).nullish(),
    sessionAffinityConfig: z
      .object({ clientIP: z.object({ timeoutSeconds: affinityTimeout.nullish() }).nullish() })
      .nullish(),
    internalTrafficPolicy: z.enum(['Cluster', 'Local']).nullish(),
  })
  .superRefine((spec, ctx) => {
    const ports = spec.ports ?? [];
    const byName = new Map<string, number>();
    const byProtoPort = new Map<string, number>();
    ports.forEach((p, i) => {
      const name = p.name ?? '';
      if (ports.length > 1) {
        if (name === '') {
          ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: 'required when a Service has more than one port' });
        } else if (byName.has(name)) {
          ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `duplicate port name "${name}" (also spec.ports[${byName.get(name)}])` });
        } else {
          byName.set(name, i);
        }
      }
      const key = `${p.port}/${p.protocol ?? 'TCP'}`;
      const first = byProtoPort.get(key);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['ports', i], message: `port clash: ${key} is already used by spec.ports[${first}]` });
      } else {
        byProtoPort.set(key, i);
      }
    });
    const ips = spec.clusterIPs ?? [];
    if (spec.clusterIP && ips.length > 0 && ips[0] !== spec.clusterIP) {
      ctx.addIssue({ code: 'custom', path: ['clusterIPs', 0], message: `must equal spec.clusterIP "${spec.clusterIP}" (got ${describeValue(ips[0])})` });
    }
  });

export const serviceSchema = z.object({
  metadata: metadataSchema,
  spec: serviceSpec.prefault({}),
});
export type ServiceManifest = z.output<typeof serviceSchema>;

const endpointPort = z.object({
  name: portName.nullish(),
  protocol,
  port: portNumber,
});

const targetRef = z.object({ name: z.string().nullish() }).nullish();

const endpoint = z.object({
  addresses: z.array(z.string()).min(1, { error: 'must list at least one address' }),
  conditions: z
    .object({ ready: z.boolean().nullish(), serving: z.boolean().nullish(), terminating: z.boolean().nullish() })
    .nullish(),
  nodeName: z.string().nullish(),
  targetRef,
});

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const fqdn = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i;

export const endpointSliceSchema = z
  .object({
    metadata: metadataSchema,
    addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
    endpoints: z.array(endpoint).nullish(),
    ports: z.array(endpointPort).nullish(),
  })
  .superRefine((slice, ctx) => {
    // The slice is useless without the Service it belongs to.
    const serviceName = slice.metadata.labels?.[SERVICE_NAME_LABEL];
    if (serviceName === undefined) {
      ctx.addIssue({ code: 'custom', path: ['metadata', 'labels', SERVICE_NAME_LABEL], message: 'required (names the Service this slice belongs to)' });
    }
    (slice.endpoints ?? []).forEach((ep, i) => {
      ep.addresses.forEach((addr, j) => {
        const ok = slice.addressType === 'FQDN' ? fqdn.test(addr) : isIP(addr) === (slice.addressType === 'IPv4' ? 4 : 6);
        if (!ok) {
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'addresses', j],
            message: `must be a valid ${slice.addressType} address to match addressType (got ${describeValue(addr)})`,
          });
        }
      });
    });
  });
export type EndpointSliceManifest = z.output<typeof endpointSliceSchema>;

const endpointAddress = z.object({
  ip: ipAddress,
  nodeName: z.string().nullish(),
  targetRef,
});

const endpointSubset = z
  .object({
    addresses: z.array(endpointAddress).nullish(),
    notReadyAddresses: z.array(endpointAddress).nullish(),
    ports: z.array(endpointPort).nullish(),
  })
  .superRefine((subset, ctx) => {
    // One subset becomes one slice, and a slice has a single address family.
    const families = new Set([...(subset.addresses ?? []), ...(subset.notReadyAddresses ?? [])].map((a) => isIP(a.ip)));
    if (families.size > 1) {
      ctx.addIssue({ code: 'custom', path: [], message: 'mixes IPv4 and IPv6 addresses in one subset' });
    }
  });

export const endpointsSchema = z.object({
  metadata: metadataSchema,
  subsets: z.array(endpointSubset).nullish(),
});
export type EndpointsManifest = z.output<typeof endpointsSchema>;
