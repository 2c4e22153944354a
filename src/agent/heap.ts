// A heap sized for what the agent keeps, not for its bursts.
// - Young generation: V8 grows it (two semi-spaces, up to 32 MB each) whenever many objects
//   survive a scavenge, as they do while loading 10,000 services, in a full rule sync, a /metrics
//   scrape at scale or a burst of short connections, and it never gave that memory back while
//   the agent idled: with 10,000 ports and /metrics scraped, RSS climbed from ~170 to ~245 MB in
//   150 s; the 1-service agent ended the traffic bench at ~375 MB. So it is not allowed to grow:
//   it stays at 1-2 MB. Alternating runs of bench/tcpQuick.ts measured no loss in short
//   connections or bulk throughput; a full rule sync at 10,000 services costs ~20% more, as more
//   of its garbage reaches the old generation. An operator who sizes it on the command line
//   (`--max-semi-space-size`, in NODE_OPTIONS or node's arguments) keeps V8's growth.
// - Until the first sync V8 is also asked to favour size (--optimize-for-size), which start-up at
//   scale needs and traffic later does not.
// The flags are process-wide: worker threads started later get them too.
import { setFlagsFromString } from 'node:v8';

/** Whether the operator set the young generation's size themselves. */
export function youngGenerationSizedByOperator(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((arg) => /^--(max|min)[-_]semi[-_]space[-_]size\b|^--semi[-_]space[-_]growth[-_]factor\b/.test(arg));
}

export interface HeapPolicyOptions {
  setFlags?: (flags: string) => void;
  /** Leave the young generation's growth as V8 has it. */
  operatorSized?: boolean;
}

/** Applies the agent's heap policy; the returned function (idempotent) ends the start-up part. */
export function holdHeapGrowth(options: HeapPolicyOptions = {}): () => void {
  const setFlags = options.setFlags ?? setFlagsFromString;
  if (options.operatorSized !== true) setFlags('--semi-space-growth-factor=1');
  setFlags('--optimize-for-size');
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    setFlags('--no-optimize-for-size');
  };
}
