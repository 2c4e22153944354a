// When the Iptables class syncs in full and when incrementally, and what it runs for each, with a
// scripted runner in place of the iptables binaries (the real ones: iptables.netns.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderRules } from '../rules/render.ts';
import type { DesiredRules } from '../rules/types.ts';
import { Iptables } from './iptables.ts';
import type { CommandRunner } from './runner.ts';

const desired: DesiredRules = {
  layout: 'portals',
  family: 'ipv4',
  proxied: [
    { portName: 'default/a:http', clusterIP: '10.96.0.11', protocol: 'TCP', port: 80, listenPort: 40001 },
    { portName: 'default/b:http', clusterIP: '10.96.0.12', protocol: 'TCP', port: 80, listenPort: 40002 },
  ],
  ignored: [],
};
const rendered = renderRules(desired);
const jumpComment = '"handle ClusterIPs; NOTE: this must be before the NodePort rules"';
const jumps = {
  PREROUTING: `-A PREROUTING -m comment --comment ${jumpComment} -j KUBE-PORTALS-CONTAINER`,
  OUTPUT: `-A OUTPUT -m comment --comment ${jumpComment} -j KUBE-PORTALS-HOST`,
};

/** A nat table that holds `rules`, served as iptables-save and iptables -S would print it. */
function fakeIptables(initial: string[] = []) {
  const state = { rules: initial, restoreFails: 0 };
  const calls: string[] = [];
  const payloads: string[] = [];
  const runner: CommandRunner = async (cmd, args, stdin) => {
    calls.push([cmd, ...args].join(' '));
    if (cmd === 'iptables-save') {
      const ours = ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST'].filter((c) => state.rules.some((l) => l.includes(`-j ${c}`)));
      const text = ['*nat', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...ours.map((c) => `:${c} - [0:0]`), ...state.rules, 'COMMIT', ''];
      return { code: 0, stdout: text.join('\n'), stderr: '' };
    }
    if (cmd === 'iptables') {
      const chain = args.at(-1) as string;
      const builtin = chain === 'PREROUTING' || chain === 'OUTPUT';
      if (!builtin && !state.rules.some((l) => l.includes(`-j ${chain}`))) {
        // What nf_tables' iptables 1.8.9 says of a chain that does not exist.
        return { code: 1, stdout: '', stderr: `iptables v1.8.9 (nf_tables): chain \`${chain}' in table \`nat' is incompatible, use 'nft' tool.\n` };
      }
      const lines = [builtin ? `-P ${chain} ACCEPT` : `-N ${chain}`, ...state.rules.filter((l) => l.startsWith(`-A ${chain} `))];
      return { code: 0, stdout: `${lines.join('\n')}\n`, stderr: '' };
    }
    payloads.push(stdin ?? '');
    if (state.restoreFails > 0) {
      state.restoreFails--;
      return { code: 1, stdout: '', stderr: 'iptables-restore: line 2 failed\n' };
    }
    return { code: 0, stdout: '', stderr: '' };
  };
  const take = () => calls.splice(0);
  return { state, runner, take, payloads };
}

/** The table after our first sync: jumps and rendered rules in place. */
const installed = () => [jumps.PREROUTING, jumps.OUTPUT, ...rendered.rules];

const listing = (chains: string[]) => chains.map((c) => `iptables -w 5 -t nat -S ${c}`);
/** A later full sync's reads (portals layout): the chains of our jumps and rules, in parallel. */
const ourRead = listing(['PREROUTING', 'OUTPUT', 'KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST']);
/** A cleanup's reads: those and the other layout's chains. */
const cleanupRead = [...ourRead, ...listing(['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'])];

test('Iptables: first sync reads the whole table, later ones PREROUTING/OUTPUT only and restore only changes', async () => {
  const fake = fakeIptables();
  const ipt = new Iptables({ runner: fake.runner, now: () => 0 });
  await ipt.sync(rendered);
  assert.deepEqual(fake.take(), ['iptables-save -t nat', 'iptables-restore --noflush --wait 5']);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'full', reason: 'first sync' });
  fake.state.rules = installed();

  assert.deepEqual(await ipt.sync(rendered), { repairs: [], installed: [], rulesWritten: 0 });
  assert.deepEqual(fake.take(), ['iptables -w 5 -t nat -S PREROUTING', 'iptables -w 5 -t nat -S OUTPUT']);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'incremental' });

  const changed = renderRules({ ...desired, proxied: [desired.proxied[0]!, { ...desired.proxied[1]!, listenPort: 40009 }] });
  assert.deepEqual(await ipt.sync(changed), { repairs: [], installed: [], rulesWritten: 2 });
  assert.deepEqual(fake.take(), ['iptables -w 5 -t nat -S PREROUTING', 'iptables -w 5 -t nat -S OUTPUT', 'iptables-restore --noflush --wait 5']);
  const old = rendered.rules.filter((l) => l.includes('10.96.0.12'));
  const added = changed.rules.filter((l) => l.includes('10.96.0.12'));
  assert.equal(fake.payloads.at(-1), ['*nat', ...old.map((l) => `-D${l.slice(2)}`), ...added, 'COMMIT', ''].join('\n'));
});

