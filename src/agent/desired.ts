// Pure middle of the pipeline: state snapshot + filter config → what to proxy, what to leave
// to kube-proxy (and why), and — once listeners exist — the rules to render.
import type { Backend, Service, ServicePort } from '../model/types.ts';
import { servicePortName } from '../model/types.ts';
import type { StateSnapshot } from '../state/store.ts';
import { backendsForPort, compareIPv4, endpointAddresses } from '../state/backends.ts';
import type { Decision, FilterConfig } from '../filter/filter.ts';
import { decide } from '../filter/filter.ts';
import { PROXIED_PROTOCOLS, type ProxyPortSpec } from '../proxy/types.ts';
import type { DesiredRules, IgnoredServiceRule, Layout, ProxiedPortRule } from '../rules/types.ts';
import { isIPv4 } from 'node:net';
import { applyTrafficPolicy, destinationRulesByService, resolveBalancing, type BalancingConfig, type PortBalancing } from './balancing.ts';

export interface PortPlan {
  port: ServicePort;
  portName: string;
  /** Set when this port is proxied; the spec the proxy gets. */
  spec?: ProxyPortSpec;
  /** Why a port of a proxied service is nonetheless left to kube-proxy. */
  skipped?: string;
  backends: Backend[];
  /** Proxied ports: the balancing policy and where it came from. */
  balancing?: PortBalancing;
  /** Set when internalTrafficPolicy Local leaves no endpoint: why connections are refused. */
  trafficPolicyNote?: string;
}

export interface ServicePlan {
  key: string;
  service: Service;
  decision: Decision;
  ports: PortPlan[];
}

export interface Desired {
  services: ServicePlan[];
  proxySpecs: ProxyPortSpec[];
  ignored: IgnoredServiceRule[];
}

export function proxyPortId(portName: string, protocol: string): string {
  return `${portName}/${protocol}`;
}

/** The config computeDesired reads: the filter, the default policy and this node's name. */
export type DesiredConfig = FilterConfig & BalancingConfig;

export function computeDesired(snapshot: StateSnapshot, filter: DesiredConfig): Desired {
  const services: ServicePlan[] = [];
  const proxySpecs: ProxyPortSpec[] = [];
  const ignored: IgnoredServiceRule[] = [];
  // clusterIP/protocol/port → owner, to refuse a second service claiming the same portal.
  const portals = new Map<string, string>();
  const rulesByService = destinationRulesByService(snapshot.destinationRules);

  const keys = [...snapshot.services.keys()].sort();
  for (const key of keys) {
    const service = snapshot.services.get(key)!;
    const slices = snapshot.slicesByService.get(key) ?? [];
    const decision = decide(service, filter);
    const ports: PortPlan[] = [];
    for (const port of service.ports) {
      const portName = servicePortName(service, port.name);
      const backends = backendsForPort(port, slices);
      const plan: PortPlan = { port, portName, backends };
      ports.push(plan);
      if (!decision.proxied) continue;
      const ip = service.clusterIP!;
      if (!PROXIED_PROTOCOLS.has(port.protocol)) {
        plan.skipped = `${port.protocol} is not proxied: left to kube-proxy`;
        continue;
      }
      if (!isIPv4(ip)) {
        plan.skipped = 'IPv6 ClusterIP: not proxied yet';
        continue;
      }
      const portal = `${ip}/${port.protocol}/${port.port}`;
      const owner = portals.get(portal);
      if (owner) {
        plan.skipped = `port clash: ${ip}:${port.port}/${port.protocol} is already taken by ${owner}`;
        continue;
      }
      portals.set(portal, portName);
      const allowed = applyTrafficPolicy(service, backends, filter);
      plan.backends = allowed.backends;
      if (allowed.note !== undefined) plan.trafficPolicyNote = allowed.note;
      plan.balancing = resolveBalancing(service, port, rulesByService.get(key) ?? [], filter);
      plan.spec = {
        id: proxyPortId(portName, port.protocol),
        portName,
        protocol: port.protocol,
        backends: allowed.backends,
        policy: plan.balancing.policy,
        ...(plan.balancing.sessionAffinitySeconds !== undefined && { sessionAffinitySeconds: plan.balancing.sessionAffinitySeconds }),
      };
      proxySpecs.push(plan.spec);
    }
    if (!decision.proxied && decision.filtered) {
      const ips =
        service.clusterIP === 'None'
          ? endpointAddresses(slices)
          : service.clusterIPs.filter((ip) => isIPv4(ip));
      if (ips.length > 0) ignored.push({ key, ips });
    }
    services.push({ key, service, decision, ports });
  }
  return { services, proxySpecs, ignored };
}

export interface RuleOptions {
  layout: Layout;
  serviceCIDR?: string;
}

/** Rules only for the ports the proxy actually listens on: a port without a listener stays with kube-proxy. */
export function desiredRules(desired: Desired, listenPorts: ReadonlyMap<string, number>, options: RuleOptions): DesiredRules {
  const proxied: ProxiedPortRule[] = [];
  for (const svc of desired.services) {
    for (const p of svc.ports) {
      if (!p.spec) continue;
      const listenPort = listenPorts.get(p.spec.id);
      if (listenPort === undefined) continue;
      proxied.push({ portName: p.portName, clusterIP: svc.service.clusterIP!, protocol: p.port.protocol, port: p.port.port, listenPort });
    }
  }
  proxied.sort((a, b) => compareIPv4(a.clusterIP, b.clusterIP) || a.protocol.localeCompare(b.protocol) || a.port - b.port);
  return {
    layout: options.layout,
    family: 'ipv4',
    ...(options.serviceCIDR ? { serviceCIDR: options.serviceCIDR } : {}),
    proxied,
    ignored: desired.ignored,
  };
}
