import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ManifestScanner } from './scan.ts';

const svc = (name: string, port: number): string =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec: {clusterIP: 10.96.0.${port % 250}, ports: [{port: ${port}}]}\n`;

describe('ManifestScanner: unchanged files are not read again', () => {
  it('a rescan with nothing changed returns the last result itself; each kind of change is still seen', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'edgeproxy-scan-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const a = path.join(dir, 'a.yaml');
    await writeFile(a, svc('web', 80));
    await writeFile(path.join(dir, 'b.yaml'), svc('api', 81));
    const scanner = new ManifestScanner(dir);
    const first = await scanner.scan();
    assert.equal(first.services.size, 2);
    assert.equal(await scanner.scan(), first, 'nothing changed: the same view, nothing re-merged');

    // Same size, and the modification time set back to what it was: the ctime still moved.
    const before = await stat(a);
    await writeFile(a, svc('wex', 80));
    await utimes(a, before.atime, before.mtime);
    const edited = await scanner.scan();
    assert.notEqual(edited, first);
    assert.deepEqual([...edited.services.keys()].sort(), ['default/api', 'default/wex']);

    await writeFile(path.join(dir, 'c.yaml'), svc('db', 82));
    assert.equal((await scanner.scan()).services.size, 3, 'a new file');
    await unlink(path.join(dir, 'b.yaml'));
    const removed = await scanner.scan();
    assert.deepEqual([...removed.services.keys()].sort(), ['default/db', 'default/wex'], 'a removed file');
    assert.equal(await scanner.scan(), removed);
  });
});
