import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { pino, type Logger } from 'pino';
import type { DestinationRule, EndpointSlice, Service } from '../../model/types.ts';
import type { StateSink } from '../../state/types.ts';
import { ManifestDirectorySource } from './directory.ts';
import { formatManifestError } from './errors.ts';
import { loadManifestDirectory } from './load.ts';

/** Records every call and keeps the resulting state, like a store would. */
class RecordingSink implements StateSink {
  calls: string[] = [];
  services = new Map<string, Service>();
  slices = new Map<string, EndpointSlice>();
  upsertService(svc: Service): void {
    this.calls.push(`upsertService ${svc.namespace}/${svc.name}`);
    this.services.set(`${svc.namespace}/${svc.name}`, svc);
  }
  deleteService(namespace: string, name: string): void {
    this.calls.push(`deleteService ${namespace}/${name}`);
    this.services.delete(`${namespace}/${name}`);
  }
  upsertSlice(slice: EndpointSlice): void {
    this.calls.push(`upsertSlice ${slice.namespace}/${slice.name}`);
    this.slices.set(`${slice.namespace}/${slice.name}`, slice);
  }
  deleteSlice(namespace: string, name: string): void {
    this.calls.push(`deleteSlice ${namespace}/${name}`);
    this.slices.delete(`${namespace}/${name}`);
  }
  destinationRules = new Map<string, DestinationRule>();
  upsertDestinationRule(rule: DestinationRule): void {
    this.calls.push(`upsertDestinationRule ${rule.namespace}/${rule.name}`);
    this.destinationRules.set(`${rule.namespace}/${rule.name}`, rule);
  }
  deleteDestinationRule(namespace: string, name: string): void {
    this.calls.push(`deleteDestinationRule ${namespace}/${name}`);
    this.destinationRules.delete(`${namespace}/${name}`);
  }
  take(): string[] {
    const c = this.calls;
    this.calls = [];
    return c;
  }
}

interface LogLine {
  level: number;
  msg: string;
  file?: string;
  doc?: number;
  kind?: string;
  namespace?: string;
  name?: string;
  field?: string;
}

function capturingLogger(): { logger: Logger; lines: LogLine[]; take(): LogLine[] } {
  const lines: LogLine[] = [];
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, take: () => lines.splice(0, lines.length) };
}
const WARN = 40;
const INFO = 30;

