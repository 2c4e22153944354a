// One pass over the manifest directory, remembering each file's last result so the next pass
// can apply the last-good rules and skip re-parsing files whose text did not change. A file whose
// stat is the same as when it was last read (inode, size, mtime and ctime, which every write
// moves and no tool sets back) is not read again: the periodic rescan of 10,000 services read
// and hashed ~10 MB each time, garbage that grew the agent's heap for nothing.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { listManifestFiles } from './files.ts';
import type { KindHandler } from './kinds.ts';
import { parseManifestText } from './parse.ts';
import { mergeFiles, unreadableFile, withLastGood, type FileObjects, type MergedView } from './snapshot.ts';

export interface ScanResult extends MergedView {
  /** Manifest files found in this pass. */
  files: string[];
  /** A file was found freshly emptied and its old objects were kept; scan again after settleMs. */
  unsettled: boolean;
}

export interface ManifestScannerOptions {
  handlers?: readonly KindHandler[];
  /**
   * A file that turns empty within this many ms of its modification keeps its previous objects
   * for now: `kubectl get -o yaml > f` truncates long before it writes. 0 (default) trusts every read.
   */
  settleMs?: number;
  now?: () => number;
}

interface FileMemo {
  /** Digest of the text (not the text: at 10,000 services that would be megabytes); undefined when unreadable. */
  digest: string | undefined;
  /** The file's stat just before that read; undefined when unreadable. */
  stamp?: string | undefined;
  result: FileObjects;
}

export class ManifestScanner {
  readonly #dir: string;
  readonly #handlers: readonly KindHandler[] | undefined;
  readonly #settleMs: number;
  readonly #now: () => number;
  #memo = new Map<string, FileMemo>();
  /** The last result, returned again while no file was added, removed or changed. */
  #last: ScanResult | undefined;

  constructor(dir: string, options: ManifestScannerOptions = {}) {
    this.#dir = dir;
    this.#handlers = options.handlers;
    this.#settleMs = options.settleMs ?? 0;
    this.#now = options.now ?? Date.now;
  }

  /** Reads the directory and returns the merged view. Throws if the directory itself is unreadable. */
  async scan(): Promise<ScanResult> {
    const files = await listManifestFiles(this.#dir);
    const texts = await Promise.all(
      files.map(async (file) => {
        const stamp = await fileStamp(file);
        const previous = this.#memo.get(file);
        if (stamp !== undefined && previous?.stamp === stamp) return { file, stamp, text: undefined, error: undefined, unchanged: previous };
        try {
          return { file, stamp, text: await readFile(file, 'utf8'), error: undefined, unchanged: undefined };
        } catch (err) {
          return { file, stamp, text: undefined, error: err as NodeJS.ErrnoException, unchanged: undefined };
        }
      }),
    );
    const next = new Map<string, FileMemo>();
    let unsettled = false;
    for (const t of texts) {
      const previous = this.#memo.get(t.file);
      if (t.unchanged !== undefined) {
        next.set(t.file, t.unchanged);
        continue;
      }
      if (t.text === undefined) {
        if (t.error?.code === 'ENOENT') continue; // deleted between listing and reading
        next.set(t.file, { digest: undefined, result: unreadableFile(t.file, `cannot read file: ${t.error?.message}`, previous?.result) });
        continue;
      }
      const digest = textDigest(t.text);
      if (previous && previous.digest === digest) {
        next.set(t.file, { ...previous, stamp: t.stamp });
        continue;
      }
      if (previous && previous.result.objects.length > 0 && t.text.trim() === '' && (await this.#modifiedRecently(t.file))) {
        next.set(t.file, { ...previous, stamp: undefined }); // read again next time
        unsettled = true;
        continue;
      }
      const parsed = parseManifestText(t.file, t.text, this.#handlers);
      next.set(t.file, { digest, stamp: t.stamp, result: withLastGood(parsed, previous?.result) });
    }
    const same = this.#last !== undefined && !this.#last.unsettled && !unsettled && next.size === this.#memo.size && [...next].every(([file, memo]) => this.#memo.get(file)?.result === memo.result);
    this.#memo = next;
    if (same) return this.#last!;
    const present = [...next.keys()];
    this.#last = { ...mergeFiles([...next.values()].map((m) => m.result)), files: present, unsettled };
    return this.#last;
  }

  async #modifiedRecently(file: string): Promise<boolean> {
    if (this.#settleMs <= 0) return false;
    try {
      return this.#now() - (await stat(file)).mtimeMs < this.#settleMs;
    } catch {
      return false;
    }
  }
}

/** What changes whenever the file's content may have: inode, size, mtime and ctime. */
async function fileStamp(file: string): Promise<string | undefined> {
  try {
    const st = await stat(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

function textDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64');
}
