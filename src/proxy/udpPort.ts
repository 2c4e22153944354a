// One user-space UDP "listener" for one proxied service port. UDP has no connections, so the
// proxy keeps flows: client address:port → one connected upstream socket to the endpoint the
// balancer chose. Replies go back to the client from the socket the request arrived on, so that
// their source is the address REDIRECT rewrote to and conntrack turns it back into the ClusterIP.
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { backendId } from '../model/types.ts';
import type { Backend } from '../model/types.ts';
import { usableBackends } from './backends.ts';
import type { Balancer } from './balancer.ts';
import { RoundRobinBalancer } from './roundRobin.ts';
import { monotonicNow } from './limits.ts';

export interface UdpProxyPortOptions {
  /** For logs, e.g. "default/echo-udp:p/UDP". */
  id: string;
  logger: Logger;
  /** Bind address, default '0.0.0.0'. */
  host?: string;
  /** 0 (default) lets the OS choose. */
  port?: number;
  backends?: readonly Backend[];
  balancer?: Balancer;
  /** A flow with no datagram in either direction for this long is closed; default 30 s. */
  idleTimeoutMs?: number;
  /** Flows kept at most; the least recently used one is evicted for a new one. Default 4096. */
  maxFlows?: number;
  /** How often idle flows are swept (their sockets closed); default idleTimeout/2, within 10 ms..5 s. */
  sweepIntervalMs?: number;
  /**
   * With a wildcard host, also bind 127.0.0.1 on the same port (default true): REDIRECT sends the
   * node's own traffic to 127.0.0.1, and a reply must leave from there to match conntrack.
   */
  loopbackReplies?: boolean;
  /**
   * SO_RCVBUF of the listening socket(s), default 4 MiB (the kernel caps it at net.core.rmem_max):
   * every client of the service shares it, and a burst beyond it is dropped by the kernel.
   */
  recvBufferBytes?: number;
  /** Monotonic clock in ms; injectable for tests. */
  now?: () => number;
}

export interface UdpProxyCounters {
  /** Flows currently open (each holds one upstream socket). */
  flowsActive: number;
  /** Flows opened: a datagram from a client address:port with no live flow. */
  flowsCreated: number;
  /** Flows closed after idleTimeout without a datagram. */
  flowsExpired: number;
  /** Flows evicted (least recently used) because maxFlows was reached. */
  evictions: number;
  /** Flows closed because their endpoint left the usable set; their next datagram re-picks. */
  flowsRerouted: number;
  /** Datagrams received from clients. */
  datagramsIn: number;
  /** Datagrams received from endpoints and sent to clients. */
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Client datagrams dropped because no endpoint was usable (UDP cannot refuse). */
  drops: number;
  /** Upstream socket errors (ICMP unreachable as ECONNREFUSED, send failures); the flow is closed. */
  upstreamErrors: number;
  /** Datagrams lost in the proxy: queue full while the upstream connects, or a send that failed. */
  sendErrors: number;
}

/** Datagrams held per flow while its upstream socket connects (a few ms); more are dropped. */
const MAX_PENDING = 32;

interface Flow {
  key: string;
  clientIp: string;
  clientPort: number;
  /** The listening socket the client's datagrams arrive on, and replies leave from. */
  reply: dgram.Socket;
  backend: Backend;
  upstream: dgram.Socket;
  /** Datagrams waiting for connect(); undefined once connected. */
  pending: Buffer[] | undefined;
  lastSeen: number;
  /** A reply came back: reported once to the balancer as a successful "dial". */
  answered: boolean;
  closed: boolean;
}

