// Real iptables inside a throwaway network namespace. Needs root, iproute2 and iptables:
// without them these tests fail (never skip) so a missing prerequisite cannot pass silently.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules } from '../rules/types.ts';
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

async function netnsWithFixture(t: TestContext): Promise<Netns> {
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
  return { ipt: new Iptables({ runner }), save, run };
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

test('real iptables: a rejected payload changes nothing and reports the failing line', async (t) => {
  const ns = await netnsWithFixture(t);
  const before = await ns.save();
  await assert.rejects(
    ns.ipt.restoreNat(':EDGE-MESH - [0:0]\n-A EDGE-MESH -j RETURN\n-A EDGE-MESH --bogus-option\n'),
    /iptables-restore failed \(exit 2\): .*line 4: -A EDGE-MESH --bogus-option$/s,
  );
  assert.equal(await ns.save(), before);
});
