// What the agent asks of the proxy: a listener per proxied service port, forwarding to backends.
import type { Backend, LoadBalancerPolicy, Protocol } from '../model/types.ts';

export interface ProxyPortSpec {
  /** Stable identity: "<portName>/<protocol>", e.g. "default/web:http/TCP". */
  id: string;
  /** "namespace/name:portname", for logs and metrics. */
  portName: string;
  protocol: Protocol;
  /** Candidate backends; the proxy picks among the usable ones (ready, else serving). */
  backends: Backend[];
  /** How to choose among the usable backends; round robin when absent. */
  policy?: LoadBalancerPolicy;
  /** Set for sessionAffinity ClientIP: a client sticks to its backend this long after its last connection. */
  sessionAffinitySeconds?: number;
}

export interface ProxyPortStatus {
  id: string;
  listenPort: number;
}

/** Protocols the proxy has listeners for; ports of other protocols stay with kube-proxy. */
export const PROXIED_PROTOCOLS: ReadonlySet<Protocol> = new Set<Protocol>(['TCP', 'UDP']);
