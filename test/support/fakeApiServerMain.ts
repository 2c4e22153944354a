// Runs the fake API server as its own process (e.g. inside a test node's network namespace):
//   node fakeApiServerMain.ts --port 6443 [--host 127.0.0.1] [--manifests DIR] [--destination-rules]
// loads the Services, EndpointSlices (and DestinationRules) found in DIR's YAML and JSON files (a
// JSON `kind: List` counts as its items), prints
// "listening <url>" and serves until killed. Changes go through the API itself (PUT/DELETE).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { FAKE_RESOURCES, FakeApiServer } from './fakeApiServer.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '6443' },
    host: { type: 'string', default: '127.0.0.1' },
    manifests: { type: 'string' },
    'destination-rules': { type: 'boolean', default: false },
  },
});

const server = new FakeApiServer({ destinationRules: values['destination-rules'] });
if (values.manifests) {
  const kinds = new Set(FAKE_RESOURCES.map((r) => r.kind));
  type Doc = { kind?: string; metadata?: { name?: string }; items?: Doc[] } | null;
  for (const file of (await readdir(values.manifests, { recursive: true })).filter((f) => /\.(ya?ml|json)$/.test(f)).sort()) {
    const text = await readFile(join(values.manifests, file), 'utf8');
    const docs = file.endsWith('.json') ? [JSON.parse(text) as Doc] : parseAllDocuments(text).map((d) => d.toJS() as Doc);
    // A kind: List (as the bench writes its 10,000 services) is its items.
    for (const obj of docs.flatMap((d) => (d?.kind === 'List' ? (d.items ?? []) : [d]))) {
      if (obj?.kind && kinds.has(obj.kind) && obj.metadata?.name) server.apply(obj as Parameters<FakeApiServer['apply']>[0]);
    }
  }
}
const url = await server.listen(Number(values.port), values.host);
process.stdout.write(`listening ${url}\n`);
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
