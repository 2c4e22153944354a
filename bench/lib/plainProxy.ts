// A plain Node pipe() proxy, the yardstick for the agent's per-connection cost
// (`node bench/tcpQuick.ts --plain` runs it in HAProxy's place).
//   node plainProxy.ts LISTEN_PORT BACKEND_HOST BACKEND_PORT
import net from 'node:net';

const [listen = '0', host = '127.0.0.1', port = '0'] = process.argv.slice(2);
net
  .createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (c) => {
    const u = net.connect({ host, port: Number(port), allowHalfOpen: true, noDelay: true });
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    u.once('connect', () => {
      c.pipe(u);
      u.pipe(c);
    });
  })
  .listen(Number(listen), '0.0.0.0');
