// Resolves a service port to its backends, the way kube-proxy does: EndpointSlice ports are
// matched to the service port by name (and protocol); the slice's port number is the resolved
// targetPort, so named targetPorts need no pod lookup.
import type { Backend, EndpointSlice, ServicePort } from '../model/types.ts';
import { backendId } from '../model/types.ts';

export function backendsForPort(port: ServicePort, slices: readonly EndpointSlice[]): Backend[] {
  const seen = new Map<string, Backend>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4') continue; // IPv6 comes with the ip6tables renderer
    const slicePort = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (!slicePort) continue;
    for (const ep of slice.endpoints) {
      for (const ip of ep.addresses) {
        const backend: Backend = {
          ip,
          port: slicePort.port,
          ready: ep.conditions.ready,
          serving: ep.conditions.serving,
          terminating: ep.conditions.terminating,
          ...(ep.nodeName ? { nodeName: ep.nodeName } : {}),
        };
        const id = backendId(backend);
        // The same address in two slices (during a slice handover): prefer the ready copy.
        const existing = seen.get(id);
        if (!existing || (!existing.ready && backend.ready)) seen.set(id, backend);
      }
    }
  }
  return [...seen.values()].sort(compareBackends);
}

/** Every endpoint address of a service, whatever its port: the edge-mesh layout's RETURNs for ignored headless services. */
export function endpointAddresses(slices: readonly EndpointSlice[]): string[] {
  const ips = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4') continue;
    for (const ep of slice.endpoints) for (const ip of ep.addresses) ips.add(ip);
  }
  return [...ips].sort(compareIPv4);
}

export function compareIPv4(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareBackends(a: Backend, b: Backend): number {
  return compareIPv4(a.ip, b.ip) || a.port - b.port;
}
