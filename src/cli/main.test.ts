import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const bin = fileURLToPath(new URL('../../bin/edgeproxy.js', import.meta.url));

test('--version prints the package version and the Node running it, and exits 0', async () => {
  const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const { stdout } = await promisify(execFile)(process.execPath, [bin, '--version']);
  assert.equal(stdout, `edgeproxy ${version} (Node ${process.version})\n`);
});
