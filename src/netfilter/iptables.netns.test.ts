// Real iptables inside a throwaway network namespace. Needs root, iproute2 and iptables:
// without them these tests fail (never skip) so a missing prerequisite cannot pass silently.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules, RenderedRules } from '../rules/types.ts';
import { Iptables } from './iptables.ts';
import { checkJumpOrder } from './order.ts';
import { prefixedRunner, spawnRunner } from './runner.ts';
import { parseNatSave } from './save.ts';
import { OUR_CHAINS } from '../rules/chains.ts';

const fixture = readFileSync(new URL('../../test/fixtures/kube-proxy-nat.rules', import.meta.url), 'utf8');

const desired: DesiredRules = {
  layout: 'portals',
  family: 'ipv4',
  serviceCIDR: '10.96.0.0/16',
  proxied: [
    { portName: 'default/web:http', clusterIP: '10.96.10.10', protocol: 'TCP', port: 80, listenPort: 40123 },
    { portName: 'default/sticky:http', clusterIP: '10.96.10.12', protocol: 'TCP', port: 82, listenPort: 40124 },
    { portName: 'default/echo-udp:p', clusterIP: '10.96.30.30', protocol: 'UDP', port: 99, listenPort: 40125 },
    { portName: `default/we'ird "quoted" name`, clusterIP: '10.96.10.13', protocol: 'TCP', port: 83, listenPort: 40126 },
  ],
  ignored: [
    { key: 'kube-system/kube-dns', ips: ['10.96.0.10'] },
    { key: 'default/kubernetes', ips: ['10.96.0.1'] },
    { key: 'monitoring/node-exporter', ips: ['192.168.132.38', '192.168.132.19'] },
  ],
};

interface Netns {
  ipt: Iptables;
  /** iptables-save -t nat without its timestamp comments. */
  save(): Promise<string>;
  run(cmd: string, args: string[], stdin?: string): Promise<string>;
}

async function netnsWithFixture(t: TestContext, clock?: () => number, options: { overrideFromRules?: number } = {}): Promise<Netns> {
  assert.equal(process.getuid?.(), 0, 'these tests need root: they create a network namespace and run iptables in it');
  const name = `ep-nf-${randomBytes(4).toString('hex')}`;
  const added = await spawnRunner('ip', ['netns', 'add', name]).catch((err: Error) => {
    throw new Error(`cannot run "ip netns add" (install iproute2): ${err.message}`);
  });
  assert.equal(added.code, 0, `ip netns add ${name} failed: ${added.stderr}`);
  t.after(async () => {
    await spawnRunner('ip', ['netns', 'delete', name]);
  });
  const runner = prefixedRunner(['ip', 'netns', 'exec', name]);
  const run = async (cmd: string, args: string[], stdin?: string) => {
    const r = await runner(cmd, args, stdin);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed in ${name} (is iptables installed?): ${r.stderr}`);
    return r.stdout;
  };
  await run('iptables-restore', [], fixture);
  const save = async () => (await run('iptables-save', ['-t', 'nat'])).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return { ipt: new Iptables({ runner, ...options, ...(clock ? { now: clock } : {}) }), save, run };
}

/** The save text with every line about our chains removed: what kube-proxy owns. */
function kubeProxyView(saveText: string): string {
  const mentionsOurs = (line: string) =>
    OUR_CHAINS.some((c) => line === `:${c} - [0:0]` || line.startsWith(`-A ${c} `) || line.endsWith(`-j ${c}`));
  return saveText
    .split('\n')
    .filter((l) => !mentionsOurs(l))
    .join('\n');
}

function ourLines(saveText: string): string[] {
  return saveText.split('\n').filter((l) => OUR_CHAINS.some((c) => l.startsWith(`-A ${c} `)));
}

function firstTargets(saveText: string, chain: string): string[] {
  return (parseNatSave(saveText).chains.get(chain)?.rules ?? []).map((l) => l.split(' ').at(-1) ?? '');
}

for (const layout of ['portals', 'edge-mesh'] as const) {
  test(`real iptables (${layout}): sync on kube-proxy's table, idempotent second sync, cleanup restores the fixture`, async (t) => {
    const ns = await netnsWithFixture(t);
    const rendered = renderRules({ ...desired, layout });
    const before = await ns.save();

    const first = await ns.ipt.sync(rendered);
    assert.equal(first.rulesWritten, rendered.rules.length + 2);
    assert.equal(first.installed.length, 2);
    assert.equal(first.repairs.length, 0);
    const after = await ns.save();

    // Our jump first, KUBE-SERVICES second, in both built-in chains.
    const ourRoot = layout === 'portals' ? ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST'] : ['EDGE-MESH', 'EDGE-MESH'];
    assert.deepEqual(firstTargets(after, 'PREROUTING'), [ourRoot[0], 'KUBE-SERVICES']);
    assert.deepEqual(firstTargets(after, 'OUTPUT'), [ourRoot[1], 'KUBE-SERVICES']);
    assert.ok(checkJumpOrder(parseNatSave(after), rendered.jumps).every((o) => o.first && o.kubeServicesPosition === 2));

    // Round trip: iptables-save prints our rules byte for byte as rendered.
    assert.deepEqual(ourLines(after), rendered.rules);
    // kube-proxy's chains are untouched.
    assert.equal(kubeProxyView(after), before);

    const second = await ns.ipt.sync(rendered);
    assert.deepEqual(second, { repairs: [], installed: [], rulesWritten: 0 });
    assert.equal(await ns.save(), after);

    assert.equal(await ns.ipt.cleanup(), true);
    assert.equal(await ns.save(), before);
    assert.equal(await ns.ipt.cleanup(), false);
  });
}

