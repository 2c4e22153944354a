// bin/compileCache.js through the real entry point: a second start of the CLI finds its modules
// in the compile cache and, on Node 24, never loads the TypeScript stripper.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const bin = fileURLToPath(new URL('../../bin/edgeproxy.js', import.meta.url));
/** Prints, as the process exits, how many of Node's own modules for type stripping it loaded. */
const reportStripper = `data:text/javascript,${encodeURIComponent(
  'process.on("exit", () => process.stderr.write(`stripper modules: ${process.moduleLoadList.filter((m) => m.includes("amaro")).length}\\n`));',
)}`;

async function startCli(env: Record<string, string>): Promise<{ stripperModules: number }> {
  // Node reads NODE_DISABLE_COMPILE_CACHE as set even when it is empty.
  const { NODE_DISABLE_COMPILE_CACHE: _, ...inherited } = process.env;
  const { stderr } = await promisify(execFile)(process.execPath, ['--import', reportStripper, bin, 'help'], { env: { ...inherited, ...env } });
  const n = /stripper modules: (\d+)/.exec(stderr)?.[1];
  assert.ok(n !== undefined, `no report in: ${stderr}`);
  return { stripperModules: Number(n) };
}

async function files(dir: string): Promise<string[]> {
  try {
    return await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
}

test('the CLI fills its compile cache on the first start and reads it on the next', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-compile-cache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cold = await startCli({ NODE_COMPILE_CACHE: dir });
  assert.ok(cold.stripperModules > 0, 'an empty cache: the sources are stripped of their types');
  const cached = await files(dir);
  assert.ok(cached.length > 10, `entries written: ${cached.length}`);
  const warm = await startCli({ NODE_COMPILE_CACHE: dir });
  // Node 22 caches the compiled code but strips the types again each start.
  if (Number(process.versions.node.split('.')[0]) >= 24) assert.equal(warm.stripperModules, 0, 'a warm cache: no type stripping');
  const off = await startCli({ NODE_COMPILE_CACHE: dir, NODE_DISABLE_COMPILE_CACHE: '1' });
  assert.ok(off.stripperModules > 0, 'NODE_DISABLE_COMPILE_CACHE=1 turns it off');
});
