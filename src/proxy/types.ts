// What the agent asks of the proxy: a listener per proxied service port, forwarding to backends.
import type { Backend, Protocol } from '../model/types.ts';

export interface ProxyPortSpec {
  /** Stable identity: "<portName>/<protocol>", e.g. "default/web:http/TCP". */
  id: string;
  /** "namespace/name:portname", for logs and metrics. */
  portName: string;
  protocol: Protocol;
  /** Candidate backends; the proxy picks among the usable ones (ready, else serving). */
  backends: Backend[];
}

export interface ProxyPortStatus {
  id: string;
  listenPort: number;
}

/** Protocols the proxy has listeners for; ports of other protocols stay with kube-proxy. */
export const PROXIED_PROTOCOLS: ReadonlySet<Protocol> = new Set<Protocol>(['TCP']);
