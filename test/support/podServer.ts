// Test backend run inside a pod (or node) network namespace by the e2e cluster harness.
// Every listener answers with the server's name so a test can tell which endpoint served it:
//   HTTP/1.1 on each --tcp port: any path → body "<name>"; GET /count → requests served on that
//     port (excluding /count itself); GET /client → "<remote ip>:<remote port>" as the server saw it.
//   UDP on each --udp port: each datagram is answered with "<name>".
//   DNS on --dns port (UDP and TCP): any A query → one A record --dns-answer; other types → no answer.
// Prints one "ready" line on stdout once every listener is bound.
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { Server as TcpServer, Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { parseArgs } from 'node:util';
import { once } from 'node:events';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    host: { type: 'string', default: '0.0.0.0' },
    tcp: { type: 'string', default: '' },
    udp: { type: 'string', default: '' },
    dns: { type: 'string', default: '' },
    'dns-answer': { type: 'string', default: '10.0.0.7' },
    // Only there so leftover processes of a cluster can be found by their command line.
    tag: { type: 'string', default: '' },
  },
});

const name = values.name;
if (!name) throw new Error('podServer: --name is required');
const host = values.host;
const dnsAnswer = parseIpv4(values['dns-answer']);

function parsePorts(list: string): number[] {
  return list
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p !== '0')
    .map((p) => {
      const n = Number(p);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`podServer: bad port ${p}`);
      return n;
    });
}

function parseIpv4(ip: string): Buffer {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) {
    throw new Error(`podServer: bad IPv4 address ${ip}`);
  }
  return Buffer.from(parts);
}

async function listenHttp(port: number): Promise<HttpServer> {
  let served = 0;
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    let body: string;
    if (path === '/count') {
      body = String(served);
    } else {
      served++;
      body = path === '/client' ? `${req.socket.remoteAddress}:${req.socket.remotePort}` : name!;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-pod': name! });
    res.end(body);
  });
  // Short keep-alive so proxies holding idle connections do not pin the server.
  server.keepAliveTimeout = 2000;
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

async function listenUdpReply(port: number): Promise<UdpSocket> {
  const sock = createSocket('udp4');
  sock.on('message', (_msg, rinfo) => sock.send(name!, rinfo.port, rinfo.address));
  sock.bind(port, host);
  await once(sock, 'listening');
  return sock;
}

/** Builds the response to one DNS query message, or undefined if it is not parseable. */
function dnsResponse(query: Buffer): Buffer | undefined {
  if (query.length < 12) return undefined;
  const qdcount = query.readUInt16BE(4);
  if (qdcount !== 1) return undefined;
  // Walk the QNAME labels to find the end of the question.
  let off = 12;
  while (off < query.length) {
    const len = query[off]!;
    if (len === 0) break;
    if (len >= 0xc0) return undefined; // no compression in questions
    off += 1 + len;
  }
  const qEnd = off + 1 + 4; // zero label + QTYPE + QCLASS
  if (qEnd > query.length) return undefined;
  const qtype = query.readUInt16BE(off + 1);
  const isA = qtype === 1;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // ID
  const rd = query[2]! & 0x01;
  const opcode = query[2]! & 0x78;
  header[2] = 0x80 | opcode | 0x04 | rd; // QR, opcode, AA, RD
  header[3] = 0x80; // RA, RCODE 0
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(isA ? 1 : 0, 6);
  const question = query.subarray(12, qEnd);
  if (!isA) return Buffer.concat([header, question]);
  const answer = Buffer.alloc(16);
  answer.writeUInt16BE(0xc00c, 0); // pointer to the question name
  answer.writeUInt16BE(1, 2); // A
  answer.writeUInt16BE(1, 4); // IN
  answer.writeUInt32BE(5, 6); // TTL
  answer.writeUInt16BE(4, 10);
  dnsAnswer.copy(answer, 12);
  return Buffer.concat([header, question, answer]);
}

async function listenDnsUdp(port: number): Promise<UdpSocket> {
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const res = dnsResponse(msg);
    if (res) sock.send(res, rinfo.port, rinfo.address);
  });
  sock.bind(port, host);
  await once(sock, 'listening');
  return sock;
}

async function listenDnsTcp(port: number): Promise<TcpServer> {
  const server = createTcpServer((conn: Socket) => {
    let buf = Buffer.alloc(0);
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      // DNS over TCP frames every message with a 2-byte length.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const res = dnsResponse(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (!res) {
          conn.destroy();
          return;
        }
        const frame = Buffer.alloc(2 + res.length);
        frame.writeUInt16BE(res.length, 0);
        res.copy(frame, 2);
        conn.write(frame);
      }
    });
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

const dnsPorts = parsePorts(values.dns);
await Promise.all([
  ...parsePorts(values.tcp).map(listenHttp),
  ...parsePorts(values.udp).map(listenUdpReply),
  ...dnsPorts.map(listenDnsUdp),
  ...dnsPorts.map(listenDnsTcp),
]);
process.stdout.write('ready\n');
