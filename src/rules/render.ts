// Pure renderer: DesiredRules -> the nat-table rules of one layout, in a deterministic order
// and in the exact argument order iptables-save prints them, so the text read back from the
// kernel compares equal to what we rendered.
import { isIPv4 } from 'node:net';
import type { Protocol } from '../model/types.ts';
import {
  EDGE_MESH_CHAIN,
  EDGE_MESH_JUMP_COMMENT,
  EDGE_MESH_TCP_CHAIN,
  EDGE_MESH_UDP_CHAIN,
  PORTALS_CONTAINER_CHAIN,
  PORTALS_HOST_CHAIN,
  PORTALS_JUMP_COMMENT,
} from './chains.ts';
import { quoteString } from './syntax.ts';
import type { DesiredRules, IgnoredServiceRule, JumpRule, ProxiedPortRule, RenderedRules } from './types.ts';

/** What differs between address families; ipv6 gets an entry when ip6tables support lands. */
interface FamilySyntax {
  isAddress(ip: string): boolean;
  /** A single host as iptables-save prints it ("/32"). */
  host(ip: string): string;
  /** A network as iptables-save prints it (host bits cleared). */
  network(cidr: string): string;
  compareAddresses(a: string, b: string): number;
  /** A string that sorts like the address (fixed-width hex), computed once per address for sorting. */
  sortKey(ip: string): string;
}

function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

const ipv4: FamilySyntax = {
  isAddress: (ip) => isIPv4(ip),
  host: (ip) => `${ip}/32`,
  network(cidr) {
    const [ip = '', bitsText = '32'] = cidr.split('/');
    const bits = Number(bitsText);
    if (!isIPv4(ip) || !Number.isInteger(bits) || bits < 0 || bits > 32) {
      throw new Error(`invalid IPv4 service CIDR: ${cidr}`);
    }
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const n = (ipv4ToNumber(ip) & mask) >>> 0;
    return `${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}/${bits}`;
  },
  compareAddresses: (a, b) => ipv4ToNumber(a) - ipv4ToNumber(b),
  sortKey: (ip) => ipv4ToNumber(ip).toString(16).padStart(8, '0'),
};

const families: Record<DesiredRules['family'], FamilySyntax> = { ipv4 };

function protocolName(p: Protocol): string {
  return p.toLowerCase();
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Address, protocol, port, listener, name: the rule order. Keys precomputed (10,000 rules sort in ~2 ms). */
function compareProxied(a: { key: string; r: ProxiedPortRule }, b: { key: string; r: ProxiedPortRule }): number {
  return (
    compareText(a.key, b.key) ||
    protocolName(a.r.protocol).localeCompare(protocolName(b.r.protocol)) ||
    a.r.port - b.r.port ||
    a.r.listenPort - b.r.listenPort ||
    a.r.portName.localeCompare(b.r.portName)
  );
}

function redirectRule(chain: string, r: ProxiedPortRule, f: FamilySyntax): string {
  const p = protocolName(r.protocol);
  // Joined rather than concatenated: one flat string, not a tree of pieces that every later
  // use (hashing, comparing, writing) would flatten again (20,000 rules at 10,000 services).
  return [
    '-A ', chain, ' -d ', f.host(r.clusterIP), ' -p ', p, ' -m comment --comment ', quoteString(r.portName),
    ' -m ', p, ' --dport ', r.port, ' -j REDIRECT --to-ports ', r.listenPort,
  ].join('');
}

function sortedProxied(desired: DesiredRules, f: FamilySyntax): ProxiedPortRule[] {
  return desired.proxied
    .filter((r) => f.isAddress(r.clusterIP))
    .map((r) => ({ key: f.sortKey(r.clusterIP), r }))
    .sort(compareProxied)
    .map(({ r }) => r);
}

/** One RETURN per (ip, service), sorted by ip then key, duplicates dropped. */
function ignoreReturns(ignored: IgnoredServiceRule[], f: FamilySyntax): string[] {
  const pairs = ignored
    .flatMap((svc) => svc.ips.filter((ip) => f.isAddress(ip)).map((ip) => ({ ip, sortKey: f.sortKey(ip), key: svc.key })))
    .sort((a, b) => compareText(a.sortKey, b.sortKey) || a.key.localeCompare(b.key));
  const lines = pairs.map(
    ({ ip, key }) =>
      `-A ${EDGE_MESH_CHAIN} -d ${f.host(ip)} -m comment --comment ${quoteString(`ignore ${key} service`)} -j RETURN`,
  );
  return [...new Set(lines)];
}

function renderPortals(desired: DesiredRules, f: FamilySyntax): RenderedRules {
  const proxied = sortedProxied(desired, f);
  const jumps: JumpRule[] = [
    { chain: 'PREROUTING', target: PORTALS_CONTAINER_CHAIN, comment: PORTALS_JUMP_COMMENT },
    { chain: 'OUTPUT', target: PORTALS_HOST_CHAIN, comment: PORTALS_JUMP_COMMENT },
  ];
  const container = proxied.map((r) => redirectRule(PORTALS_CONTAINER_CHAIN, r, f));
  const host = proxied.map((r) => redirectRule(PORTALS_HOST_CHAIN, r, f));
  return {
    chains: [PORTALS_CONTAINER_CHAIN, PORTALS_HOST_CHAIN],
    jumps,
    rules: [...container, ...host],
    byChain: new Map([
      [PORTALS_CONTAINER_CHAIN, container],
      [PORTALS_HOST_CHAIN, host],
    ]),
  };
}

function renderEdgeMesh(desired: DesiredRules, f: FamilySyntax): RenderedRules {
  const proxied = sortedProxied(desired, f);
  const dest = desired.serviceCIDR ? `-d ${f.network(desired.serviceCIDR)} ` : '';
  const protocolJump = (p: string, chain: string) =>
    `-A ${EDGE_MESH_CHAIN} ${dest}-p ${p} -m comment --comment ${quoteString(`${p} service proxy`)} -j ${chain}`;
  // The layout has no SCTP sub-chain (as in EdgeMesh): SCTP ports are left to kube-proxy.
  const inChain = (p: Protocol, chain: string) =>
    proxied.filter((r) => r.protocol === p).map((r) => redirectRule(chain, r, f));
  return {
    chains: [EDGE_MESH_CHAIN, EDGE_MESH_TCP_CHAIN, EDGE_MESH_UDP_CHAIN],
    jumps: [
      { chain: 'PREROUTING', target: EDGE_MESH_CHAIN, comment: EDGE_MESH_JUMP_COMMENT },
      { chain: 'OUTPUT', target: EDGE_MESH_CHAIN, comment: EDGE_MESH_JUMP_COMMENT },
    ],
    rules: [
      ...ignoreReturns(desired.ignored, f),
      protocolJump('tcp', EDGE_MESH_TCP_CHAIN),
      protocolJump('udp', EDGE_MESH_UDP_CHAIN),
      ...inChain('TCP', EDGE_MESH_TCP_CHAIN),
      ...inChain('UDP', EDGE_MESH_UDP_CHAIN),
    ],
  };
}

export function renderRules(desired: DesiredRules): RenderedRules {
  const family = families[desired.family];
  return desired.layout === 'edge-mesh' ? renderEdgeMesh(desired, family) : renderPortals(desired, family);
}
