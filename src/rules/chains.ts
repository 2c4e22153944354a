// Names and comments of everything edgeproxy puts into the nat table. Both layouts' names
// are listed so that a layout switch or a cleanup can find what an earlier run left behind.

export const PORTALS_CONTAINER_CHAIN = 'KUBE-PORTALS-CONTAINER';
export const PORTALS_HOST_CHAIN = 'KUBE-PORTALS-HOST';
export const EDGE_MESH_CHAIN = 'EDGE-MESH';
export const EDGE_MESH_TCP_CHAIN = 'EDGE-MESH-TCP';
export const EDGE_MESH_UDP_CHAIN = 'EDGE-MESH-UDP';

/** Every chain edgeproxy may own, in either layout. */
export const OUR_CHAINS: readonly string[] = [
  PORTALS_CONTAINER_CHAIN,
  PORTALS_HOST_CHAIN,
  EDGE_MESH_CHAIN,
  EDGE_MESH_TCP_CHAIN,
  EDGE_MESH_UDP_CHAIN,
];

/** kube-proxy's entry chain; ours must come before it. */
export const KUBE_SERVICES_CHAIN = 'KUBE-SERVICES';

export const PORTALS_JUMP_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
export const EDGE_MESH_JUMP_COMMENT = 'edgemesh root chain';

export function isOurChain(name: string): boolean {
  return OUR_CHAINS.includes(name);
}
