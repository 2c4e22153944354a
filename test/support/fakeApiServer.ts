// An in-process Kubernetes API server, just enough of it for informers: list and watch of services,
// endpointslices and (optionally) destinationrules, with a global resourceVersion, chunked watch
// streams of ADDED/MODIFIED/DELETED/BOOKMARK events, 410 Gone for a compacted resourceVersion,
// server-side timeoutSeconds, and knobs to fail, drop or freeze connections. Plain HTTP on
// 127.0.0.1: a kubeconfig pointing at it drives the real client library (and the real agent).
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface FakeResourceType {
  group: string;
  version: string;
  resource: string;
  kind: string;
}

export const FAKE_RESOURCES: readonly FakeResourceType[] = [
  { group: '', version: 'v1', resource: 'services', kind: 'Service' },
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice' },
  { group: 'networking.istio.io', version: 'v1', resource: 'destinationrules', kind: 'DestinationRule' },
];

type K8sObject = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  resource: string;
  type: EventType;
  object: K8sObject;
}

interface OpenWatch {
  resource: string;
  res: http.ServerResponse;
  socket: Socket;
  bookmarks: boolean;
  frozen: boolean;
  timer?: NodeJS.Timeout;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  /** 'list', 'watch' or 'other'. */
  verb: string;
  resource?: string;
  status: number;
}

export interface FakeApiServerOptions {
  /** Serve networking.istio.io (the DestinationRule CRD is installed). Default false. */
  destinationRules?: boolean;
  /** How a too-old resourceVersion is refused: an ERROR event with code 410 in a 200 stream (what real API servers do, default) or HTTP 410. */
  expiredAs?: 'event' | 'status';
}

const apiVersionOf = (t: FakeResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);
const collectionPath = (t: FakeResourceType) => (t.group ? `/apis/${t.group}/${t.version}/${t.resource}` : `/api/${t.version}/${t.resource}`);

export class FakeApiServer {
  readonly requests: RequestRecord[] = [];
  /** Watches refused with 410 Gone (either way). */
  expiredSent = 0;
  destinationRules: boolean;
  expiredAs: 'event' | 'status';
  #server: http.Server;
  #rv = 100;
  /** Watches asking for a resourceVersion below this get 410 Gone. */
  #compactedBelow = 0;
  #objects = new Map<string, Map<string, K8sObject>>();
  #history: HistoryEvent[] = [];
  #watches = new Set<OpenWatch>();
  #failures: Array<{ status: number; verb?: string }> = [];
  #freezeNewWatches = false;
  #sockets = new Set<Socket>();

  constructor(opts: FakeApiServerOptions = {}) {
    this.destinationRules = opts.destinationRules ?? false;
    this.expiredAs = opts.expiredAs ?? 'event';
    for (const t of FAKE_RESOURCES) this.#objects.set(t.resource, new Map());
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    return this.url;
  }

