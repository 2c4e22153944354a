#!/usr/bin/env bash
# Unit tests (src/**/*.test.ts) under $UNIT_TEST_NODE (default: the Node 24 that npm ci puts in node_modules).
# The worker-thread tests run on their own with --test-force-exit: about 1 run in 8 their
# process spins at exit in Node's handle cleanup (a socket handle; the agent itself always
# leaves through process.exit). Force-exit is kept away from the other files because it can
# end a file before all of its describe() suites have reported, so tests would go missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Not $NODE: npm sets that to the node running npm itself.
node=${UNIT_TEST_NODE:-node_modules/.bin/node}
common=(--test --test-reporter=spec --test-timeout=300000)
"$node" "${common[@]}" 'src/*.test.ts' 'src/!(proxy)/**/*.test.ts' 'src/proxy/*.test.ts' 'src/proxy/!(workers)/**/*.test.ts'
"$node" "${common[@]}" --test-force-exit 'src/proxy/workers/*.test.ts'
