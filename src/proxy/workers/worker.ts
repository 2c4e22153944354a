// A TCP proxy worker thread: for each port the main thread opens, one more TcpProxyPort bound
// to the same port with SO_REUSEPORT, so the kernel spreads new connections over the threads.
// It owns no rules and no state of its own beyond its ports; the main thread drives it.
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../../telemetry/logger.ts';
import { ReconfigurableBalancer } from '../balancers/index.ts';
import { ConnectionBudget } from '../limits.ts';
import { TcpProxyPort } from '../tcpPort.ts';
import { readBufferPool } from '../readBuffers.ts';
import type { TcpProxyCounters } from '../tcpPort.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';
import { addCounters } from './counters.ts';

const init = workerData as WorkerInit;
const port = parentPort!;
const log = createLogger(init.logLevel).child({ worker: init.index });
const totalBudget = init.totalBudget !== undefined ? new ConnectionBudget(init.totalBudget.max, init.totalBudget.cell) : undefined;

interface WorkerPort {
  port: TcpProxyPort;
  balancer: ReconfigurableBalancer;
}
const ports = new Map<string, WorkerPort>();
/** Read buffers of this thread's relays, one cap for all its ports. */
const readBuffers = readBufferPool(log);
/** Counters of listeners closed while their id lives on (reopened later): kept so totals never go down. */
const closedCounters = new Map<string, TcpProxyCounters>();
/** Closed listeners whose connections still run: counted until the port id is gone. */
const draining = new Map<string, TcpProxyPort[]>();

const reply = (msg: FromWorker): void => port.postMessage(msg);

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case 'open': {
      const { spec } = msg;
      // One round-robin rotation with the main thread's listener (it owns the cursor).
      const balancer = new ReconfigurableBalancer(spec, msg.rotation !== undefined ? { rotation: { cell: msg.rotation, owner: false } } : {});
      const p = new TcpProxyPort({
        id: spec.id,
        logger: log,
        balancer,
        backends: spec.backends,
        port: msg.listenPort,
        reusePort: true,
        ...init.tuning,
        ...(init.host !== undefined && { host: init.host }),
        ...(init.connectTimeoutMs !== undefined && { connectTimeoutMs: init.connectTimeoutMs }),
        ...(totalBudget !== undefined && { connectionBudget: totalBudget }),
        readBuffers,
        ...(msg.portBudget !== undefined && { portBudget: new ConnectionBudget(msg.portBudget.max, msg.portBudget.cell) }),
      });
      try {
        await p.listen();
        ports.set(spec.id, { port: p, balancer });
        reply({ type: 'done', reqId: msg.reqId });
      } catch (err) {
        reply({ type: 'done', reqId: msg.reqId, error: (err as Error).message });
      }
      return;
    }
    case 'update': {
      const entry = ports.get(msg.spec.id);
      if (entry === undefined) return;
      entry.balancer.configure(msg.spec);
      entry.port.update(msg.spec.backends);
      return;
    }
    case 'close': {
      const entry = ports.get(msg.id);
      if (entry !== undefined) {
        ports.delete(msg.id);
        await entry.port.close();
        const list = draining.get(msg.id) ?? [];
        list.push(entry.port);
        draining.set(msg.id, list);
      }
      reply({ type: 'done', reqId: msg.reqId });
      return;
    }
    case 'destroyConnections':
      for (const { port: p } of ports.values()) p.destroyConnections();
      for (const list of draining.values()) for (const p of list) p.destroyConnections();
      return;
    case 'crash':
      // Outside the message queue's catch: an uncaught error ends the thread.
      setImmediate(() => {
        throw new Error(msg.message);
      });
      return;
    case 'stats': {
      const out = new Map<string, TcpProxyCounters>();
      for (const [id, { port: p }] of ports) out.set(id, p.counters());
      for (const [id, list] of draining) {
        // Fold drained listeners with no connection left into closedCounters, so they can go.
        const keep: TcpProxyPort[] = [];
        for (const p of list) {
          const c = p.counters();
          if (c.active === 0) closedCounters.set(id, addCounters(closedCounters.get(id), c));
          else keep.push(p);
          out.set(id, addCounters(out.get(id), c.active === 0 ? undefined : c));
        }
        if (keep.length > 0) draining.set(id, keep);
        else draining.delete(id);
      }
      for (const [id, c] of closedCounters) out.set(id, addCounters(out.get(id), c));
      reply({ type: 'stats', reqId: msg.reqId, counters: [...out] });
      return;
    }
  }
}

// Messages are handled one at a time, in order: an update never overtakes the open before it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: ToWorker) => {
  queue = queue.then(() => handle(msg)).catch((err: unknown) => log.error({ err }, 'proxy worker: message failed'));
});
