import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Iptables } from './iptables.ts';
import { CommandNotFoundError, prefixedRunner, spawnRunner, type CommandRunner } from './runner.ts';

test('spawnRunner: stdin, stdout, stderr and exit code, without a shell', async () => {
  assert.deepEqual(await spawnRunner('cat', [], 'hello $HOME\n'), { code: 0, stdout: 'hello $HOME\n', stderr: '' });
  const r = await spawnRunner('sh', ['-c', 'echo out; echo err >&2; exit 3']);
  assert.deepEqual(r, { code: 3, stdout: 'out\n', stderr: 'err\n' });
});

test('spawnRunner: a command that ignores stdin does not crash', async () => {
  const r = await spawnRunner('true', [], 'x'.repeat(1 << 20));
  assert.equal(r.code, 0);
});

test('spawnRunner: missing binary is a CommandNotFoundError', async () => {
  await assert.rejects(spawnRunner('edgeproxy-no-such-binary', []), (err: unknown) => {
    assert.ok(err instanceof CommandNotFoundError);
    assert.equal(err.command, 'edgeproxy-no-such-binary');
    return true;
  });
});

test('Iptables: missing iptables binary gives an install hint', async () => {
  const ipt = new Iptables({ runner: spawnRunner, binaries: { save: 'iptables-save-missing', restore: 'iptables-restore-missing' } });
  await assert.rejects(ipt.readNat(), /^Error: iptables-save-missing not found: install iptables$/);
  await assert.rejects(ipt.restoreNat('-X FOO\n'), /iptables-restore-missing not found: install iptables/);
});

test('prefixedRunner prepends the prefix', async () => {
  const calls: Array<[string, string[], string | undefined]> = [];
  const recorder: CommandRunner = async (cmd, args, stdin) => {
    calls.push([cmd, args, stdin]);
    return { code: 0, stdout: '', stderr: '' };
  };
  await prefixedRunner(['ip', 'netns', 'exec', 'ns1'], recorder)('iptables-save', ['-t', 'nat'], 'in');
  assert.deepEqual(calls, [['ip', ['netns', 'exec', 'ns1', 'iptables-save', '-t', 'nat'], 'in']]);
});

test('Iptables: restore failure names the offending payload line', async () => {
  const runner: CommandRunner = async (cmd, args, stdin) => {
    assert.equal(cmd, 'iptables-restore');
    assert.deepEqual(args, ['--noflush', '--wait', '5']);
    assert.equal(stdin, '*nat\n:EDGE-MESH - [0:0]\n-A EDGE-MESH --bogus\nCOMMIT\n');
    return { code: 2, stdout: '', stderr: 'iptables-restore v1.8.9 (nf_tables): unknown option "--bogus"\nError occurred at line: 3\n' };
  };
  await assert.rejects(
    new Iptables({ runner }).restoreNat(':EDGE-MESH - [0:0]\n-A EDGE-MESH --bogus'),
    (err: Error) => {
      assert.match(err.message, /iptables-restore failed \(exit 2\): .*unknown option "--bogus"/s);
      assert.match(err.message, /line 3: -A EDGE-MESH --bogus$/);
      return true;
    },
  );
});
