// Domain model: what edgeproxy knows about Services and their endpoints.
// Sources (manifest directory, Kubernetes API) produce these; everything downstream
// (state, filter, rules, proxy) consumes only these types, never raw Kubernetes objects.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** "namespace/name" — the identity of a Service (and of the objects that belong to it). */
export type ServiceKey = string;

export function serviceKey(namespace: string, name: string): ServiceKey {
  return `${namespace}/${name}`;
}

export interface ServicePort {
  /** Port name; '' when the Service has a single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** Number, or the name of a container port; resolved through the endpoints' ports. */
  targetPort: number | string;
  nodePort?: number;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export interface Service {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  type: ServiceType;
  /** 'None' for headless services, undefined when the Service has none (ExternalName). */
  clusterIP?: string;
  /** All cluster IPs (dual stack); the first equals clusterIP. */
  clusterIPs: string[];
  ports: ServicePort[];
  sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds (Kubernetes default 10800). */
  sessionAffinityTimeoutSeconds: number;
  internalTrafficPolicy: 'Cluster' | 'Local';
}

export interface EndpointConditions {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface EndpointPort {
  /** Matches ServicePort.name ('' for an unnamed port). */
  name: string;
  protocol: Protocol;
  port: number;
}

export interface Endpoint {
  addresses: string[];
  conditions: EndpointConditions;
  nodeName?: string;
  /** Pod name or other target, for logs only. */
  targetName?: string;
}

/**
 * One EndpointSlice (discovery.k8s.io/v1), or a legacy v1 Endpoints object converted
 * to the same shape (one slice per subset).
 */
export interface EndpointSlice {
  namespace: string;
  /** Slice name, unique per namespace; legacy Endpoints use "<name>" or "<name>#<subset index>". */
  name: string;
  /** The Service this slice belongs to (label kubernetes.io/service-name). */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

/** One address:port a service port can be forwarded to, with the conditions it was seen with. */
export interface Backend {
  ip: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
}

/** A load-balancing policy, named as in Istio's DestinationRule and the config's proxy.loadBalancer. */
export type LoadBalancerPolicy = 'ROUND_ROBIN' | 'RANDOM' | 'CONSISTENT_HASH';

/** One load-balancer setting of a DestinationRule, already mapped to a policy edgeproxy implements. */
export interface DestinationRuleLoadBalancer {
  policy: LoadBalancerPolicy;
  /** What the rule said, for plan and logs: "RANDOM", "LEAST_REQUEST", "consistentHash.httpHeaderName". */
  source: string;
  /** Set when the rule asked for something edgeproxy approximates (e.g. LEAST_REQUEST → round robin). */
  note?: string;
}

/** An Istio DestinationRule (networking.istio.io), reduced to its load-balancer policy. */
export interface DestinationRule {
  namespace: string;
  name: string;
  /** spec.host as written. */
  host: string;
  /** The Service spec.host names, resolved relative to the rule's namespace as Istio does. */
  service: ServiceKey;
  /** spec.trafficPolicy.loadBalancer; undefined: the config default applies. */
  loadBalancer?: DestinationRuleLoadBalancer;
  /** spec.trafficPolicy.portLevelSettings[] with a loadBalancer, by service port number. */
  portLoadBalancers: Array<{ port: number; loadBalancer: DestinationRuleLoadBalancer }>;
}

export function backendId(b: { ip: string; port: number }): string {
  return `${b.ip}:${b.port}`;
}

/** "namespace/name:portname" — kube-proxy's name for one port of a Service. */
export function servicePortName(svc: { namespace: string; name: string }, portName: string): string {
  return portName ? `${svc.namespace}/${svc.name}:${portName}` : `${svc.namespace}/${svc.name}`;
}
