// Problems found in manifest files, in a shape that names the exact place to fix.
import type { z } from 'zod';

export interface ManifestError {
  /** Path of the file as reached from the configured directory (e.g. "examples/bad.yaml"). */
  file: string;
  /** 1-based position of the YAML document in the file, as a person counts; 0 for the whole file. */
  documentIndex: number;
  kind?: string;
  namespace?: string;
  name?: string;
  /** Dotted path of the offending field, e.g. "spec.ports[0].port". */
  field?: string;
  message: string;
  /** 1-based line in the file, when known (YAML syntax errors). */
  line?: number;
}

/** One line: `examples/bad.yaml doc 2 Service default/web: spec.ports[0].port: must be ...`. */
export function formatManifestError(e: ManifestError): string {
  let where = e.documentIndex > 0 ? `${e.file} doc ${e.documentIndex}` : e.file;
  if (e.kind) where += ` ${e.kind}`;
  if (e.name) where += ` ${e.namespace ?? 'default'}/${e.name}`;
  return e.field ? `${where}: ${e.field}: ${e.message}` : `${where}: ${e.message}`;
}

/** Stable order for reports: file, then document, then the rest of the line. */
export function compareManifestErrors(a: ManifestError, b: ManifestError): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  if (a.documentIndex !== b.documentIndex) return a.documentIndex - b.documentIndex;
  const fa = formatManifestError(a);
  const fb = formatManifestError(b);
  return fa < fb ? -1 : fa > fb ? 1 : 0;
}

const plainKey = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** ['spec', 'ports', 0, 'port'] → "spec.ports[0].port"; odd keys are quoted (label names). */
export function formatFieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && plainKey.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** Short rendering of a bad value for messages; long values are cut. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** zod's built-in wording is generic; say "required" / "must be ..." like kubectl does. */
export function issueMessage(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  const hasInput = 'input' in issue;
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input')) {
    if (!hasInput || input === undefined) return 'required';
    const expected = issue.expected === 'record' || issue.expected === 'object' ? 'mapping' : issue.expected === 'array' ? 'list' : issue.expected;
    return `must be a ${expected} (got ${describeValue(input)})`;
  }
  if (issue.code === 'invalid_value' && issue.message.startsWith('Invalid option')) {
    const options = issue.values.map((v) => String(v)).join(', ');
    return `must be one of ${options} (got ${describeValue(input)})`;
  }
  return issue.message;
}
