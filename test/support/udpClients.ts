// UDP clients for the e2e tests, run inside a namespace with nodeBin (see test/e2e/udp.test.ts).
//   burst  <host> <port> <n> <timeoutMs> [dnsName]: n sockets (n distinct source ports) each send one
//          datagram at once; prints one JSON line {"sent","answered","replies":{answer:count},"wrongSource"}
//          (wrongSource: replies not from host:port, i.e. not un-NATed back to the ClusterIP).
//   stream <host> <port> <intervalMs> [dnsName]: one socket on one fixed source port sends a datagram
//          every intervalMs until killed; prints "ready <source port>", then "<seq> <answer>" per reply.
// With dnsName the payload is a DNS A query and the answer printed is the first A record's address;
// otherwise the payload is "ping" and the answer is the reply's text.
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';

const [mode, host, portText, ...rest] = process.argv.slice(2);
if ((mode !== 'burst' && mode !== 'stream') || !host || !portText) {
  process.stderr.write('usage: udpClients.ts burst <host> <port> <n> <timeoutMs> [dnsName] | stream <host> <port> <intervalMs> [dnsName]\n');
  process.exit(2);
}
const port = Number(portText);

function dnsQuery(name: string, id: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header[2] = 0x01; // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  const labels = name.split('.').filter((l) => l !== '').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(1, 1); // A
  tail.writeUInt16BE(1, 3); // IN
  return Buffer.concat([header, ...labels, tail]);
}

/** The first A record of a response made by test/support/podServer.ts (answer at the end). */
function dnsAnswer(msg: Buffer): string {
  if (msg.length < 12 || msg.readUInt16BE(6) === 0) return 'no-answer';
  return [...msg.subarray(msg.length - 4)].join('.');
}

const dnsName = mode === 'burst' ? rest[2] : rest[1];
const payload = (seq: number): Buffer => (dnsName ? dnsQuery(dnsName, seq & 0xffff) : Buffer.from('ping'));
const answer = (msg: Buffer): string => (dnsName ? dnsAnswer(msg) : msg.toString());

function bound(sock: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, () => {
      sock.off('error', reject);
      resolve();
    });
  });
}

if (mode === 'burst') {
  const n = Number(rest[0] ?? '50');
  const timeoutMs = Number(rest[1] ?? '3000');
  const sockets = Array.from({ length: n }, () => createSocket('udp4'));
  await Promise.all(sockets.map(bound));
  const replies: Record<string, number> = {};
  let answered = 0;
  let wrongSource = 0;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    sockets.forEach((sock, i) => {
      sock.once('message', (msg, rinfo) => {
        if (rinfo.address !== host || rinfo.port !== port) wrongSource++;
        const a = answer(msg);
        replies[a] = (replies[a] ?? 0) + 1;
        if (++answered === n) {
          clearTimeout(timer);
          resolve();
        }
      });
      sock.send(payload(i), port, host);
    });
  });
  await done;
  process.stdout.write(`${JSON.stringify({ sent: n, answered, replies, wrongSource })}\n`);
  for (const s of sockets) s.close();
} else {
  const intervalMs = Number(rest[0] ?? '100');
  const sock = createSocket('udp4');
  let seq = 0;
  sock.on('error', (err) => process.stderr.write(`${err.message}\n`));
  await bound(sock);
  sock.on('message', (msg) => process.stdout.write(`${seq} ${answer(msg)}\n`));
  process.stdout.write(`ready ${sock.address().port}\n`);
  const tick = () => {
    seq++;
    sock.send(payload(seq), port, host);
  };
  tick();
  setInterval(tick, intervalMs);
}
