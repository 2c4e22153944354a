// Turning per-file parse results into one consistent view: last-good carry-over for files that
// broke, and first-wins resolution of objects defined twice.
import type { DestinationRule, EndpointSlice, Service } from '../../model/types.ts';
import { serviceKey } from '../../model/types.ts';
import { compareManifestErrors, type ManifestError } from './errors.ts';
import type { ObjectIdentity, ParsedFile, ParsedObject } from './parse.ts';

/** What one file contributes right now: its usable objects and the errors of its current text. */
export interface FileObjects {
  file: string;
  objects: ParsedObject[];
  errors: ManifestError[];
}

export interface MergedView {
  services: Map<string, Service>;
  slices: Map<string, EndpointSlice>;
  destinationRules: Map<string, DestinationRule>;
  errors: ManifestError[];
}

function identityKey(id: ObjectIdentity): string {
  return `${id.kind} ${id.namespace}/${id.name}`;
}

/**
 * Applies the last-good rules: a file with a YAML syntax error keeps all its previous objects;
 * an invalid document whose kind/namespace/name can be read keeps that object's previous
 * version from this file. Everything else comes from the current text.
 */
export function withLastGood(parsed: ParsedFile, previous: FileObjects | undefined): FileObjects {
  if (parsed.syntaxError) return { file: parsed.file, objects: previous?.objects ?? [], errors: parsed.errors };
  const objects = [...parsed.objects];
  const present = new Set(parsed.objects.map((o) => identityKey(o.source)));
  for (const inv of parsed.invalid) {
    if (!inv.source || !previous) continue;
    const key = identityKey(inv.source);
    if (present.has(key)) continue; // a valid copy in this file already wins
    present.add(key);
    for (const prev of previous.objects) {
      if (identityKey(prev.source) === key) objects.push({ ...prev, documentIndex: inv.documentIndex });
    }
  }
  objects.sort((a, b) => a.documentIndex - b.documentIndex);
  return { file: parsed.file, objects, errors: parsed.errors };
}

/** A file that exists but cannot be read keeps its previous objects, like a syntax error. */
export function unreadableFile(file: string, message: string, previous: FileObjects | undefined): FileObjects {
  return { file, objects: previous?.objects ?? [], errors: [{ file, documentIndex: 0, message }] };
}

/** Merges files in path order; a second definition of the same object is an error and is dropped. */
export function mergeFiles(files: readonly FileObjects[]): MergedView {
  const sorted = [...files].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  const services = new Map<string, Service>();
  const slices = new Map<string, EndpointSlice>();
  const destinationRules = new Map<string, DestinationRule>();
  const firstSeen = new Map<string, ParsedObject & { file: string }>();
  const errors: ManifestError[] = [];
  for (const f of sorted) {
    errors.push(...f.errors);
    for (const o of f.objects) {
      const key = serviceKey(o.object.value.namespace, o.object.value.name);
      const typedKey = `${o.object.kind} ${key}`;
      const first = firstSeen.get(typedKey);
      if (first) {
        errors.push({
          file: f.file,
          documentIndex: o.documentIndex,
          kind: o.source.kind,
          namespace: o.source.namespace,
          name: o.source.name,
          message: `duplicate ${o.object.kind} ${key}: already defined in ${first.file} doc ${first.documentIndex} (${first.source.kind}), which is used; this one is ignored`,
        });
        continue;
      }
      firstSeen.set(typedKey, { ...o, file: f.file });
      if (o.object.kind === 'Service') services.set(key, o.object.value);
      else if (o.object.kind === 'DestinationRule') destinationRules.set(key, o.object.value);
      else slices.set(key, o.object.value);
    }
  }
  return { services, slices, destinationRules, errors: errors.sort(compareManifestErrors) };
}
