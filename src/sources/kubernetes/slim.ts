// What the informer caches of each object. The client library keeps every listed or watched
// object whole for the life of the agent; in a real cluster most of a Service or EndpointSlice
// is bookkeeping the agent never reads: managedFields (server-side apply's field owners, often
// the largest part) and kubectl's last-applied copy of the whole object. client-go users (kube-
// proxy among them) drop managedFields with an informer transform; this is ours.
import type { KubernetesObject } from '@kubernetes/client-node';

export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** Drops, in place, the parts of a freshly decoded object no converter reads; returns it. */
export function slimObject<T extends KubernetesObject | undefined>(obj: T): T {
  const meta = obj?.metadata;
  if (meta === undefined) return obj;
  delete meta.managedFields;
  if (meta.annotations !== undefined && LAST_APPLIED_ANNOTATION in meta.annotations) {
    delete meta.annotations[LAST_APPLIED_ANNOTATION];
    if (Object.keys(meta.annotations).length === 0) delete meta.annotations;
  }
  return obj;
}
