// API objects → model objects, through the manifest source's kind handlers (same zod schemas, same
// conversion), so a Service read from the API server and the same Service in a manifest file
// become identical model objects.
import { defaultKindHandlers, apiGroup, type KindHandler, type ModelObject } from '../manifests/kinds.ts';
import { formatFieldPath, issueMessage } from '../manifests/errors.ts';
import type { ApiResource } from './resources.ts';

export interface ObjectRef {
  namespace: string;
  name: string;
}

export type Converted = { ok: true; objects: ModelObject[] } | { ok: false; problems: string[] };

/** The handler for a resource's kind; version-agnostic for CRDs (DestinationRule v1/v1beta1/v1alpha3). */
export function handlerFor(resource: Pick<ApiResource, 'group' | 'kind'>, handlers: readonly KindHandler[] = defaultKindHandlers): KindHandler | undefined {
  return handlers.find((h) => h.kind === resource.kind && apiGroup(h.apiVersion) === resource.group);
}

/** namespace/name of any API object (namespace "default" when unset, as the manifest source does). */
export function objectRef(raw: unknown): ObjectRef {
  const meta = (raw as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
  return {
    namespace: typeof meta?.namespace === 'string' && meta.namespace ? meta.namespace : 'default',
    name: typeof meta?.name === 'string' ? meta.name : '',
  };
}

/** Validates and converts one API object; problems are "field: message" lines. */
export function convertApiObject(handler: KindHandler, raw: unknown): Converted {
  // Objects from a typed list call are class instances with undefined fields; a JSON round trip
  // gives the schemas the same plain shape a watch event (or a manifest) has.
  const plain: unknown = JSON.parse(JSON.stringify(raw ?? null));
  const r = handler.validate(plain);
  if (r.ok) return { ok: true, objects: r.objects };
  return {
    ok: false,
    problems: r.issues.map((issue) => {
      const field = formatFieldPath(issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)));
      return field ? `${field}: ${issueMessage(issue)}` : issueMessage(issue);
    }),
  };
}
