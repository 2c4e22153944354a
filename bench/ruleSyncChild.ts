// `node bench/ruleSyncChild.ts TMPDIR`, run by benchRuleSync inside the rule-sync namespace:
// measures, logs progress on stderr and prints the result as JSON on stdout.
import { holdHeapGrowth } from '../src/agent/heap.ts';
import { measureRuleSync } from './ruleSync.ts';

// The agent's heap as it runs after its first sync: a young generation that does not grow.
holdHeapGrowth()();

const tmpDir = process.argv[2];
if (tmpDir === undefined) throw new Error('usage: ruleSyncChild.ts TMPDIR');
const result = await measureRuleSync(tmpDir, (msg) => process.stderr.write(`${msg}\n`));
process.stdout.write(`${JSON.stringify(result)}\n`);
