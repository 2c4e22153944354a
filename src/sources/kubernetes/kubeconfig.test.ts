import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeconfigText } from '../../../test/support/fakeApiServer.ts';
import { loadKubeConfig, pickKubeconfig } from './kubeconfig.ts';

test('which kubeconfig: flag, then config, then the first $KUBECONFIG entry, else in-cluster', () => {
  const cases: Array<[string | undefined, string | undefined, string | undefined, string | undefined]> = [
    ['/flag', '/config', '/env', '/flag'],
    [undefined, '/config', '/env', '/config'],
    [undefined, undefined, '/a:/b', '/a'],
    [undefined, undefined, ':/b', '/b'],
    [undefined, undefined, '', undefined],
    [undefined, undefined, undefined, undefined],
  ];
  for (const [flag, configured, env, want] of cases) assert.equal(pickKubeconfig(flag, configured, env), want, `${flag} ${configured} ${env}`);
});

test('a kubeconfig file gives its current cluster', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-kc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubeconfig');
  await writeFile(file, kubeconfigText('http://127.0.0.1:6443'));
  assert.equal(loadKubeConfig(file).getCurrentCluster()?.server, 'http://127.0.0.1:6443');
  assert.throws(() => loadKubeConfig(join(dir, 'missing')), /ENOENT/);
});
