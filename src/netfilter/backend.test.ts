import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backendsWithOurChains, chooseBackend, detectBackend, resolveBackend, saveSection, type BackendEvidence } from './backend.ts';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';

const table = (name: string, ...chains: string[]) => [`*${name}`, ...chains.map((c) => `:${c} - [0:0]`), 'COMMIT', ''].join('\n');
const kubeProxyNat = table('nat', 'KUBE-SERVICES', 'KUBE-MARK-MASQ');
const hintMangle = table('mangle', 'KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY');
const canaryOnly = table('mangle', 'KUBE-KUBELET-CANARY');
const emptyNat = table('nat');
const emptyMangle = table('mangle');
// kube-proxy also has a KUBE-SERVICES chain in filter: that alone says nothing about nat.
const legacyFilterOnly = table('filter', 'KUBE-SERVICES', 'KUBE-FIREWALL');

describe('chooseBackend', () => {
  const cases: { name: string; evidence: BackendEvidence; mode: string; reason: RegExp }[] = [
    { name: 'kube-proxy in nf_tables', evidence: { nftNat: kubeProxyNat, nftMangle: hintMangle, legacyAll: '' }, mode: 'nft', reason: /KUBE-SERVICES is in the nf_tables/ },
    { name: 'kube-proxy in legacy', evidence: { nftNat: emptyNat, nftMangle: emptyMangle, legacyAll: hintMangle + kubeProxyNat }, mode: 'legacy', reason: /KUBE-SERVICES is in the legacy/ },
    { name: "kube-proxy's nat decides over kubelet's hint elsewhere", evidence: { nftNat: emptyNat, nftMangle: hintMangle, legacyAll: kubeProxyNat }, mode: 'legacy', reason: /KUBE-SERVICES/ },
    { name: 'no kube-proxy yet, kubelet on nf_tables', evidence: { nftNat: emptyNat, nftMangle: hintMangle, legacyAll: '' }, mode: 'nft', reason: /kubelet/ },
    { name: 'no kube-proxy yet, kubelet (before 1.24) on legacy', evidence: { nftNat: emptyNat, nftMangle: emptyMangle, legacyAll: canaryOnly }, mode: 'legacy', reason: /kubelet/ },
    { name: 'KUBE-SERVICES only in legacy filter: not a nat signal', evidence: { nftNat: emptyNat, nftMangle: emptyMangle, legacyAll: legacyFilterOnly }, mode: 'system', reason: /no kube-proxy or kubelet chains/ },
    { name: 'nothing anywhere', evidence: { nftNat: emptyNat, nftMangle: emptyMangle, legacyAll: '' }, mode: 'system', reason: /set iptables.backend/ },
    { name: 'no -nft/-legacy binaries (iptables before 1.8)', evidence: {}, mode: 'system', reason: /neither iptables-nft nor iptables-legacy could be read/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const choice = chooseBackend(c.evidence);
      assert.equal(choice.mode, c.mode);
      assert.match(choice.reason, c.reason);
    });
  }

  it('binaries follow the mode', () => {
    assert.deepEqual(chooseBackend({ legacyAll: kubeProxyNat }).binaries, { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore', list: 'iptables-legacy' });
    assert.deepEqual(chooseBackend({ nftNat: kubeProxyNat }).binaries, { save: 'iptables-nft-save', restore: 'iptables-nft-restore', list: 'iptables-nft' });
    assert.deepEqual(chooseBackend({}).binaries, { save: 'iptables-save', restore: 'iptables-restore', list: 'iptables' });
  });
});

describe('saveSection', () => {
  it('cuts one table out of a multi-table save', () => {
    const all = table('filter', 'KUBE-SERVICES') + table('nat', 'EDGE-MESH');
    assert.match(saveSection(all, 'nat'), /:EDGE-MESH/);
    assert.doesNotMatch(saveSection(all, 'nat'), /KUBE-SERVICES/);
    assert.equal(saveSection(all, 'mangle'), '');
  });
});

describe('backendsWithOurChains (what cleanup cleans)', () => {
  it('each backend whose nat table declares a chain of ours', () => {
    assert.deepEqual(backendsWithOurChains({ nftNat: table('nat', 'KUBE-PORTALS-HOST'), legacyAll: table('nat', 'EDGE-MESH') }), ['nft', 'legacy']);
    assert.deepEqual(backendsWithOurChains({ nftNat: kubeProxyNat, legacyAll: '' }), []);
    assert.deepEqual(backendsWithOurChains({ nftNat: emptyNat, legacyAll: table('filter', 'EDGE-MESH') }), []);
    assert.deepEqual(backendsWithOurChains({}), ['system']);
  });
});

describe('detectBackend / resolveBackend', () => {
  it('reads both backends without -t for legacy (which would create the table), and tolerates a missing binary', async () => {
    const calls: string[] = [];
    const runner: CommandRunner = async (cmd, args) => {
      calls.push([cmd, ...args].join(' '));
      if (cmd === 'iptables-nft-save') throw new CommandNotFoundError(cmd);
      return { code: 0, stdout: hintMangle + kubeProxyNat, stderr: '' };
    };
    const choice = await detectBackend(runner);
    assert.equal(choice.mode, 'legacy');
    assert.deepEqual(calls.sort(), ['iptables-legacy-save', 'iptables-nft-save -t mangle', 'iptables-nft-save -t nat']);
  });

  it('a failing read counts as no evidence', async () => {
    const runner: CommandRunner = async () => ({ code: 1, stdout: '', stderr: 'permission denied' });
    assert.equal((await detectBackend(runner)).mode, 'system');
  });

  it('a configured backend runs no detection', async () => {
    const runner: CommandRunner = async () => assert.fail('no command expected');
    assert.deepEqual(await resolveBackend('legacy', runner), {
      mode: 'legacy',
      binaries: { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore', list: 'iptables-legacy' },
      reason: 'iptables.backend in the config',
    });
  });
});
