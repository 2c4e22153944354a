// Builders for model objects in tests: defaults filled in, only what a test cares about spelled out.
import type { EndpointSlice, Service } from './types.ts';

export function makeService(partial: Partial<Service> & { name: string }): Service {
  const clusterIP = partial.clusterIP ?? '10.96.10.10';
  return {
    namespace: 'default',
    labels: {},
    type: 'ClusterIP',
    clusterIP,
    clusterIPs: clusterIP && clusterIP !== 'None' ? [clusterIP] : [],
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }],
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 10800,
    internalTrafficPolicy: 'Cluster',
    ...partial,
  };
}

export function makeSlice(
  service: string,
  ips: string[],
  options: { namespace?: string; port?: number; portName?: string; protocol?: 'TCP' | 'UDP'; ready?: boolean; name?: string } = {},
): EndpointSlice {
  const ready = options.ready ?? true;
  return {
    namespace: options.namespace ?? 'default',
    name: options.name ?? `${service}-abc`,
    serviceName: service,
    addressType: 'IPv4',
    ports: [{ name: options.portName ?? 'http', protocol: options.protocol ?? 'TCP', port: options.port ?? 8080 }],
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready, serving: ready, terminating: false } })),
  };
}