function svc(name: string, port: number, extra = ''): string {
  return `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}${extra}}\nspec: {clusterIP: 10.96.0.${port % 250}, ports: [{port: ${port}}]}\n`;
}
function slice(name: string, service: string, ip: string): string {
  return `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: ${name}, labels: {kubernetes.io/service-name: ${service}}}\naddressType: IPv4\nendpoints: [{addresses: [${ip}]}]\nports: [{port: 8080}]\n`;
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'edgeproxy-manifests-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A started source over dir; stopped when the test ends. Periodic resync off so only watch events count. */
async function startSource(t: TestContext, dir: string, onApplied?: () => void, settleMs?: number) {
  const sink = new RecordingSink();
  const log = capturingLogger();
  const source = new ManifestDirectorySource({
    dir,
    sink,
    logger: log.logger,
    debounceMs: 20,
    resyncIntervalMs: 0,
    ...(onApplied ? { onApplied } : {}),
    ...(settleMs !== undefined ? { settleMs } : {}),
  });
  await source.start();
  t.after(() => source.stop());
  return { source, sink, log };
}

describe('ManifestDirectorySource', () => {
  it('loads every manifest file under the directory before start() resolves', async (t) => {
    const dir = await tempDir(t);
    await mkdir(path.join(dir, 'sub', 'deeper'), { recursive: true });
    await mkdir(path.join(dir, '.hidden'));
    await writeFile(path.join(dir, 'a.yaml'), svc('a', 80) + '---\n' + slice('a-1', 'a', '10.0.0.1'));
    await writeFile(path.join(dir, 'sub', 'b.yml'), svc('b', 81));
    await writeFile(path.join(dir, 'sub', 'deeper', 'c.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'c' }, spec: { ports: [{ port: 82 }] } }));
    await writeFile(path.join(dir, 'notes.txt'), svc('txt', 83));
    await writeFile(path.join(dir, '.a.yaml.swp'), svc('swap', 84));
    await writeFile(path.join(dir, '.hidden', 'h.yaml'), svc('hidden', 85));
    // ConfigMap volumes are symlinks into a dot directory.
    await mkdir(path.join(dir, '..data'));
    await writeFile(path.join(dir, '..data', 'd.yaml'), svc('d', 86));
    await symlink(path.join('..data', 'd.yaml'), path.join(dir, 'd.yaml'));

    const { source, sink, log } = await startSource(t, dir);
    assert.deepEqual([...sink.services.keys()].sort(), ['default/a', 'default/b', 'default/c', 'default/d']);
    assert.deepEqual([...sink.slices.keys()], ['default/a-1']);
    assert.deepEqual(source.errors(), []);
    assert.deepEqual(log.lines.filter((l) => l.level >= WARN), []);

    // A rescan of an unchanged directory sends nothing.
    sink.take();
    await source.rescan();
    assert.deepEqual(sink.take(), []);
  });

  it('rejects start() for a missing directory', async (t) => {
    const dir = await tempDir(t);
    const source = new ManifestDirectorySource({ dir: path.join(dir, 'nope'), sink: new RecordingSink(), logger: pino({ level: 'silent' }) });
    await assert.rejects(source.start(), /cannot (watch|load) manifest directory/);
  });

  it('applies added, changed, renamed-into-place and deleted files while watching', async (t) => {
    const dir = await tempDir(t);
    await writeFile(path.join(dir, 'a.yaml'), svc('a', 80));
    let applied = 0;
    const { sink } = await startSource(t, dir, () => applied++);
    sink.take();

    await writeFile(path.join(dir, 'b.yaml'), svc('b', 81) + '---\n' + slice('b-1', 'b', '10.0.0.1'));
    await waitFor('b to appear', () => sink.services.has('default/b') && sink.slices.has('default/b-1'));
    await waitFor('calls to settle', () => sink.calls.length >= 2);
    assert.deepEqual(sink.take(), ['upsertService default/b', 'upsertSlice default/b-1']);
    assert.ok(applied >= 1);

    // Changing one object re-sends only that object.
    await writeFile(path.join(dir, 'b.yaml'), svc('b', 81) + '---\n' + slice('b-1', 'b', '10.0.0.2'));
    await waitFor('slice b-1 to change', () => sink.slices.get('default/b-1')?.endpoints[0]?.addresses[0] === '10.0.0.2');
    assert.deepEqual(sink.take(), ['upsertSlice default/b-1']);

    // Editors save by writing a temp file and renaming it over the original.
    await writeFile(path.join(dir, '.a.yaml.tmp'), svc('a', 90));
    await rename(path.join(dir, '.a.yaml.tmp'), path.join(dir, 'a.yaml'));
    await waitFor('a to change port', () => sink.services.get('default/a')?.ports[0]?.port === 90);
    assert.deepEqual(sink.take(), ['upsertService default/a']);

    // New subdirectories are watched too.
    await mkdir(path.join(dir, 'new'));
    await writeFile(path.join(dir, 'new', 'c.yaml'), svc('c', 82));
    await waitFor('c in a new subdirectory', () => sink.services.has('default/c'));
    sink.take();

    await unlink(path.join(dir, 'b.yaml'));
    await waitFor('b to disappear', () => !sink.services.has('default/b'));
    assert.deepEqual(sink.take(), ['deleteSlice default/b-1', 'deleteService default/b']);
    assert.deepEqual([...sink.services.keys()].sort(), ['default/a', 'default/c']);
  });

  it('keeps a file\'s last good objects through a YAML syntax error, logs once, and logs recovery', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'web.yaml');
    await writeFile(file, svc('web', 80) + '---\n' + svc('api', 81));
    const { source, sink, log } = await startSource(t, dir);
    sink.take();

    await writeFile(file, svc('web', 80) + '---\n' + svc('api', 81) + '  bad: [indent\n');
    await source.rescan();
    await source.rescan(); // errors are logged per change, not per rescan
    assert.deepEqual(sink.take(), []);
    assert.deepEqual([...sink.services.keys()].sort(), ['default/api', 'default/web']);
    const errors = source.errors();
    assert.equal(errors.length >= 1, true);
    assert.equal(errors[0]?.file, file);
    assert.match(formatManifestError(errors[0]!), /doc 2: YAML syntax error at line \d+/);
    const warns = log.take().filter((l) => l.level === WARN);
    assert.equal(warns.length, errors.length);
    assert.equal(warns[0]?.file, file);
    assert.equal(warns[0]?.doc, 2);

    // Fixed, with a change: the change goes through and recovery is logged.
    await writeFile(file, svc('web', 8080));
    await source.rescan();
    assert.deepEqual(sink.take(), ['upsertService default/web', 'deleteService default/api']);
    assert.deepEqual(source.errors(), []);
    const lines = log.take();
    assert.deepEqual(lines.filter((l) => l.level === WARN), []);
    assert.deepEqual(lines.filter((l) => l.level === INFO).map((l) => [l.msg, l.file]), [['manifest file recovered: no errors', file]]);
  });

  it('keeps the previous version of an object whose document became invalid', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'web.yaml');
    await writeFile(file, svc('web', 80) + '---\n' + svc('api', 81) + '---\n' + svc('gone', 82));
    const { source, sink, log } = await startSource(t, dir);
    sink.take();

    // web: invalid but nameable → old version stays. api: valid change → applied.
    // gone: name removed → cannot be matched, so it is dropped.
    const badWeb = 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 70000}]}\n';
    const nameless = 'apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {ports: [{port: 82}]}\n';
    await writeFile(file, badWeb + '---\n' + svc('api', 91) + '---\n' + nameless);
    await source.rescan();
    assert.deepEqual(sink.take(), ['upsertService default/api', 'deleteService default/gone']);
    assert.equal(sink.services.get('default/web')?.ports[0]?.port, 80);
    assert.deepEqual(source.errors().map(formatManifestError), [
      `${file} doc 1 Service default/web: spec.ports[0].port: must be an integer from 1 to 65535 (got 70000)`,
      `${file} doc 3 Service: metadata.name: required`,
    ]);
    const warns = log.take().filter((l) => l.level === WARN);
    assert.deepEqual(
      warns.map((w) => [w.file, w.doc, w.kind, w.namespace, w.name, w.field]),
      [
        [file, 1, 'Service', 'default', 'web', 'spec.ports[0].port'],
        [file, 3, 'Service', undefined, undefined, 'metadata.name'],
      ],
    );

    // Still invalid after another edit elsewhere in the file: still the old version, no new warning for it.
    await writeFile(file, badWeb + '---\n' + svc('api', 92) + '---\n' + nameless);
    await source.rescan();
    assert.deepEqual(sink.take(), ['upsertService default/api']);
    assert.equal(sink.services.get('default/web')?.ports[0]?.port, 80);
    assert.deepEqual(log.take().filter((l) => l.level === WARN), []);
  });

  it('waits before trusting a freshly emptied file (truncate-then-write), then applies it', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'web.yaml');
    await writeFile(file, svc('web', 80));
    const { source, sink } = await startSource(t, dir, undefined, 200);
    sink.take();

    await writeFile(file, ''); // what `kubectl get -o yaml > web.yaml` leaves while kubectl is still fetching
    await source.rescan();
    assert.ok(sink.services.has('default/web'));
    assert.deepEqual(sink.take(), []);

    // The writer never came back: after the settle time the file counts as empty.
    await waitFor('web to be removed', () => !sink.services.has('default/web'));
    assert.deepEqual(sink.take(), ['deleteService default/web']);
  });

  it('lets the first definition of a duplicate win and names both places', async (t) => {
    const dir = await tempDir(t);
    const a = path.join(dir, 'a.yaml');
    const b = path.join(dir, 'b.yaml');
    await writeFile(b, svc('web', 81));
    await writeFile(a, svc('other', 70) + '---\n' + svc('web', 80));
    const { source, sink } = await startSource(t, dir);
    assert.equal(sink.services.get('default/web')?.ports[0]?.port, 80);
    assert.deepEqual(source.errors().map(formatManifestError), [
      `${b} doc 1 Service default/web: duplicate Service default/web: already defined in ${a} doc 2 (Service), which is used; this one is ignored`,
    ]);
    sink.take();

    // The winner goes away: the other definition takes over, with no error left.
    await writeFile(a, svc('other', 70));
    await source.rescan();
    assert.deepEqual(sink.take(), ['upsertService default/web']);
    assert.equal(sink.services.get('default/web')?.ports[0]?.port, 81);
    assert.deepEqual(source.errors(), []);
  });

  it('treats a legacy Endpoints and an EndpointSlice of the same name as duplicates within one file', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'x.yaml');
    await writeFile(file, slice('web', 'web', '10.0.0.1') + '---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\nsubsets: [{addresses: [{ip: 10.0.0.9}], ports: [{port: 80}]}]\n');
    const { source, sink } = await startSource(t, dir);
    assert.equal(sink.slices.get('default/web')?.endpoints[0]?.addresses[0], '10.0.0.1');
    assert.equal(source.errors().length, 1);
    assert.match(formatManifestError(source.errors()[0]!), /doc 2 Endpoints default\/web: duplicate EndpointSlice default\/web: already defined in .*x\.yaml doc 1 \(EndpointSlice\)/);
  });
});