test('Iptables: a failed incremental restore falls back to a full sync in the same call', async () => {
  const fake = fakeIptables();
  const ipt = new Iptables({ runner: fake.runner, now: () => 0 });
  await ipt.sync(rendered);
  fake.state.rules = installed().filter((l) => !l.startsWith('-A KUBE-PORTALS-HOST -d 10.96.0.12/32'));
  fake.take();

  fake.state.restoreFails = 1;
  const changed = renderRules({ ...desired, proxied: desired.proxied.slice(0, 1) });
  await ipt.sync(changed);
  assert.deepEqual(fake.take(), [
    'iptables -w 5 -t nat -S PREROUTING',
    'iptables -w 5 -t nat -S OUTPUT',
    'iptables-restore --noflush --wait 5',
    ...ourRead,
    'iptables-restore --noflush --wait 5',
  ]);
  assert.equal(ipt.lastSyncMode?.mode, 'full');
  assert.match(ipt.lastSyncMode?.reason ?? '', /^incremental update failed: iptables-restore failed \(exit 1\)/);
  // Planned against the live table: only the rule still there is deleted.
  assert.equal(fake.payloads.at(-1), `*nat\n-D${rendered.rules.find((l) => l.startsWith('-A KUBE-PORTALS-CONTAINER -d 10.96.0.12/32'))!.slice(2)}\nCOMMIT\n`);
});

test('Iptables: a missing jump, the full-sync period and cleanup each make the next sync full', async () => {
  let now = 0;
  const fake = fakeIptables();
  const ipt = new Iptables({ runner: fake.runner, now: () => now, fullSyncPeriodMs: 60_000 });
  await ipt.sync(rendered);
  fake.state.rules = installed();

  fake.state.rules = installed().filter((l) => l !== jumps.OUTPUT);
  await ipt.sync(rendered);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'full', reason: 'OUTPUT: jump to KUBE-PORTALS-HOST is missing' });
  fake.state.rules = installed();

  now = 59_999;
  await ipt.sync(rendered);
  assert.equal(ipt.lastSyncMode?.mode, 'incremental');
  now = 60_000;
  fake.take();
  await ipt.sync(rendered);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'full', reason: 'periodic' });
  assert.deepEqual(fake.take(), ourRead);

  await ipt.cleanup();
  assert.deepEqual(fake.take(), [...cleanupRead, 'iptables-restore --noflush --wait 5']);
  await ipt.sync(rendered);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'full', reason: 'first sync' });
  // The fake's table still holds everything (it applies no payload), so only the read shows.
  assert.deepEqual(fake.take(), ['iptables-save -t nat']);
});

test('Iptables: fullSyncPeriodMs 0 makes every sync a full one', async () => {
  const fake = fakeIptables(installed());
  const ipt = new Iptables({ runner: fake.runner, fullSyncPeriodMs: 0 });
  await ipt.sync(rendered);
  await ipt.sync(rendered);
  assert.deepEqual(fake.take(), ['iptables-save -t nat', ...ourRead]);
  assert.deepEqual(ipt.lastSyncMode, { mode: 'full', reason: 'fullSyncPeriod is 0' });
});

test('Iptables: a failed full sync is retried once against the whole table, with our chains refilled', async () => {
  const fake = fakeIptables(installed());
  const ipt = new Iptables({ runner: fake.runner });
  fake.state.restoreFails = 1;
  const fewer = renderRules({ ...desired, proxied: desired.proxied.slice(0, 1) });
  assert.equal((await ipt.sync(fewer)).rulesWritten, 2);
  assert.deepEqual(fake.take(), ['iptables-save -t nat', 'iptables-restore --noflush --wait 5', 'iptables-save -t nat', 'iptables-restore --noflush --wait 5']);
  assert.equal(fake.payloads.at(-1), ['*nat', ':KUBE-PORTALS-CONTAINER - [0:0]', ':KUBE-PORTALS-HOST - [0:0]', ...fewer.rules, 'COMMIT', ''].join('\n'));

  // A second failure is the caller's: nothing is known about our chains, so the next sync is full.
  const again = fakeIptables(installed());
  const ipt2 = new Iptables({ runner: again.runner });
  again.state.restoreFails = 2;
  await assert.rejects(ipt2.sync(fewer), /iptables-restore failed/);
  assert.equal(again.take().length, 4);
  await ipt2.sync(fewer);
  assert.deepEqual(again.take(), ['iptables-save -t nat', 'iptables-restore --noflush --wait 5']);
});
