// The manager gives each port the balancer its spec asks for, and swaps it in place when the
// spec's policy or affinity changes (same listener, no reconnect needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ProxyManager } from '../manager.ts';
import type { ProxyPortSpec } from '../types.ts';
import { LOOPBACK, backend, exchange, namedServer } from '../testSupport.ts';

test('manager: policy from the spec, reconfigured on prepare without a new listener', async (t) => {
  const servers = await Promise.all(['A', 'B', 'C'].map((n) => namedServer(n)));
  const mgr = new ProxyManager({ logger: pino({ level: 'silent' }), host: LOOPBACK });
  t.after(async () => {
    await mgr.close({ destroyConnections: true });
    await Promise.all(servers.map((s) => s.close()));
  });
  const spec = (extra: Partial<ProxyPortSpec>): ProxyPortSpec => ({
    id: 'default/web:http/TCP', portName: 'default/web:http', protocol: 'TCP', backends: servers.map((s) => backend(s.port)), ...extra,
  });
  const answers = async (port: number, n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push((await exchange(port)).data);
    return out;
  };

  const [first] = await mgr.prepare([spec({})]);
  const port = first!.listenPort;
  assert.equal(new Set(await answers(port, 3)).size, 3, 'round robin by default');

  // Every connection comes from 127.0.0.1: consistent hash and affinity keep it on one backend.
  for (const extra of [{ policy: 'CONSISTENT_HASH' as const }, { policy: 'ROUND_ROBIN' as const, sessionAffinitySeconds: 60 }]) {
    const [again] = await mgr.prepare([spec(extra)]);
    assert.equal(again!.listenPort, port, 'same listener');
    const got = await answers(port, 6);
    assert.equal(new Set(got).size, 1, `${JSON.stringify(extra)}: ${got}`);
  }

  await mgr.prepare([spec({ policy: 'ROUND_ROBIN' })]);
  assert.equal(new Set(await answers(port, 3)).size, 3, 'back to round robin');
});