  get url(): string {
    const a = this.#server.address() as AddressInfo;
    return `http://${a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  /** Creates or replaces an object (by its kind); returns it with its new resourceVersion. */
  apply(obj: K8sObject): K8sObject {
    const t = this.#typeOfKind(obj.kind);
    const ns = obj.metadata.namespace || 'default';
    const key = `${ns}/${obj.metadata.name}`;
    const store = this.#objects.get(t.resource)!;
    const type: EventType = store.has(key) ? 'MODIFIED' : 'ADDED';
    const stored: K8sObject = structuredClone({ ...obj, apiVersion: apiVersionOf(t), kind: t.kind });
    stored.metadata = { ...stored.metadata, namespace: ns, resourceVersion: String(++this.#rv) };
    store.set(key, stored);
    this.#record(t.resource, type, stored);
    return stored;
  }

  /** Deletes an object; false when it did not exist. */
  remove(kind: string, namespace: string, name: string): boolean {
    const t = this.#typeOfKind(kind);
    const store = this.#objects.get(t.resource)!;
    const key = `${namespace}/${name}`;
    const old = store.get(key);
    if (!old) return false;
    store.delete(key);
    const gone = structuredClone(old);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#record(t.resource, 'DELETED', gone);
    return true;
  }

  get(kind: string, namespace: string, name: string): K8sObject | undefined {
    return this.#objects.get(this.#typeOfKind(kind).resource)!.get(`${namespace}/${name}`);
  }

  /** Forgets the event history: a watch resuming from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compactedBelow = this.#rv;
    this.#history = [];
  }

  /** Tells every open watch its resourceVersion is too old (ERROR 410), then ends it. */
  expireWatches(): void {
    for (const w of [...this.#watches]) {
      this.#send(w, { type: 'ERROR', object: this.#goneStatus(w.resource) });
      this.#endWatch(w);
    }
  }

  /** Kills the TCP connections of open watches (no clean end): a crashed or restarted API server. */
  dropWatches(resource?: string): number {
    let n = 0;
    for (const w of [...this.#watches]) {
      if (resource && w.resource !== resource) continue;
      this.#watches.delete(w);
      clearTimeout(w.timer);
      w.socket.destroy();
      n++;
    }
    return n;
  }

  /** Ends open watches cleanly (as when their timeoutSeconds runs out). */
  closeWatches(resource?: string): void {
    for (const w of [...this.#watches]) if (!resource || w.resource === resource) this.#endWatch(w);
  }

  /**
   * Installs or removes the DestinationRule CRD: networking.istio.io appears in or leaves GET /apis.
   * Removing it ends the open DestinationRule watches, as the API server does; the stored objects
   * stay, so installing it again serves them again.
   */
  serveDestinationRules(on: boolean): void {
    this.destinationRules = on;
    if (!on) this.closeWatches('destinationrules');
  }

  /** Sends a BOOKMARK to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.#watches) {
      if (!w.bookmarks || w.frozen) continue;
      const t = this.#typeOfResource(w.resource);
      this.#send(w, { type: 'BOOKMARK', object: { kind: t.kind, apiVersion: apiVersionOf(t), metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  /** Answers the next n requests (optionally only 'list' or 'watch' ones) with this HTTP status. */
  failNext(n: number, status = 500, verb?: 'list' | 'watch'): void {
    for (let i = 0; i < n; i++) this.#failures.push(verb ? { status, verb } : { status });
  }

  clearFailures(): void {
    this.#failures = [];
  }

  /** Open watches, and new ones while frozen, get no events at all (a half-open connection). */
  freeze(on = true): void {
    this.#freezeNewWatches = on;
    for (const w of this.#watches) w.frozen = on;
  }

  openWatches(resource?: string): number {
    return [...this.#watches].filter((w) => !resource || w.resource === resource).length;
  }

  count(verb: string, resource?: string): number {
    return this.requests.filter((r) => r.verb === verb && (!resource || r.resource === resource)).length;
  }

  #typeOfKind(kind: string | undefined): FakeResourceType {
    const t = FAKE_RESOURCES.find((r) => r.kind === kind);
    if (!t) throw new Error(`fake API server: unsupported kind ${kind}`);
    return t;
  }

  #typeOfResource(resource: string): FakeResourceType {
    return FAKE_RESOURCES.find((r) => r.resource === resource)!;
  }

  #served(t: FakeResourceType): boolean {
    return t.group !== 'networking.istio.io' || this.destinationRules;
  }

  #record(resource: string, type: EventType, object: K8sObject): void {
    const ev: HistoryEvent = { rv: this.#rv, resource, type, object };
    this.#history.push(ev);
    for (const w of this.#watches) if (w.resource === resource && !w.frozen) this.#send(w, { type, object });
  }

  #send(w: OpenWatch, event: unknown): void {
    w.res.write(`${JSON.stringify(event)}\n`);
  }

  #endWatch(w: OpenWatch): void {
    this.#watches.delete(w);
    clearTimeout(w.timer);
    w.res.end();
  }

  #goneStatus(resource: string, rv?: string): Record<string, unknown> {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `too old resource version: ${rv ?? '?'} (${this.#compactedBelow}) [${resource}]`,
      reason: 'Expired',
      code: 410,
    };
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    const type = FAKE_RESOURCES.find((t) => url.pathname === collectionPath(t));
    const verb = type && method === 'GET' ? (query['watch'] === 'true' || query['watch'] === '1' ? 'watch' : 'list') : 'other';
    const record: RequestRecord = { method, path: url.pathname, query, verb, ...(type ? { resource: type.resource } : {}), status: 200 };
    this.requests.push(record);
    const json = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const failure = this.#failures.findIndex((f) => verb !== 'other' && (!f.verb || f.verb === verb));
    if (failure >= 0) {
      const [f] = this.#failures.splice(failure, 1);
      return json(f!.status, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'injected failure', code: f!.status });
    }
    const notFound = () => json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', message: `the server could not find the requested resource (${url.pathname})`, code: 404 });

    if (method === 'GET' && url.pathname === '/apis') return json(200, this.#groupList());
    if (method === 'GET' && url.pathname === '/api') return json(200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
    if (type && verb !== 'other') {
      if (!this.#served(type)) return notFound();
      return verb === 'list' ? json(200, this.#list(type, query)) : this.#watch(type, query, req, res, record);
    }
    const item = this.#itemPath(url.pathname);
    if (item && this.#served(item.type)) {
      if (method === 'GET') {
        const obj = this.get(item.type.kind, item.namespace, item.name);
        return obj ? json(200, obj) : notFound();
      }
      if (method === 'PUT' || method === 'POST') {
        const body = JSON.parse(await readBody(req)) as K8sObject;
        body.kind = item.type.kind;
        body.metadata = { ...body.metadata, name: item.name, namespace: item.namespace };
        return json(200, this.apply(body));
      }
      if (method === 'DELETE') return this.remove(item.type.kind, item.namespace, item.name) ? json(200, { kind: 'Status', status: 'Success' }) : notFound();
    }
    return notFound();
  }

  #itemPath(path: string): { type: FakeResourceType; namespace: string; name: string } | undefined {
    for (const t of FAKE_RESOURCES) {
      const prefix = t.group ? `/apis/${t.group}/${t.version}/namespaces/` : `/api/${t.version}/namespaces/`;
      if (!path.startsWith(prefix)) continue;
      const [namespace, resource, name, ...rest] = path.slice(prefix.length).split('/');
      if (resource === t.resource && namespace && name && rest.length === 0) return { type: t, namespace, name };
    }
    return undefined;
  }

  #groupList(): Record<string, unknown> {
    const groups = [...new Set(FAKE_RESOURCES.filter((t) => t.group && this.#served(t)).map((t) => t.group))];
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: groups.map((name) => {
        const versions = FAKE_RESOURCES.filter((t) => t.group === name).map((t) => ({ groupVersion: `${name}/${t.version}`, version: t.version }));
        return { name, versions, preferredVersion: versions[0] };
      }),
    };
  }

  /**
   * A list, or with `limit` one page of it: `continue` carries the offset into the list sorted by
   * namespace/name (pages come from the current state, not a snapshot, which is enough here).
   */
  #list(t: FakeResourceType, query: Record<string, string> = {}): Record<string, unknown> {
    // Real list items carry no apiVersion/kind.
    let items = [...this.#objects.get(t.resource)!.values()].map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
    const metadata: Record<string, unknown> = { resourceVersion: String(this.#rv) };
    const limit = Number(query['limit'] || '0');
    if (limit > 0) {
      const key = (o: { metadata: { namespace?: string; name: string } }) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      const offset = Number(query['continue'] || '0');
      if (offset + limit < items.length) metadata['continue'] = String(offset + limit);
      items = items.slice(offset, offset + limit);
    }
    return { kind: `${t.kind}List`, apiVersion: apiVersionOf(t), metadata, items };
  }

  #watch(t: FakeResourceType, query: Record<string, string>, req: http.IncomingMessage, res: http.ServerResponse, record: RequestRecord): void {
    const from = Number(query['resourceVersion'] || '0');
    const tooOld = from > 0 && from < this.#compactedBelow;
    if (tooOld) this.expiredSent++;
    if (tooOld && this.expiredAs === 'status') {
      record.status = 410;
      res.writeHead(410, { 'content-type': 'application/json' }).end(JSON.stringify(this.#goneStatus(t.resource, query['resourceVersion'])));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: OpenWatch = { resource: t.resource, res, socket: req.socket, bookmarks: query['allowWatchBookmarks'] === 'true', frozen: this.#freezeNewWatches };
    if (tooOld) {
      this.#send(w, { type: 'ERROR', object: this.#goneStatus(t.resource, query['resourceVersion']) });
      res.end();
      return;
    }
    this.#watches.add(w);
    req.socket.once('close', () => {
      this.#watches.delete(w);
      clearTimeout(w.timer);
    });
    if (!w.frozen) {
      if (from === 0) {
        for (const object of this.#objects.get(t.resource)!.values()) this.#send(w, { type: 'ADDED', object });
      } else {
        for (const ev of this.#history) if (ev.resource === t.resource && ev.rv > from) this.#send(w, { type: ev.type, object: ev.object });
      }
    }
    const timeout = Number(query['timeoutSeconds'] || '0');
    if (timeout > 0) w.timer = setTimeout(() => this.#endWatch(w), timeout * 1000);
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

export function kubeconfigText(server: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    // Plain http: the client library only allows it with TLS verification off.
    clusters: [{ name: 'fake', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'fake', user: { token: 'fake-token' } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
    'current-context': 'fake',
  });
}

/** Writes a kubeconfig for server into a new temp dir; returns the file. */
export async function writeKubeconfig(server: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-kubeconfig-'));
  const file = join(dir, 'kubeconfig');
  await writeFile(file, kubeconfigText(server));
  return file;
}
