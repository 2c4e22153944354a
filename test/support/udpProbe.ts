// Sends one UDP datagram and prints the first reply (run inside a namespace by the cluster
// harness; nc -u would wait out its whole idle timeout for every probe).
// Usage: udpProbe.ts <host> <port> <payload> <timeoutMs>. Exit 0 with the reply on stdout, 1 on timeout.
import { createSocket } from 'node:dgram';

const [host, portText, payload = 'ping', timeoutText = '2000'] = process.argv.slice(2);
if (!host || !portText) {
  process.stderr.write('usage: udpProbe.ts <host> <port> [payload] [timeoutMs]\n');
  process.exit(2);
}
const sock = createSocket('udp4');
const timer = setTimeout(() => {
  process.stderr.write(`no UDP reply from ${host}:${portText} within ${timeoutText} ms\n`);
  process.exit(1);
}, Number(timeoutText));
sock.on('message', (msg) => {
  clearTimeout(timer);
  process.stdout.write(msg);
  sock.close();
});
sock.on('error', (err) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
sock.send(payload, Number(portText), host);