export class UdpProxyPort {
  readonly id: string;
  #log: Logger;
  #host: string;
  #port: number;
  #balancer: Balancer;
  #idleTimeoutMs: number;
  #maxFlows: number;
  #sweepIntervalMs: number;
  #loopbackReplies: boolean;
  #recvBufferBytes: number;
  #now: () => number;
  #sockets: dgram.Socket[] = [];
  /** In least-recently-used-first order: a touched flow is re-inserted at the end. */
  #flows = new Map<string, Flow>();
  #sweeper: NodeJS.Timeout | undefined;
  #configured: readonly Backend[] = [];
  #counters: UdpProxyCounters = {
    flowsActive: 0, flowsCreated: 0, flowsExpired: 0, evictions: 0, flowsRerouted: 0,
    datagramsIn: 0, datagramsOut: 0, bytesIn: 0, bytesOut: 0, drops: 0, upstreamErrors: 0, sendErrors: 0,
  };

  constructor(opts: UdpProxyPortOptions) {
    this.id = opts.id;
    this.#log = opts.logger;
    this.#host = opts.host ?? '0.0.0.0';
    this.#port = opts.port ?? 0;
    this.#balancer = opts.balancer ?? new RoundRobinBalancer();
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.#maxFlows = Math.max(1, opts.maxFlows ?? 4096);
    this.#sweepIntervalMs = opts.sweepIntervalMs ?? Math.min(5000, Math.max(10, Math.floor(this.#idleTimeoutMs / 2)));
    this.#loopbackReplies = opts.loopbackReplies ?? true;
    this.#recvBufferBytes = opts.recvBufferBytes ?? 4 * 1024 * 1024;
    this.#now = opts.now ?? monotonicNow;
    this.update(opts.backends ?? []);
  }

  /** Binds the listening socket(s); resolves the bound port. */
  async listen(): Promise<number> {
    const wildcard = this.#host === '0.0.0.0';
    // SO_REUSEADDR only when a second socket must share the port (Linux requires it on both).
    const main = await this.#bind(this.#host, this.#port, wildcard && this.#loopbackReplies);
    this.#sockets.push(main);
    const port = main.address().port;
    if (wildcard && this.#loopbackReplies) {
      try {
        this.#sockets.push(await this.#bind('127.0.0.1', port, true));
      } catch (err) {
        for (const s of this.#sockets) s.close();
        this.#sockets = [];
        throw err;
      }
    }
    this.#sweeper = setInterval(() => this.sweep(), this.#sweepIntervalMs);
    this.#sweeper.unref();
    return port;
  }

  /** The bound port (0 before listen()). */
  get port(): number {
    const s = this.#sockets[0];
    if (s === undefined) return 0;
    try {
      return s.address().port;
    } catch {
      return 0; // closed
    }
  }

  /**
   * Applies a new backend list. Flows pinned to an endpoint that is no longer usable are closed,
   * so their next datagram goes to a live one (what kube-proxy's conntrack flush does for UDP).
   */
  update(backends: readonly Backend[]): void {
    this.#configured = [...backends];
    this.#balancer.update(usableBackends(backends));
    const live = new Set(this.#balancer.backends().map(backendId));
    for (const flow of [...this.#flows.values()]) {
      if (live.has(backendId(flow.backend))) continue;
      this.#counters.flowsRerouted++;
      this.#closeFlow(flow);
    }
  }

  backends(): { configured: readonly Backend[]; usable: readonly Backend[] } {
    return { configured: this.#configured, usable: this.#balancer.backends() };
  }

  counters(): UdpProxyCounters {
    return { ...this.#counters, flowsActive: this.#flows.size };
  }

  /** Closes the flows idle for idleTimeout; runs periodically, callable directly (tests). */
  sweep(): void {
    const cutoff = this.#now() - this.#idleTimeoutMs;
    // LRU order: the first flow that is not idle ends the scan, so a sweep costs O(expired).
    for (const flow of this.#flows.values()) {
      if (flow.lastSeen > cutoff) break;
      this.#counters.flowsExpired++;
      this.#closeFlow(flow);
    }
  }

  /** Closes the listening socket(s) and every flow's socket. */
  async close(): Promise<void> {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const flow of [...this.#flows.values()]) this.#closeFlow(flow);
    const sockets = this.#sockets;
    this.#sockets = [];
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /** Flows never outlive their listening socket, so there is nothing left to destroy. */
  destroyConnections(): void {}

  #bind(host: string, port: number, reuseAddr: boolean): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({ type: 'udp4', reuseAddr });
      const onError = (err: Error) => {
        sock.close();
        reject(err);
      };
      sock.once('error', onError);
      sock.bind({ address: host, port, exclusive: true }, () => {
        sock.off('error', onError);
        try {
          sock.setRecvBufferSize(this.#recvBufferBytes);
        } catch (err) {
          this.#log.debug({ err, proxyPort: this.id }, 'udp receive buffer size not applied');
        }
        // Unconnected sockets get no ICMP errors; anything here is unexpected but not fatal.
        sock.on('error', (err) => this.#log.error({ err, proxyPort: this.id }, 'udp listener error'));
        sock.on('message', (msg, rinfo) => this.#fromClient(sock, msg, rinfo.address, rinfo.port));
        resolve(sock);
      });
    });
  }

  #fromClient(reply: dgram.Socket, msg: Buffer, clientIp: string, clientPort: number): void {
    this.#counters.datagramsIn++;
    this.#counters.bytesIn += msg.length;
    const key = `${clientIp}:${clientPort}`;
    const now = this.#now();
    let flow = this.#flows.get(key);
    // Lazy expiry: exact even between two sweeps.
    if (flow !== undefined && now - flow.lastSeen >= this.#idleTimeoutMs) {
      this.#counters.flowsExpired++;
      this.#closeFlow(flow);
      flow = undefined;
    }
    if (flow === undefined) {
      flow = this.#openFlow(reply, key, clientIp, clientPort, now);
      if (flow === undefined) return;
    } else {
      this.#touch(flow, now);
    }
    if (flow.pending !== undefined) {
      if (flow.pending.length < MAX_PENDING) flow.pending.push(msg);
      else this.#counters.sendErrors++;
      return;
    }
    this.#sendUpstream(flow, msg);
  }

  #openFlow(reply: dgram.Socket, key: string, clientIp: string, clientPort: number, now: number): Flow | undefined {
    const backend = this.#balancer.candidates(clientIp)[0];
    if (backend === undefined) {
      this.#counters.drops++;
      this.#log.debug({ proxyPort: this.id, client: key }, 'no usable backend, datagram dropped');
      return undefined;
    }
    while (this.#flows.size >= this.#maxFlows) {
      const oldest = this.#flows.values().next().value;
      if (oldest === undefined) break;
      this.#counters.evictions++;
      this.#closeFlow(oldest);
    }
    const upstream = dgram.createSocket('udp4');
    const flow: Flow = { key, clientIp, clientPort, reply, backend, upstream, pending: [], lastSeen: now, answered: false, closed: false };
    this.#flows.set(key, flow);
    this.#counters.flowsCreated++;
    upstream.on('error', (err) => this.#upstreamFailed(flow, err));
    upstream.on('message', (data) => this.#fromUpstream(flow, data));
    // A connected socket: the kernel filters out datagrams from anyone but the endpoint, and
    // reports the endpoint's ICMP port-unreachable as ECONNREFUSED.
    upstream.connect(backend.port, backend.ip, () => {
      if (flow.closed) return;
      const queued = flow.pending ?? [];
      flow.pending = undefined;
      for (const m of queued) this.#sendUpstream(flow, m);
    });
    return flow;
  }

  #sendUpstream(flow: Flow, msg: Buffer): void {
    flow.upstream.send(msg, (err) => {
      if (err) this.#upstreamFailed(flow, err);
    });
  }

  #fromUpstream(flow: Flow, data: Buffer): void {
    if (flow.closed) return;
    this.#touch(flow, this.#now());
    if (!flow.answered) {
      flow.answered = true;
      this.#balancer.dialSucceeded(flow.clientIp, flow.backend);
    }
    flow.reply.send(data, flow.clientPort, flow.clientIp, (err) => {
      if (err) {
        this.#counters.sendErrors++;
        this.#log.debug({ err, proxyPort: this.id, client: flow.key }, 'reply to client failed');
        return;
      }
      this.#counters.datagramsOut++;
      this.#counters.bytesOut += data.length;
    });
  }

  /** Closes the flow rather than keeping a socket that may stay broken; the next datagram re-picks. */
  #upstreamFailed(flow: Flow, err: Error): void {
    if (flow.closed) return;
    this.#counters.upstreamErrors++;
    this.#balancer.dialFailed(flow.clientIp, flow.backend);
    this.#log.debug({ err, proxyPort: this.id, client: flow.key, backend: backendId(flow.backend) }, 'udp upstream error, flow closed');
    this.#closeFlow(flow);
  }

  #touch(flow: Flow, now: number): void {
    flow.lastSeen = now;
    // Move to the end: the Map's order is the LRU order eviction and sweep rely on.
    this.#flows.delete(flow.key);
    this.#flows.set(flow.key, flow);
  }

  #closeFlow(flow: Flow): void {
    if (flow.closed) return;
    flow.closed = true;
    flow.pending = undefined;
    if (this.#flows.get(flow.key) === flow) this.#flows.delete(flow.key);
    try {
      flow.upstream.close();
    } catch {
      // already closed
    }
  }
}
