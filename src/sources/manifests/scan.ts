// One pass over the manifest directory, remembering each file's last result so the next pass
// can apply the last-good rules and skip re-parsing files whose text did not change.
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
  result: FileObjects;
}

export class ManifestScanner {
  readonly #dir: string;
  readonly #handlers: readonly KindHandler[] | undefined;
  readonly #settleMs: number;
  readonly #now: () => number;
  #memo = new Map<string, FileMemo>();

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
        try {
          return { file, text: await readFile(file, 'utf8'), error: undefined };
        } catch (err) {
          return { file, text: undefined, error: err as NodeJS.ErrnoException };
        }
      }),
    );
    const next = new Map<string, FileMemo>();
    let unsettled = false;
    for (const t of texts) {
      const previous = this.#memo.get(t.file);
      if (t.text === undefined) {
        if (t.error?.code === 'ENOENT') continue; // deleted between listing and reading
        next.set(t.file, { digest: undefined, result: unreadableFile(t.file, `cannot read file: ${t.error?.message}`, previous?.result) });
        continue;
      }
      const digest = textDigest(t.text);
      if (previous && previous.digest === digest) {
        next.set(t.file, previous);
        continue;
      }
      if (previous && previous.result.objects.length > 0 && t.text.trim() === '' && (await this.#modifiedRecently(t.file))) {
        next.set(t.file, previous);
        unsettled = true;
        continue;
      }
      const parsed = parseManifestText(t.file, t.text, this.#handlers);
      next.set(t.file, { digest, result: withLastGood(parsed, previous?.result) });
    }
    this.#memo = next;
    const present = [...next.keys()];
    return { ...mergeFiles([...next.values()].map((m) => m.result)), files: present, unsettled };
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

function textDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64');
}