describe('loadManifestDirectory', () => {
  it('returns services, slices and errors in one pass', async (t) => {
    const dir = await tempDir(t);
    await writeFile(path.join(dir, 'a.yaml'), svc('a', 80) + '---\n' + slice('a-1', 'a', '10.0.0.1') + '---\n' + svc('bad', 0));
    await writeFile(path.join(dir, 'b.yaml'), 'apiVersion: v1\nkind: Endpoints\nmetadata: {name: b, namespace: ns}\nsubsets: [{addresses: [{ip: 10.0.0.2}], ports: [{port: 80}]}]\n');
    await writeFile(path.join(dir, 'c.yaml'), 'key: [unclosed\n');
    const r = await loadManifestDirectory(dir);
    assert.deepEqual(r.services.map((s) => s.name), ['a']);
    assert.deepEqual(r.slices.map((s) => `${s.namespace}/${s.name}`), ['default/a-1', 'ns/b']);
    assert.deepEqual(r.errors.map((e) => [path.basename(e.file), e.documentIndex, e.name ?? '']), [
      ['a.yaml', 3, 'bad'],
      ['c.yaml', 1, ''],
    ]);
  });

  it('rejects a missing directory', async (t) => {
    const dir = await tempDir(t);
    await assert.rejects(loadManifestDirectory(path.join(dir, 'missing')), /ENOENT/);
  });
});
