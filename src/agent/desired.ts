// Pure middle of the pipeline: state snapshot + filter config → what to proxy, what to leave
// to kube-proxy (and why), and — once listeners exist — the rules to render.
import type { Backend, DestinationRule, EndpointSlice, Service, ServicePort } from '../model/types.ts';
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
  /** What each plan was computed from, so the next computeDesired can reuse unchanged plans. */
  reuse?: PlanReuse;
}

/**
 * A service's plan depends only on its Service, its slices, the DestinationRules naming it and
 * the config, plus which portals earlier services claimed. The store hands out the same objects
 * until they change, so a periodic resync at 10,000 services reuses every plan (and its
 * ProxyPortSpec, which the proxy then recognises as unchanged) instead of rebuilding them.
 */
interface PlanReuse {
  config: DesiredConfig;
  /** The store's snapshot it was computed from: the same one again means nothing changed. */
  snapshot: StateSnapshot;
  inputs: Map<string, PlanInputs>;
}

interface PlanInputs {
  plan: ServicePlan;
  slices: readonly EndpointSlice[];
  rules: readonly DestinationRule[];
  ignored: IgnoredServiceRule | undefined;
}

export function proxyPortId(portName: string, protocol: string): string {
  return `${portName}/${protocol}`;
}

/** The config computeDesired reads: the filter, the default policy and this node's name. */
export type DesiredConfig = FilterConfig & BalancingConfig;

/**
 * previous: the last result, whose plans are reused where their inputs are the same objects.
 * The same snapshot and config as previous's return previous itself (a resync with nothing new:
 * at 10,000 services, walking every plan again allocated ~8 MB per sync).
 */
export function computeDesired(snapshot: StateSnapshot, filter: DesiredConfig, previous?: Desired): Desired {
  if (previous?.reuse?.config === filter && previous.reuse.snapshot === snapshot) return previous;
  const services: ServicePlan[] = [];
  const proxySpecs: ProxyPortSpec[] = [];
  const ignored: IgnoredServiceRule[] = [];
  // clusterIP/protocol/port → owner, to refuse a second service claiming the same portal.
  const portals = new Map<string, string>();
  const rulesByService = destinationRulesByService(snapshot.destinationRules);
  const before = previous?.reuse?.config === filter ? previous.reuse.inputs : undefined;
  const inputs = new Map<string, PlanInputs>();

  const keys = [...snapshot.services.keys()].sort();
  for (const key of keys) {
    const service = snapshot.services.get(key)!;
    const slices = snapshot.slicesByService.get(key) ?? [];
    const rules = rulesByService.get(key) ?? [];
    const old = before?.get(key);
    if (old !== undefined && old.plan.service === service && sameItems(old.slices, slices) && sameItems(old.rules, rules) && claimPortals(old.plan, portals)) {
      inputs.set(key, old);
      services.push(old.plan);
      for (const p of old.plan.ports) if (p.spec) proxySpecs.push(p.spec);
      if (old.ignored) ignored.push(old.ignored);
      continue;
    }
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
      plan.balancing = resolveBalancing(service, port, rules, filter);
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
    let ignoredRule: IgnoredServiceRule | undefined;
    if (!decision.proxied && decision.filtered) {
      const ips =
        service.clusterIP === 'None'
          ? endpointAddresses(slices)
          : service.clusterIPs.filter((ip) => isIPv4(ip));
      if (ips.length > 0) ignored.push((ignoredRule = { key, ips }));
    }
    const plan: ServicePlan = { key, service, decision, ports };
    services.push(plan);
    inputs.set(key, { plan, slices, rules, ignored: ignoredRule });
  }
  return { services, proxySpecs, ignored, reuse: { config: filter, snapshot, inputs } };
}

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Claims a reused plan's portals. False (nothing claimed) when the plan lost a port to a clash
 * (the owner may be gone now) or an earlier service now holds one of its portals: then the plan
 * is computed afresh, which reports the clash.
 */
function claimPortals(plan: ServicePlan, portals: Map<string, string>): boolean {
  const mine: Array<[portal: string, owner: string]> = [];
  for (const p of plan.ports) {
    if (p.skipped?.startsWith('port clash') === true) return false;
    if (!p.spec) continue;
    const portal = `${plan.service.clusterIP}/${p.port.protocol}/${p.port.port}`;
    if (portals.has(portal)) return false;
    mine.push([portal, p.portName]);
  }
  for (const [portal, owner] of mine) portals.set(portal, owner);
  return true;
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
