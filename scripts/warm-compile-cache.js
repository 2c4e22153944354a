// `node scripts/warm-compile-cache.js`: fills the agent's compile cache (bin/compileCache.js) with
// every module under src/ (tests excepted) and the libraries they import, the Kubernetes client
// included, which the agent loads only when its Kubernetes source is on. The TCP worker thread's
// entry runs once in a thread of its own (importing it elsewhere would start it). The image runs
// this at build time, so that no start of the agent pays for stripping types.
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { compileCacheDir, enableCompileCache, flushCompileCache } from '../bin/compileCache.js';

const status = enableCompileCache();
const src = fileURLToPath(new URL('../src', import.meta.url));
const workerEntry = join('proxy', 'workers', 'worker.ts');
const modules = readdirSync(src, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.split(sep).at(-1).toLowerCase().includes('testsupport') && f !== workerEntry)
  .sort();
for (const f of modules) await import(pathToFileURL(join(src, f)).href);
flushCompileCache();
// An idle worker (no ports), ended once it is up: it compiles its entry into the cache as it exits.
const worker = new Worker(join(src, workerEntry), { workerData: { index: 1, logLevel: 'silent', tuning: {} } });
await new Promise((resolve, reject) => worker.once('online', resolve).once('error', reject));
await worker.terminate();
console.log(`compile cache ${status}: ${modules.length + 1} modules from src/ in ${relative(process.cwd(), compileCacheDir) || '.'}`);
