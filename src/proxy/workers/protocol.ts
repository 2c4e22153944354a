// Messages between the agent's main thread (TcpWorkerPool) and its TCP proxy worker threads.
import type { TcpProxyCounters, TcpProxyTuning } from '../tcpPort.ts';
import type { ProxyPortSpec } from '../types.ts';

/** A ConnectionBudget as it crosses threads: its limit and its shared Int32 count. */
export interface SharedBudget {
  max: number;
  cell: Int32Array;
}

export interface WorkerInit {
  /** 1-based; the main thread is listener 0. */
  index: number;
  logLevel: string;
  host?: string;
  connectTimeoutMs?: number;
  tuning: TcpProxyTuning;
  /** proxy.maxConnections over every port and thread. */
  totalBudget?: SharedBudget;
}

export type ToWorker =
  | { type: 'open'; reqId: number; spec: ProxyPortSpec; listenPort: number; portBudget?: SharedBudget; rotation?: Int32Array }
  | { type: 'update'; spec: ProxyPortSpec }
  | { type: 'close'; reqId: number; id: string }
  | { type: 'destroyConnections' }
  | { type: 'stats'; reqId: number }
  /** Tests only: throw an uncaught error, as a crashing worker would. */
  | { type: 'crash'; message: string };

export type FromWorker =
  | { type: 'done'; reqId: number; error?: string }
  | { type: 'stats'; reqId: number; counters: [string, TcpProxyCounters][] };