test('real iptables: KUBE-SERVICES moved in front of our jump is repaired by the next sync', async (t) => {
  const ns = await netnsWithFixture(t);
  const rendered = renderRules(desired);
  await ns.ipt.sync(rendered);

  // What a kube-proxy (re)start on a node without our jump would leave: KUBE-SERVICES on top.
  await ns.run('iptables', ['-t', 'nat', '-D', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
  await ns.run('iptables', ['-t', 'nat', '-I', 'PREROUTING', '1', '-j', 'KUBE-SERVICES', '-m', 'comment', '--comment', 'kubernetes service portals']);
  const broken = await ns.save();
  assert.deepEqual(firstTargets(broken, 'PREROUTING'), ['KUBE-SERVICES', 'KUBE-PORTALS-CONTAINER']);
  const [pre] = checkJumpOrder(parseNatSave(broken), rendered.jumps);
  assert.equal(pre?.first, false);
  assert.match(pre?.message ?? '', /^PREROUTING: KUBE-SERVICES \(position 1\) is before KUBE-PORTALS-CONTAINER \(position 2\)/);

  const repaired = await ns.ipt.sync(rendered);
  // The periodic resync repairs the order without reading the whole table.
  assert.deepEqual(ns.ipt.lastSyncMode, { mode: 'incremental' });
  assert.deepEqual(repaired, {
    repairs: ['PREROUTING: jump to KUBE-PORTALS-CONTAINER was behind KUBE-SERVICES (position 2, KUBE-SERVICES at 1); moved to position 1'],
    installed: [],
    rulesWritten: 1,
  });
  const fixed = await ns.save();
  assert.deepEqual(firstTargets(fixed, 'PREROUTING'), ['KUBE-PORTALS-CONTAINER', 'KUBE-SERVICES']);
  assert.deepEqual(firstTargets(fixed, 'OUTPUT'), ['KUBE-PORTALS-HOST', 'KUBE-SERVICES']);
  assert.deepEqual(await ns.ipt.sync(rendered), { repairs: [], installed: [], rulesWritten: 0 });
});

test('real iptables: duplicated jump and layout switch, then cleanup', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  const portals = renderRules(desired);
  const edgeMesh = renderRules({ ...desired, layout: 'edge-mesh' });
  await ns.ipt.sync(portals);
  await ns.run('iptables', ['-t', 'nat', '-A', 'OUTPUT', '-m', 'comment', '--comment', portals.jumps[1]!.comment, '-j', 'KUBE-PORTALS-HOST']);
  const dup = await ns.ipt.sync(portals);
  assert.deepEqual(dup.repairs, ['OUTPUT: jump to KUBE-PORTALS-HOST was duplicated (positions 1, 3); kept one at position 1']);
  assert.deepEqual(firstTargets(await ns.save(), 'OUTPUT'), ['KUBE-PORTALS-HOST', 'KUBE-SERVICES']);

  await ns.ipt.sync(edgeMesh);
  const switched = await ns.save();
  assert.deepEqual(firstTargets(switched, 'PREROUTING'), ['EDGE-MESH', 'KUBE-SERVICES']);
  assert.deepEqual(firstTargets(switched, 'OUTPUT'), ['EDGE-MESH', 'KUBE-SERVICES']);
  assert.doesNotMatch(switched, /KUBE-PORTALS/);
  assert.deepEqual(ourLines(switched), edgeMesh.rules);
  assert.equal(kubeProxyView(switched), before);

  assert.equal(await ns.ipt.cleanup(), true);
  assert.equal(await ns.save(), before);
});

test('real iptables: a jump to our chain from a chain a full sync does not read is found by the retry against the whole table', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  const portals = renderRules(desired);
  await ns.ipt.sync(portals);
  // Something put a jump to KUBE-PORTALS-HOST at the end of kube-proxy's KUBE-SERVICES: a full
  // sync reads only PREROUTING, OUTPUT and our chains, so the layout switch's -X fails first.
  const stray = ['-t', 'nat', '-A', 'KUBE-SERVICES', '-j', 'KUBE-PORTALS-HOST'];
  await ns.run('iptables', stray);
  const edgeMesh = renderRules({ ...desired, layout: 'edge-mesh' });
  const result = await ns.ipt.sync(edgeMesh);
  assert.ok(result.repairs.includes('KUBE-SERVICES: removed jump to KUBE-PORTALS-HOST at position 10 (KUBE-PORTALS-HOST is not used by the current layout)'), result.repairs.join('\n'));
  const switched = await ns.save();
  assert.doesNotMatch(switched, /KUBE-PORTALS/);
  assert.deepEqual(ourLines(switched), edgeMesh.rules);
  assert.equal(kubeProxyView(switched), before);

  // The same for a cleanup.
  await ns.run('iptables', ['-t', 'nat', '-A', 'KUBE-SERVICES', '-j', 'EDGE-MESH']);
  assert.equal(await ns.ipt.cleanup(), true);
  assert.equal(await ns.save(), before);
});

