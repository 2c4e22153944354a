import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdHeapGrowth, youngGenerationSizedByOperator } from './heap.ts';

test('the young generation never grows; size is favoured until released, which happens once', () => {
  const flags: string[] = [];
  const release = holdHeapGrowth({ setFlags: (f) => flags.push(f) });
  assert.deepEqual(flags, ['--semi-space-growth-factor=1', '--optimize-for-size']);
  release();
  release();
  assert.deepEqual(flags.slice(2), ['--no-optimize-for-size']);
});

test('a young generation sized by the operator keeps V8 growing it', () => {
  const flags: string[] = [];
  holdHeapGrowth({ setFlags: (f) => flags.push(f), operatorSized: true })();
  assert.deepEqual(flags, ['--optimize-for-size', '--no-optimize-for-size']);
});

test('youngGenerationSizedByOperator reads node arguments and NODE_OPTIONS', () => {
  const cases: Array<[string[], string | undefined, boolean]> = [
    [[], undefined, false],
    [['--enable-source-maps'], '--max-old-space-size=400', false],
    [['--max-semi-space-size=16'], undefined, true],
    [[], '--trace-gc --max_semi_space_size=8', true],
    [[], '--min-semi-space-size=4', true],
    [['--semi-space-growth-factor=2'], '', true],
    [[], '--max-semi-space-sizes-are-not-a-flag', false],
  ];
  for (const [execArgv, nodeOptions, expected] of cases) {
    assert.equal(youngGenerationSizedByOperator(execArgv, nodeOptions), expected, `${execArgv.join(' ')} | ${nodeOptions}`);
  }
});
