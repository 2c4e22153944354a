// EdgeMesh's edgemesh-agent config → ours, as a pure step before validation, so an EdgeMesh
// config file (or the parts of it that mean the same thing) can be used as is. Keys with no
// equivalent are dropped with a warning, never an error. The table is in README "Migrating from
// EdgeMesh".

export interface Translation {
  /** Our config shape (still to be validated). */
  config: unknown;
  /** One line per EdgeMesh key that was ignored or approximated. */
  warnings: string[];
}

const EDGEMESH_KEYS = ['modules', 'kubeAPIConfig', 'commonConfig'] as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Does this document use EdgeMesh's layout (kind EdgeMeshAgent, or its top-level sections)? */
export function isEdgeMeshConfig(value: unknown): boolean {
  if (!isObj(value)) return false;
  return value['kind'] === 'EdgeMeshAgent' || EDGEMESH_KEYS.some((k) => k in value);
}

/**
 * Maps EdgeMesh keys onto ours; our own keys in the same document win over translated ones.
 * A document without EdgeMesh keys is returned unchanged.
 */
export function translateEdgeMeshConfig(value: unknown): Translation {
  if (!isEdgeMeshConfig(value)) return { config: value, warnings: [] };
  const input = value as Obj;
  const warnings: string[] = [];
  const ignore = (key: string, why: string) => warnings.push(`EdgeMesh key ${key} ignored: ${why}`);
  const out: Obj = {};
  const kubernetes: Obj = {};

  const api = input['kubeAPIConfig'];
  if (isObj(api)) {
    for (const [k, v] of Object.entries(api)) {
      if (k === 'kubeConfig') {
        if (typeof v === 'string' && v) {
          kubernetes['enabled'] = true;
          kubernetes['kubeconfig'] = v;
        }
      } else if (k === 'master') {
        // EdgeMesh uses master with the in-cluster token; an empty value means "in-cluster".
        if (typeof v === 'string' && v) ignore('kubeAPIConfig.master', 'give the API server in a kubeconfig (kubernetes.kubeconfig) instead');
        kubernetes['enabled'] = true;
      } else if (k === 'metaServer') {
        if (isObj(v) && v['server']) ignore('kubeAPIConfig.metaServer', "KubeEdge's metaServer is not used; point a kubeconfig at it to read through it");
      } else {
        ignore(`kubeAPIConfig.${k}`, 'client tuning (qps, burst, contentType) is not configurable');
      }
    }
  }

  const modules = input['modules'];
  if (isObj(modules)) {
    for (const [name, mod] of Object.entries(modules)) {
      if (name !== 'edgeProxy') {
        if (isObj(mod) && mod['enable'] === true) ignore(`modules.${name}`, 'edgeproxy is only the proxy (use EdgeMesh or CoreDNS for DNS, a CNI or tunnel for cross-subnet traffic)');
        continue;
      }
      if (!isObj(mod)) continue;
      for (const [k, v] of Object.entries(mod)) {
        const key = `modules.edgeProxy.${k}`;
        if (k === 'enable') {
          if (v === false) warnings.push(`${key} is false: edgeproxy proxies anyway (it is the proxy)`);
        } else if (k === 'serviceFilterMode') out['serviceFilterMode'] = v;
        else if (k === 'subNet' || k === 'serviceCIDR') out['serviceCIDR'] = v;
        else if (k === 'loadBalancer') {
          ignore(key, 'per-service balancing comes from DestinationRules; the default is proxy.loadBalancer');
        } else if (k === 'listenInterface' || k === 'listenPort') {
          ignore(key, 'edgeproxy opens one listener per proxied service port (proxy.bindAddress)');
        } else ignore(key, 'not supported');
      }
    }
  }

  const common = input['commonConfig'];
  if (isObj(common)) for (const k of Object.keys(common)) ignore(`commonConfig.${k}`, 'no bridge device or config mode in edgeproxy');

  // Our own keys pass through (and win); apiVersion/kind of the EdgeMesh document are dropped.
  for (const [k, v] of Object.entries(input)) {
    if (k === 'apiVersion' || k === 'kind' || (EDGEMESH_KEYS as readonly string[]).includes(k)) continue;
    if (k === 'kubernetes' && isObj(v)) Object.assign(kubernetes, v);
    else out[k] = v;
  }
  if (Object.keys(kubernetes).length > 0) out['kubernetes'] = kubernetes;
  return { config: out, warnings };
}