test('real iptables: a rejected payload changes nothing and reports the failing line', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  await assert.rejects(
    ns.ipt.restoreNat(':EDGE-MESH - [0:0]\n-A EDGE-MESH -j RETURN\n-A EDGE-MESH --bogus-option\n'),
    /iptables-restore failed \(exit 2\): .*line 4: -A EDGE-MESH --bogus-option$/s,
  );
  assert.equal(await ns.save(), before);
});

/** Our rules of `chain` in the live table, sorted: the set the kernel holds. */
function liveSet(saveText: string, chain: string): string[] {
  return (parseNatSave(saveText).chains.get(chain)?.rules ?? []).slice().sort();
}
function renderedSet(rendered: RenderedRules, chain: string): string[] {
  return rendered.rules.filter((l) => l.startsWith(`-A ${chain} `)).sort();
}

/** Many proxied ports, so that a rewrite would show: 10.96.2x.y. */
function manyPorts(n: number): DesiredRules['proxied'] {
  return Array.from({ length: n }, (_, i) => ({
    portName: `load/svc-${i}:http`,
    clusterIP: `10.96.${20 + Math.floor(i / 200)}.${(i % 200) + 1}`,
    protocol: 'TCP' as const,
    port: 8080,
    listenPort: 41000 + i,
  }));
}

test('real iptables: an incremental sync writes exactly the changed rules', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  const base = [...desired.proxied, ...manyPorts(300)];
  const first = renderRules({ ...desired, proxied: base });
  await ns.ipt.sync(first);
  assert.equal(ns.ipt.lastSyncMode?.mode, 'full');

  // Mark every rule we wrote with a counter; a rule that is rewritten comes back at [0:0].
  const marked = (await ns.run('iptables-save', ['-c', '-t', 'nat']))
    .split('\n')
    .map((l) => (/^\[0:0\] -A (KUBE-PORTALS-CONTAINER|KUBE-PORTALS-HOST) /.test(l) ? l.replace('[0:0]', '[7:700]') : l))
    .join('\n');
  await ns.run('iptables-restore', ['-c'], marked);

  // One service changes its listener, one goes, one comes.
  const proxied = base.filter((p) => p.portName !== 'load/svc-7:http').map((p) => (p.portName === 'load/svc-3:http' ? { ...p, listenPort: 45003 } : p));
  proxied.push({ portName: 'load/new:http', clusterIP: '10.96.99.1', protocol: 'TCP', port: 80, listenPort: 45100 });
  const changed = renderRules({ ...desired, proxied });
  const result = await ns.ipt.sync(changed);
  assert.deepEqual(ns.ipt.lastSyncMode, { mode: 'incremental' });
  assert.deepEqual(result, { repairs: [], installed: [], rulesWritten: 4 });

  const counted = await ns.run('iptables-save', ['-c', '-t', 'nat']);
  const fresh = counted.split('\n').filter((l) => /^\[0:0\] -A KUBE-PORTALS-/.test(l)).map((l) => l.replace('[0:0] ', '')).sort();
  assert.deepEqual(fresh, changed.rules.filter((l) => /svc-3:http|load\/new:http/.test(l)).sort());
  const after = await ns.save();
  for (const chain of ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST']) assert.deepEqual(liveSet(after, chain), renderedSet(changed, chain));
  assert.equal(kubeProxyView(after), before);
  assert.deepEqual(firstTargets(after, 'PREROUTING'), ['KUBE-PORTALS-CONTAINER', 'KUBE-SERVICES']);

  // Nothing changed: no restore at all.
  assert.deepEqual(await ns.ipt.sync(changed), { repairs: [], installed: [], rulesWritten: 0 });
  assert.equal(await ns.save(), after);
});

