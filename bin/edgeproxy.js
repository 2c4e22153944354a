#!/usr/bin/env node
// Entry point: the sources are TypeScript run directly by Node >= 22.18 (type stripping).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`edgeproxy needs Node >= 22.19 (this is ${process.version}). Run it through npm (npx edgeproxy, npm run ...) to use the Node from node_modules, or install Node 24.`);
  process.exit(1);
}
const { enableCompileCache, flushCompileCache } = await import('./compileCache.js');
enableCompileCache();
const { main } = await import('../src/cli/main.ts');
flushCompileCache();
// Exit explicitly: a failed start must not leave the process hanging on an open handle.
process.exit(await main(process.argv));
