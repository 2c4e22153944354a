// Start-up at scale without a heap sized for it for good. Loading 10,000 services and opening
// their listeners keeps nearly every object it makes, which is what makes V8 grow its young
// generation (up to two 64 MB semi-spaces) and size the old one generously; none of that is
// given back while the agent idles, and it stayed as ~160 MB of RSS. Until the first sync is
// done the agent asks V8 to favour size (no young-generation growth, --optimize-for-size), then
// gives V8 back its defaults, so traffic later gets the heap V8 would choose for it.
import { setFlagsFromString } from 'node:v8';

/** V8's default --semi-space-growth-factor. */
const DEFAULT_GROWTH_FACTOR = 2;

/** Makes V8 favour size; the returned function (idempotent) restores V8's defaults. */
export function holdHeapGrowth(setFlags: (flags: string) => void = setFlagsFromString): () => void {
  setFlags('--semi-space-growth-factor=1');
  setFlags('--optimize-for-size');
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    setFlags(`--semi-space-growth-factor=${DEFAULT_GROWTH_FACTOR}`);
    setFlags('--no-optimize-for-size');
  };
}
