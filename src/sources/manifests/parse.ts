// Text of one manifest file → model objects plus precise errors. Pure: no I/O, no state.
import { LineCounter, parseAllDocuments } from 'yaml';
import type { ManifestError } from './errors.ts';
import { formatFieldPath, issueMessage } from './errors.ts';
import { apiGroup, defaultKindHandlers, type KindHandler, type ModelObject } from './kinds.ts';

/** The manifest object a model object came from (an Endpoints may yield several slices). */
export interface ObjectIdentity {
  kind: string;
  namespace: string;
  name: string;
}

export interface ParsedObject {
  documentIndex: number;
  source: ObjectIdentity;
  object: ModelObject;
}

export interface InvalidObject {
  documentIndex: number;
  /** Set when kind and metadata.name could be read despite the errors. */
  source?: ObjectIdentity;
}

export interface ParsedFile {
  file: string;
  /** The YAML itself is broken: objects and invalid are empty, nothing in the file is trusted. */
  syntaxError: boolean;
  objects: ParsedObject[];
  invalid: InvalidObject[];
  errors: ManifestError[];
}

type Path = Array<string | number>;

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** kind/namespace/name when they can be read, so an error (or last-good lookup) can name the object. */
function readIdentity(obj: Record<string, unknown>): { kind?: string; namespace?: string; name?: string } {
  const kind = typeof obj.kind === 'string' && obj.kind ? obj.kind : undefined;
  const meta = isMapping(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' && meta.name ? meta.name : undefined;
  const namespace = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
  return { ...(kind ? { kind } : {}), ...(name ? { name, namespace } : {}) };
}

/**
 * A file that is one JSON document (`kubectl get -o json`, generated lists) is read with
 * JSON.parse: JSON is YAML, and the YAML parser's CST of a 10,000-service list peaks at hundreds
 * of MB, which the process keeps as RSS. Anything JSON.parse refuses goes through YAML, which
 * gives the precise errors.
 */
function parseJsonDocument(text: string): { value: unknown } | undefined {
  const first = /\S/.exec(text)?.[0];
  if (first !== '{' && first !== '[') return undefined;
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

export function parseManifestText(file: string, text: string, handlers: readonly KindHandler[] = defaultKindHandlers): ParsedFile {
  const result: ParsedFile = { file, syntaxError: false, objects: [], invalid: [], errors: [] };
  const json = parseJsonDocument(text);
  if (json !== undefined) {
    if (json.value !== null) readObject(json.value, [], 1, undefined);
    return result;
  }
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });

  // Any syntax error makes the whole file untrustworthy (a broken indent can silently shift fields).
  Array.from(docs).forEach((doc, i) => {
    for (const err of doc.errors) {
      const pos = lineCounter.linePos(err.pos[0]);
      result.errors.push({
        file,
        documentIndex: i + 1,
        line: pos.line,
        message: `YAML syntax error at line ${pos.line}, column ${pos.col}: ${err.message.split('\n')[0]}`,
      });
    }
  });
  if (result.errors.length > 0) {
    result.syntaxError = true;
    return result;
  }

  Array.from(docs).forEach((doc, i) => {
    const documentIndex = i + 1;
    if (doc.contents === null) return; // empty document ("---" alone, or only comments)
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (err) {
      result.errors.push({ file, documentIndex, message: `cannot read document: ${(err as Error).message}` });
      result.invalid.push({ documentIndex });
      return;
    }
    if (value === null || value === undefined) return;
    readObject(value, [], documentIndex, undefined);
  });
  return result;

  function fail(documentIndex: number, ident: ReturnType<typeof readIdentity>, field: string | undefined, message: string): void {
    result.errors.push({ file, documentIndex, ...ident, ...(field ? { field } : {}), message });
  }

  function readObject(value: unknown, prefix: Path, documentIndex: number, listDefaults: { apiVersion: string; kind: string } | undefined): void {
    if (!isMapping(value)) {
      fail(documentIndex, {}, prefix.length ? formatFieldPath(prefix) : undefined, 'expected a Kubernetes object (a mapping with apiVersion and kind)');
      result.invalid.push({ documentIndex });
      return;
    }
    // Items of typed lists (ServiceList from the API) carry no apiVersion/kind of their own.
    const apiVersion = typeof value.apiVersion === 'string' ? value.apiVersion : listDefaults?.apiVersion;
    const kind = typeof value.kind === 'string' ? value.kind : listDefaults?.kind;
    const ident = { ...readIdentity(value), ...(kind ? { kind } : {}) };
    if (!kind || !apiVersion) {
      fail(documentIndex, ident, formatFieldPath([...prefix, kind ? 'apiVersion' : 'kind']), 'required (not a Kubernetes object?)');
      result.invalid.push({ documentIndex });
      return;
    }

    if (kind === 'List' || (kind.endsWith('List') && Array.isArray(value.items))) {
      if (value.items === null || value.items === undefined) return;
      if (!Array.isArray(value.items)) {
        fail(documentIndex, { kind }, formatFieldPath([...prefix, 'items']), 'must be a list');
        result.invalid.push({ documentIndex });
        return;
      }
      const itemDefaults = kind === 'List' ? undefined : { apiVersion, kind: kind.slice(0, -'List'.length) };
      value.items.forEach((item, j) => readObject(item, [...prefix, 'items', j], documentIndex, itemDefaults));
      return;
    }

    const handler = handlers.find((h) => h.kind === kind && h.apiVersion === apiVersion);
    if (!handler) {
      // Same group and kind at another version: say so rather than silently dropping a Service.
      const sameGroup = handlers.filter((h) => h.kind === kind && apiGroup(h.apiVersion) === apiGroup(apiVersion));
      if (sameGroup.length > 0) {
        fail(
          documentIndex,
          ident,
          formatFieldPath([...prefix, 'apiVersion']),
          `unsupported apiVersion "${apiVersion}" for ${kind} (supported: ${sameGroup.map((h) => h.apiVersion).join(', ')})`,
        );
        result.invalid.push({ documentIndex, ...sourceOf(ident) });
      }
      return; // any other kind (Deployment, ConfigMap, ...) is not ours
    }

    const withDefaults = listDefaults ? { apiVersion, kind, ...value } : value;
    const r = handler.validate(withDefaults);
    if (r.ok) {
      const source = sourceOf(ident)?.source;
      if (!source) throw new Error('validated object without a name'); // schemas require metadata.name
      for (const object of r.objects) result.objects.push({ documentIndex, source, object });
      return;
    }
    for (const issue of r.issues) {
      fail(documentIndex, ident, formatFieldPath([...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))]), issueMessage(issue));
    }
    result.invalid.push({ documentIndex, ...sourceOf(ident) });
  }
}

function sourceOf(ident: { kind?: string; namespace?: string; name?: string }): { source: ObjectIdentity } | undefined {
  return ident.kind && ident.name ? { source: { kind: ident.kind, namespace: ident.namespace ?? 'default', name: ident.name } } : undefined;
}
