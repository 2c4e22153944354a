// What the Kubernetes source reads from the API server, in one place: the informers are built
// from it and deploy/rbac.yaml must grant exactly this (src/deploy.test.ts checks both agree).

export interface ApiResource {
  /** API group; '' is the core group. */
  group: string;
  version: string;
  /** Plural resource name, as in RBAC rules and URL paths. */
  resource: string;
  kind: string;
  /** The API verbs the source issues for this resource (informers: an initial list, then watches). */
  verbs: readonly string[];
  /** Only watched when the API server serves the group (a CRD that may be absent). */
  optional: boolean;
}

const INFORMER_VERBS = ['list', 'watch'] as const;

export const SERVICES: ApiResource = { group: '', version: 'v1', resource: 'services', kind: 'Service', verbs: INFORMER_VERBS, optional: false };
export const ENDPOINT_SLICES: ApiResource = {
  group: 'discovery.k8s.io',
  version: 'v1',
  resource: 'endpointslices',
  kind: 'EndpointSlice',
  verbs: INFORMER_VERBS,
  optional: false,
};
/** version is the fallback: discovery picks the group's preferred version (v1, v1beta1, v1alpha3). */
export const DESTINATION_RULES: ApiResource = {
  group: 'networking.istio.io',
  version: 'v1',
  resource: 'destinationrules',
  kind: 'DestinationRule',
  verbs: INFORMER_VERBS,
  optional: true,
};

/** Every resource the source may read; RBAC is derived from (and tested against) this list. */
export const KUBERNETES_API_USAGE: readonly ApiResource[] = [SERVICES, ENDPOINT_SLICES, DESTINATION_RULES];

export function apiVersionOf(r: { group: string; version: string }): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** Cluster-wide collection path, e.g. /api/v1/services or /apis/discovery.k8s.io/v1/endpointslices. */
export function collectionPath(r: { group: string; version: string; resource: string }): string {
  return r.group ? `/apis/${r.group}/${r.version}/${r.resource}` : `/api/${r.version}/${r.resource}`;
}

/** The label every watch-state metric and log line uses: "kubernetes/services". */
export function sourceName(r: { resource: string }): string {
  return `kubernetes/${r.resource}`;
}
