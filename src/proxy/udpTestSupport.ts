// Loopback UDP fixtures for the UDP proxy tests (not used by production code).
import dgram from 'node:dgram';
import { once } from 'node:events';
import { LOOPBACK } from './testSupport.ts';

export interface UdpTestServer {
  port: number;
  /** Source ports the server saw datagrams from, in order (one per proxy flow). */
  sources: number[];
  close(): Promise<void>;
}

/** Answers each datagram with "<name>:<payload>". Binds `port` (0: any). */
export async function udpNamedServer(name: string, port = 0): Promise<UdpTestServer> {
  const sock = dgram.createSocket('udp4');
  const sources: number[] = [];
  sock.on('message', (msg, rinfo) => {
    sources.push(rinfo.port);
    sock.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address);
  });
  sock.bind(port, LOOPBACK);
  await once(sock, 'listening');
  return {
    port: sock.address().port,
    sources,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}

/**
 * A loopback UDP port with nothing bound, which stays so: datagrams to it draw ICMP
 * port-unreachable. Taken below 1024, out of the range another test's bind(0) draws from (see
 * closedPort), and checked free first.
 */
export async function closedUdpPort(): Promise<number> {
  while (nextUnboundPort >= 600) {
    const port = nextUnboundPort--;
    if (await udpRefuses(port)) return port;
  }
  throw new Error(`no UDP port below 1024 on ${LOOPBACK} refuses datagrams`);
}
let nextUnboundPort = 1023;

/** Whether a datagram to the port draws port-unreachable (a connected socket reports it as ECONNREFUSED). */
async function udpRefuses(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  s.connect(port, LOOPBACK);
  await once(s, 'connect');
  const refused = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(resolve, 500, false);
    const settle = (answer: boolean) => (clearTimeout(timer), resolve(answer));
    s.once('error', (err: NodeJS.ErrnoException) => settle(err.code === 'ECONNREFUSED'));
    s.once('message', () => settle(false));
    s.send('?');
  });
  s.close();
  return refused;
}

export interface UdpClient {
  /** The client's own (source) port. */
  port: number;
  /** Sends one datagram to the port and resolves the first reply, or undefined after timeoutMs. */
  ask(port: number, payload: string, timeoutMs?: number): Promise<string | undefined>;
  /** Source port of the last reply received. */
  lastReplyFrom(): number | undefined;
  close(): Promise<void>;
}

/** An unconnected client socket on a fixed source port, so several asks share one flow. */
export async function udpClient(): Promise<UdpClient> {
  const sock = dgram.createSocket('udp4');
  let lastFrom: number | undefined;
  sock.on('error', () => {});
  sock.on('message', (_msg, rinfo) => (lastFrom = rinfo.port));
  sock.bind(0, LOOPBACK);
  await once(sock, 'listening');
  return {
    port: sock.address().port,
    ask: (port, payload, timeoutMs = 1000) =>
      new Promise((resolve) => {
        const onMessage = (msg: Buffer) => {
          clearTimeout(timer);
          resolve(msg.toString());
        };
        const timer = setTimeout(() => {
          sock.off('message', onMessage);
          resolve(undefined);
        }, timeoutMs);
        sock.once('message', onMessage);
        sock.send(payload, port, LOOPBACK);
      }),
    lastReplyFrom: () => lastFrom,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
