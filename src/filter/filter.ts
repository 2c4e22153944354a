// Decides, per Service, whether edgeproxy takes its ClusterIP traffic or leaves it to kube-proxy,
// and says why. Pure: config in, decision out.
import type { Service } from '../model/types.ts';

export const SERVICE_PROXY_NAME_LABEL = 'service.edgemesh.kubeedge.io/service-proxy-name';
export const LEGACY_NOPROXY_LABEL = 'noproxy';
export const LEGACY_NOPROXY_VALUE = 'edgemesh';

export type ServiceFilterMode = 'FilterIfLabelExists' | 'FilterIfLabelDoesNotExists';

export interface FilterConfig {
  serviceFilterMode: ServiceFilterMode;
  /** Extra "namespace/name" entries to leave to kube-proxy. */
  ignoreServices: readonly string[];
}

export type Decision =
  | { proxied: true; reason: string }
  /**
   * `filtered` is true when a filter rule chose to leave the service to kube-proxy (as opposed to
   * a service there is nothing to intercept for): the edge-mesh layout writes RETURN rules for those.
   */
  | { proxied: false; filtered: boolean; reason: string };

export function decide(svc: Service, config: FilterConfig): Decision {
  const filteredBecause = filterReason(svc, config);
  if (svc.type === 'ExternalName') return { proxied: false, filtered: false, reason: 'ExternalName service: DNS only, no ClusterIP' };
  if (svc.clusterIP === 'None') {
    // A headless service has no ClusterIP to intercept, but when filtered the edge-mesh layout
    // still exempts its endpoint addresses.
    return filteredBecause
      ? { proxied: false, filtered: true, reason: `${filteredBecause} (headless)` }
      : { proxied: false, filtered: false, reason: 'headless service (clusterIP None): no ClusterIP to intercept' };
  }
  if (!svc.clusterIP) return { proxied: false, filtered: false, reason: 'no ClusterIP allocated' };
  if (filteredBecause) return { proxied: false, filtered: true, reason: filteredBecause };
  return {
    proxied: true,
    reason:
      config.serviceFilterMode === 'FilterIfLabelDoesNotExists'
        ? `label ${SERVICE_PROXY_NAME_LABEL} present (serviceFilterMode FilterIfLabelDoesNotExists)`
        : 'no filter matches',
  };
}

function filterReason(svc: Service, config: FilterConfig): string | undefined {
  const key = `${svc.namespace}/${svc.name}`;
  if (svc.namespace === 'kube-system' && svc.labels['k8s-app'] === 'kube-dns') return 'cluster DNS (k8s-app=kube-dns in kube-system) is left to kube-proxy by default';
  if (key === 'default/kubernetes') return 'the API server service default/kubernetes is left to kube-proxy by default';
  if (config.ignoreServices.includes(key)) return 'listed in ignoreServices';
  if (svc.labels[LEGACY_NOPROXY_LABEL] === LEGACY_NOPROXY_VALUE) return `label ${LEGACY_NOPROXY_LABEL}=${LEGACY_NOPROXY_VALUE}`;
  const hasLabel = Object.hasOwn(svc.labels, SERVICE_PROXY_NAME_LABEL);
  if (config.serviceFilterMode === 'FilterIfLabelExists' && hasLabel) return `label ${SERVICE_PROXY_NAME_LABEL} present (serviceFilterMode FilterIfLabelExists)`;
  if (config.serviceFilterMode === 'FilterIfLabelDoesNotExists' && !hasLabel) return `label ${SERVICE_PROXY_NAME_LABEL} absent (serviceFilterMode FilterIfLabelDoesNotExists)`;
  return undefined;
}
