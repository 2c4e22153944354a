import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { CommandNotFoundError, type CommandRunner } from '../../netfilter/runner.ts';
import { statusCommand } from './status.ts';

const C = 'KUBE-PORTALS-CONTAINER';
const H = 'KUBE-PORTALS-HOST';
const jump = (chain: string, target: string) =>
  `-A ${chain} -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j ${target}`;
const redirect = (chain: string, port: number) =>
  `-A ${chain} -d 10.96.0.5/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports ${port}`;

/** An iptables-save of a nat table where a change to default/web went in as an override. */
const saved = [
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  `:${C} - [0:0]`,
  `:${H} - [0:0]`,
  ':KUBE-SERVICES - [0:0]',
  jump('PREROUTING', C),
  '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  jump('OUTPUT', H),
  '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  redirect(C, 40001),
  redirect(C, 40000),
  redirect(H, 40000),
  'COMMIT',
  '',
].join('\n');

test('status: rule counts say how many rules are overridden and wait for a quiet resync', async () => {
  // The nf_tables backend holds kube-proxy's chains; legacy is not installed.
  const runner: CommandRunner = async (cmd, args) => {
    if (cmd === 'iptables-legacy-save') throw new CommandNotFoundError(cmd);
    assert.equal(cmd, 'iptables-nft-save');
    return { code: 0, stdout: args.includes('mangle') ? '*mangle\nCOMMIT\n' : saved, stderr: '' };
  };
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d));
  const code = await statusCommand(out, runner);
  assert.equal(code, 0);
  assert.match(text, /^iptables backend: nft \(kube-proxy's KUBE-SERVICES is in the nf_tables backend's nat table\)$/m);
  assert.match(text, /^chain KUBE-PORTALS-CONTAINER: 2 rules \(1 overridden by a later change; the agent's next quiet resync deletes them\)$/m);
  assert.match(text, /^chain KUBE-PORTALS-HOST: 1 rule$/m);
  assert.match(text, /^PREROUTING -> KUBE-PORTALS-CONTAINER: position 1, KUBE-SERVICES at 2 ok$/m);
});
