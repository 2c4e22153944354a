// Finding manifest files under a directory. Follows symlinks because Kubernetes mounts
// ConfigMaps as symlinks into a "..data" dir; dot entries (that dir, editors' swap files) are skipped.
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export function isManifestFileName(name: string): boolean {
  return !name.startsWith('.') && MANIFEST_EXTENSIONS.has(path.extname(name).toLowerCase());
}

/** All manifest files under dir (recursive), as path.join(dir, relative), sorted. Throws if dir is unreadable. */
export async function listManifestFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visited = new Set<string>(); // real paths, so a symlink loop cannot recurse forever
  await walk(dir, true);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  async function walk(current: string, isRoot: boolean): Promise<void> {
    let real: string;
    try {
      real = await realpath(current);
    } catch (err) {
      if (isRoot) throw err;
      return; // vanished while walking
    }
    if (visited.has(real)) return;
    visited.add(real);
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (err) {
      if (isRoot) throw err;
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(current, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const st = await stat(full);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) await walk(full, false);
      else if (isFile && isManifestFileName(entry.name)) out.push(full);
    }
  }
}
