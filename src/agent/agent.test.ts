import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Agent } from './agent.ts';
import { StateStore } from '../state/store.ts';
import { ProxyManager } from '../proxy/manager.ts';
import { parseConfig } from '../config/load.ts';
import { createMetrics } from '../telemetry/metrics.ts';
import type { RuleBackend, SyncResult } from '../netfilter/iptables.ts';
import type { RenderedRules } from '../rules/types.ts';
import { makeService, makeSlice } from '../model/fixtures.ts';

/** A rule backend that records what it is asked to write and can be made to fail. */
class FakeBackend implements RuleBackend {
  synced: RenderedRules[] = [];
  cleanups = 0;
  failWith: string | undefined;
  async sync(rendered: RenderedRules): Promise<SyncResult> {
    if (this.failWith) throw new Error(this.failWith);
    this.synced.push(rendered);
    return { repairs: [], installed: [], rulesWritten: rendered.rules.length };
  }
  async cleanup(): Promise<boolean> {
    this.cleanups++;
    return true;
  }
}

function setup() {
  const logger = pino({ level: 'silent' });
  const config = parseConfig({}, 'test');
  const store = new StateStore();
  const proxy = new ProxyManager({ logger, host: '127.0.0.1' });
  const backend = new FakeBackend();
  const metrics = createMetrics(() => proxy.stats());
  const agent = new Agent({ config, store, proxy, iptables: backend, logger, metrics });
  return { store, proxy, backend, agent, metrics };
}

test('a sync opens listeners and renders a REDIRECT to each', async (t) => {
  const { store, proxy, backend, agent } = setup();
  t.after(() => proxy.close());
  store.upsertService(makeService({ name: 'web', clusterIP: '10.96.10.10' }));
  store.upsertSlice(makeSlice('web', ['10.244.7.2']));
  await agent.syncOnce();
  const [stats] = proxy.stats();
  assert.ok(stats && stats.listenPort > 0);
  const rules = backend.synced.at(-1)!.rules;
  assert.ok(rules.some((r) => r.includes('-d 10.96.10.10/32') && r.endsWith(`--to-ports ${stats.listenPort}`)), rules.join('\n'));
  assert.equal(agent.ready().ok, true);
});

test('when the backend fails, listeners already serving stay and health says why', async (t) => {
  const { store, proxy, backend, agent } = setup();
  t.after(() => proxy.close());
  store.upsertService(makeService({ name: 'web', clusterIP: '10.96.10.10' }));
  await agent.syncOnce();
  const port = proxy.stats()[0]!.listenPort;

  backend.failWith = 'iptables-restore not found: install iptables';
  store.deleteService('default', 'web');
  await assert.rejects(agent.syncOnce(), /install iptables/);
  // The rule for web may still be in the kernel, so its listener must still be there.
  assert.deepEqual(proxy.stats().map((s) => s.listenPort), [port]);

  backend.failWith = undefined;
  await agent.syncOnce();
  assert.deepEqual(proxy.stats(), []);
  assert.deepEqual(backend.synced.at(-1)!.rules, []);
});

test('stop removes the rules, then closes the listeners', async () => {
  const { store, proxy, backend, agent } = setup();
  store.upsertService(makeService({ name: 'web' }));
  await agent.syncOnce();
  await agent.stop();
  assert.equal(backend.cleanups, 1);
  assert.deepEqual(proxy.stats(), []);
});

test('UDP portals that appear or disappear have their conntrack entries forgotten, also at stop', async () => {
  const logger = pino({ level: 'silent' });
  const store = new StateStore();
  const proxy = new ProxyManager({ logger, host: '127.0.0.1' });
  const forgotten: string[] = [];
  const conntrack = { forgetUdp: async (ip: string, port: number) => void forgotten.push(`${ip}:${port}`) };
  const agent = new Agent({
    config: parseConfig({}, 'test'), store, proxy, iptables: new FakeBackend(), logger, metrics: createMetrics(() => proxy.stats()), conntrack,
  });
  const udp = (name: string, ip: string) =>
    makeService({ name, clusterIP: ip, ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53 }] });

  store.upsertService(udp('dns-a', '10.96.0.53'));
  store.upsertService(makeService({ name: 'web' })); // TCP: never touches conntrack
  await agent.syncOnce();
  assert.deepEqual(forgotten.splice(0), ['10.96.0.53:53']);
  await agent.syncOnce();
  assert.deepEqual(forgotten.splice(0), [], 'nothing changed, nothing forgotten');
  store.upsertService(udp('dns-b', '10.96.0.54'));
  store.deleteService('default', 'dns-a');
  await agent.syncOnce();
  assert.deepEqual(forgotten.splice(0).sort(), ['10.96.0.53:53', '10.96.0.54:53']);
  await agent.stop();
  assert.deepEqual(forgotten.splice(0), ['10.96.0.54:53']);
});
