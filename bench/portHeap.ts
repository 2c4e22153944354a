// `node --expose-gc bench/portHeap.ts [N]`: JS heap bytes per proxied TCP port, the agent's
// per-port cost that the GC's timing does not blur (RSS does): N (default 10,000) listeners
// opened by a ProxyManager on loopback, heap used after full GCs before and after. Prints JSON.
// `npm run bench` runs it in the node namespace.
import pino from 'pino';
import { ProxyManager } from '../src/proxy/manager.ts';
import type { ProxyPortSpec } from '../src/proxy/types.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const count = Number(process.argv[2] ?? 10_000);
const specs: ProxyPortSpec[] = [];
for (let i = 0; i < count; i++) {
  specs.push({ id: `bench/svc-${i}:http/TCP`, portName: `bench/svc-${i}:http`, protocol: 'TCP', backends: [{ ip: '10.244.0.2', port: 8080, ready: true, serving: true, terminating: false }] });
}
const manager = new ProxyManager({ logger: pino({ level: 'silent' }), host: '127.0.0.1' });
const before = heapUsed();
await manager.prepare(specs);
const bytesPerPort = (heapUsed() - before) / count;
await manager.close();
process.stdout.write(`${JSON.stringify({ ports: count, bytesPerPort })}\n`);
