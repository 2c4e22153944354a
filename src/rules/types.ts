// Input and output of the pure rule renderer. The agent builds a DesiredRules from the
// filtered state and the proxy's listen ports; the renderer turns it into nat-table text.
import type { Protocol } from '../model/types.ts';

export type Layout = 'portals' | 'edge-mesh';

/** One proxied (clusterIP, protocol, port), redirected to the local listener on listenPort. */
export interface ProxiedPortRule {
  /** "namespace/name:portname" (or "namespace/name" for an unnamed port); used as the rule comment. */
  portName: string;
  clusterIP: string;
  protocol: Protocol;
  port: number;
  listenPort: number;
}

/** A service left to kube-proxy; the edge-mesh layout writes one RETURN per IP. */
export interface IgnoredServiceRule {
  /** "namespace/name" */
  key: string;
  /** ClusterIPs, or for a headless service the addresses of its endpoints. */
  ips: string[];
}

export interface DesiredRules {
  layout: Layout;
  /** IPv4 only for now; the renderer takes the family so ip6tables can follow. */
  family: 'ipv4';
  /** e.g. "10.96.0.0/16"; restricts the edge-mesh protocol jumps when set. */
  serviceCIDR?: string;
  proxied: ProxiedPortRule[];
  ignored: IgnoredServiceRule[];
}

/** A rule in a built-in chain (PREROUTING or OUTPUT) that jumps to one of our chains. */
export interface JumpRule {
  chain: 'PREROUTING' | 'OUTPUT';
  target: string;
  comment: string;
}

export interface RenderedRules {
  /** Every chain of ours this layout uses, in creation order. */
  chains: string[];
  /** Our jumps; each must be at position 1 of its built-in chain... in this order. */
  jumps: JumpRule[];
  /** "-A CHAIN ..." lines that fill our chains, exactly as they go into iptables-restore. */
  rules: string[];
  /**
   * The same lines per chain, when the renderer has them at hand: saves every sync a parse of
   * each line (20,000 at 10,000 services).
   */
  byChain?: ReadonlyMap<string, readonly string[]>;
}
