// Initial lists and relists in pages, as client-go's reflector does (500 objects a page): at
// 10,000 services one response held every object at once, and the agent parsed and kept it
// whole until the last item was handled, a peak V8 never gave back. A page is slimmed and
// made plain (slim.ts) as it arrives.
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { plainObject, slimObject } from './slim.ts';

export const LIST_PAGE_SIZE = 500;

type List = KubernetesListObject<KubernetesObject>;
/** Fetches one page: `cont` is the last page's continue token, undefined for the first. */
export type PageFetch = (limit: number, cont: string | undefined) => Promise<List>;

/** The continue token of a page: typed lists carry it as `_continue`, custom objects as `continue`. */
function continueToken(page: List): string | undefined {
  const meta = page.metadata as { _continue?: string; continue?: string } | undefined;
  return meta?._continue || meta?.continue || undefined;
}

/** Every page of a list, joined into one list with the last page's metadata (its resourceVersion). */
export async function listInPages(fetchPage: PageFetch, pageSize = LIST_PAGE_SIZE): Promise<List> {
  const items: KubernetesObject[] = [];
  let cont: string | undefined;
  let page: List;
  do {
    page = await fetchPage(pageSize, cont);
    for (const item of page.items ?? []) items.push(plainObject(slimObject(item)));
    cont = continueToken(page);
  } while (cont !== undefined);
  const { _continue: _c, continue: _d, ...metadata } = (page.metadata ?? {}) as Record<string, unknown>;
  return { ...page, metadata, items } as List;
}