test('real iptables: a long chain takes a change as overrides that packets obey, and the next quiet sync tidies them away', async (t) => {
  const ns = await netnsWithFixture(t, undefined, { overrideFromRules: 50 });
  // Every ClusterIP is local to the namespace, so a connect() resolves at once either way.
  await ns.run('ip', ['link', 'set', 'lo', 'up']);
  await ns.run('ip', ['route', 'add', 'local', '10.96.0.0/16', 'dev', 'lo']);
  const base = [...desired.proxied, ...manyPorts(300)];
  await ns.ipt.sync(renderRules({ ...desired, proxied: base }));

  // One service changes its listener, one goes, one comes.
  const proxied = base.filter((p) => p.portName !== 'load/svc-7:http').map((p) => (p.portName === 'load/svc-3:http' ? { ...p, listenPort: 45003 } : p));
  proxied.push({ portName: 'load/new:http', clusterIP: '10.96.99.1', protocol: 'TCP', port: 80, listenPort: 45100 });
  const changed = renderRules({ ...desired, proxied });
  assert.deepEqual(await ns.ipt.sync(changed), { repairs: [], installed: [], rulesWritten: 6 });
  assert.deepEqual(ns.ipt.lastSyncMode, { mode: 'incremental' });
  const H = 'KUBE-PORTALS-HOST';
  const host = parseNatSave(await ns.save()).chains.get(H)!.rules;
  const svc3 = (port: number) => `-A ${H} -d 10.96.20.4/32 -p tcp -m comment --comment "load/svc-3:http" -m tcp --dport 8080 -j REDIRECT --to-ports ${port}`;
  const svc7 = `-A ${H} -d 10.96.20.8/32 -p tcp -m comment --comment "load/svc-7:http" -m tcp --dport 8080 -j REDIRECT --to-ports 41007`;
  const svc7Return = `-A ${H} -d 10.96.20.8/32 -p tcp -m comment --comment "edgeproxy removed: load/svc-7:http" -m tcp --dport 8080 -j RETURN`;
  const added = `-A ${H} -d 10.96.99.1/32 -p tcp -m comment --comment "load/new:http" -m tcp --dport 80 -j REDIRECT --to-ports 45100`;
  assert.deepEqual(host.slice(0, 2), [svc7Return, svc3(45003)]);
  assert.ok(host.includes(svc3(41003)) && host.includes(svc7), 'the overridden rules are still there');
  assert.equal(host.at(-1), added);

  // Packets from this namespace (OUTPUT, so KUBE-PORTALS-HOST) meet the overrides first.
  for (const [ip, port] of [['10.96.20.4', '8080'], ['10.96.20.8', '8080'], ['10.96.99.1', '80']] as const) {
    await ns.run('sh', ['-c', `nc -z -w 1 ${ip} ${port}; true`]);
  }
  const saveWithCounters = await ns.run('iptables-save', ['-c', '-t', 'nat']);
  const packets = (line: string): number => {
    const counted = saveWithCounters.split('\n').find((l) => l.endsWith(`] ${line}`));
    assert.ok(counted !== undefined, `rule not found: ${line}`);
    return Number(/^\[(\d+):/.exec(counted)?.[1]);
  };
  assert.deepEqual(
    [packets(svc3(45003)), packets(svc3(41003)), packets(svc7Return), packets(svc7), packets(added)],
    [1, 0, 1, 0, 1],
  );

  // Nothing to change: the leftovers go, and the chains read exactly as rendered.
  assert.deepEqual(await ns.ipt.sync(changed), { repairs: [], installed: [], rulesWritten: 0 });
  const tidy = await ns.save();
  for (const chain of ['KUBE-PORTALS-CONTAINER', H]) assert.deepEqual(liveSet(tidy, chain), renderedSet(changed, chain));
  await ns.ipt.sync(changed);
  assert.equal(await ns.save(), tidy);
});

test('real iptables: a rule deleted behind our back makes the next delta fail and fall back to a full sync', async (t) => {
  const ns = await netnsWithFixture(t);
  const rendered = renderRules(desired);
  await ns.ipt.sync(rendered);
  const gone = rendered.rules.find((l) => l.startsWith('-A KUBE-PORTALS-HOST -d 10.96.10.12/32'))!;
  await ns.run('iptables-restore', ['--noflush'], `*nat\n-D${gone.slice(2)}\nCOMMIT\n`);

  // The change of that very service needs `-D <its rule>`, which now fails.
  const changed = renderRules({ ...desired, proxied: desired.proxied.map((p) => (p.clusterIP === '10.96.10.12' ? { ...p, listenPort: 45555 } : p)) });
  await ns.ipt.sync(changed);
  assert.equal(ns.ipt.lastSyncMode?.mode, 'full');
  assert.match(ns.ipt.lastSyncMode?.reason ?? '', /^incremental update failed: iptables-restore failed/);
  const healed = await ns.save();
  for (const chain of ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST']) assert.deepEqual(liveSet(healed, chain), renderedSet(changed, chain));
  assert.deepEqual(await ns.ipt.sync(changed), { repairs: [], installed: [], rulesWritten: 0 });
  assert.equal(ns.ipt.lastSyncMode?.mode, 'incremental');
});

test('real iptables: a flushed chain of ours heals at the next full sync; a flushed table at once', async (t) => {
  let now = 1_000_000;
  const ns = await netnsWithFixture(t, () => now);
  const rendered = renderRules(desired);
  await ns.ipt.sync(rendered);
  const good = await ns.save();

  await ns.run('iptables', ['-t', 'nat', '-F', 'KUBE-PORTALS-HOST']);
  now += 30_000;
  // Within the full-sync period nothing reads our chains: the flush is not seen yet.
  assert.deepEqual(await ns.ipt.sync(rendered), { repairs: [], installed: [], rulesWritten: 0 });
  assert.equal(ns.ipt.lastSyncMode?.mode, 'incremental');
  now += 30_000;
  const healed = await ns.ipt.sync(rendered);
  assert.deepEqual(ns.ipt.lastSyncMode, { mode: 'full', reason: 'periodic' });
  assert.equal(healed.rulesWritten, renderedSet(rendered, 'KUBE-PORTALS-HOST').length);
  assert.equal(await ns.save(), good);

  // Flushing the whole table takes our jumps too: the cheap read sees that and syncs in full.
  await ns.run('iptables', ['-t', 'nat', '-F']);
  await ns.ipt.sync(rendered);
  assert.deepEqual(ns.ipt.lastSyncMode, { mode: 'full', reason: 'PREROUTING: jump to KUBE-PORTALS-CONTAINER is missing' });
  const after = await ns.save();
  for (const chain of ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST']) assert.deepEqual(liveSet(after, chain), renderedSet(rendered, chain));
  assert.deepEqual(firstTargets(after, 'OUTPUT'), ['KUBE-PORTALS-HOST']);
});

test('real iptables (edge-mesh): RETURNs stay before the protocol jumps through deltas', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  await ns.ipt.sync(renderRules({ ...desired, layout: 'edge-mesh' }));
  const steps: DesiredRules[] = [
    { ...desired, layout: 'edge-mesh', ignored: [...desired.ignored, { key: 'default/late', ips: ['10.96.0.77', '10.96.0.78'] }] },
    // Another serviceCIDR replaces both protocol jumps; one RETURN goes, one comes.
    { ...desired, layout: 'edge-mesh', serviceCIDR: '10.96.0.0/12', ignored: [...desired.ignored.slice(1), { key: 'default/later', ips: ['10.96.0.5'] }] },
  ];
  for (const step of steps) {
    const rendered = renderRules(step);
    await ns.ipt.sync(rendered);
    assert.equal(ns.ipt.lastSyncMode?.mode, 'incremental');
    const live = await ns.save();
    for (const chain of rendered.chains) assert.deepEqual(liveSet(live, chain), renderedSet(rendered, chain));
    const root = parseNatSave(live).chains.get('EDGE-MESH')!.rules;
    const firstJump = root.findIndex((l) => !l.endsWith('-j RETURN'));
    assert.equal(firstJump, root.length - 2, `RETURNs first, then the two protocol jumps:\n${root.join('\n')}`);
    assert.equal(kubeProxyView(live), before);
  }
});
