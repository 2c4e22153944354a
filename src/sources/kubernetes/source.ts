// The Kubernetes API source: Services, EndpointSlices and (when the CRD is served) Istio
// DestinationRules, each through its own informer, converted with the manifest source's schemas
// and sent to the StateSink. start() resolves only once every kind's initial list is in the sink,
// so the agent never programs rules from a partial view. Whether networking.istio.io is served is
// checked again every discoveryPeriodMs: Istio installed (or removed) later starts (or stops) the
// DestinationRule informer without a restart.
import { listInPages } from './pagedList.ts';
import { ApisApi, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { StateSink } from '../../state/types.ts';
import type { KindHandler, ModelObject } from '../manifests/kinds.ts';
import { backoffDelay, type BackoffOptions } from './backoff.ts';
import { convertApiObject, handlerFor, objectRef } from './convert.ts';
import { DESTINATION_RULES, ENDPOINT_SLICES, SERVICES, apiVersionOf, sourceName, type ApiResource } from './resources.ts';
import { ResourceWatcher, describeError, type ObjectHandlers, type WatchStatus } from './watcher.ts';

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  sink: StateSink;
  logger: Logger;
  /** Server-side timeout of each watch request (default 5 min). */
  watchTimeoutMs?: number;
  /** Restart a watch that showed no sign of life for this long (default 2 min); 0 disables. */
  watchdogMs?: number;
  /** Periodic full relist; 0 (default) disables. */
  resyncPeriodMs?: number;
  /** Watch DestinationRules when the API server serves networking.istio.io (default true). */
  destinationRules?: boolean;
  /** Ask again (GET /apis) whether networking.istio.io is served this often (default 5 min); 0: only at start. */
  discoveryPeriodMs?: number;
  backoff?: BackoffOptions;
  now?: () => number;
}

/** Where one resource's model objects go. */
interface Target {
  upsert(obj: ModelObject): void;
  delete(namespace: string, name: string): void;
}

export type DestinationRuleDiscovery = { served: false } | { served: true; version: string };

export class KubernetesSource {
  readonly #opts: KubernetesSourceOptions;
  readonly #log: Logger;
  #watchers: ResourceWatcher[] = [];
  #stopped = false;
  #discovery: Promise<void> | undefined;
  #abort = new AbortController();
  /** The DestinationRule informer, while the group is served. */
  #destinationRules: { watcher: ResourceWatcher; version: string } | undefined;
  /**
   * One set of handlers for every DestinationRule informer of this source: a new informer's list
   * is diffed against what the last one sent, and a group that goes away deletes exactly that.
   */
  #destinationRuleHandlers: ObjectHandlers | undefined;
  #discoveryTimer: NodeJS.Timeout | undefined;
  #rediscovering = false;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#abort = new AbortController();
    const { sink } = this.#opts;
    const core = this.#opts.kubeConfig.makeApiClient(CoreV1Api);
    const discovery = this.#opts.kubeConfig.makeApiClient(DiscoveryV1Api);
    const starts = [
      this.#watch(SERVICES, () => listInPages((limit, cont) => core.listServiceForAllNamespaces({ limit, ...(cont !== undefined && { _continue: cont }) }) as Promise<KubernetesListObject<KubernetesObject>>), {
        upsert: (o) => o.kind === 'Service' && sink.upsertService(o.value),
        delete: (ns, name) => sink.deleteService(ns, name),
      }),
      this.#watch(ENDPOINT_SLICES, () => listInPages((limit, cont) => discovery.listEndpointSliceForAllNamespaces({ limit, ...(cont !== undefined && { _continue: cont }) }) as Promise<KubernetesListObject<KubernetesObject>>), {
        upsert: (o) => o.kind === 'EndpointSlice' && sink.upsertSlice(o.value),
        delete: (ns, name) => sink.deleteSlice(ns, name),
      }),
    ];
    if (this.#opts.destinationRules ?? true) {
      this.#discovery = this.#startDestinationRules();
      starts.push(this.#discovery);
    }
    await Promise.all(starts);
    if (!this.#stopped) this.#log.info({ resources: this.#watchers.map((w) => w.source) }, 'kubernetes source synced');
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    clearInterval(this.#discoveryTimer);
    this.#destinationRules = undefined;
    await Promise.all(this.#watchers.map((w) => w.stop()));
  }

  status(): WatchStatus[] {
    return this.#watchers.map((w) => w.status());
  }

  /** Is networking.istio.io served, and in which version? (GET /apis; an absent group = no CRD.) */
  async discoverDestinationRules(): Promise<DestinationRuleDiscovery> {
    const groups = await this.#opts.kubeConfig.makeApiClient(ApisApi).getAPIVersions();
    const group = groups.groups.find((g) => g.name === DESTINATION_RULES.group);
    if (!group) return { served: false };
    const version = group.preferredVersion?.version ?? group.versions[0]?.version ?? DESTINATION_RULES.version;
    return { served: true, version };
  }

  async #startDestinationRules(): Promise<void> {
    const { sink } = this.#opts;
    const handler = handlerFor(DESTINATION_RULES);
    if (!handler) throw new Error('no converter for DestinationRules');
    this.#destinationRuleHandlers = objectHandlers(
      DESTINATION_RULES,
      handler,
      {
        upsert: (o) => o.kind === 'DestinationRule' && sink.upsertDestinationRule(o.value),
        delete: (ns, name) => sink.deleteDestinationRule(ns, name),
      },
      this.#log.child({ source: sourceName(DESTINATION_RULES) }),
    );
    let found: DestinationRuleDiscovery | undefined;
    for (let attempt = 0; !found && !this.#stopped; attempt++) {
      try {
        found = await this.discoverDestinationRules();
      } catch (err) {
        const delay = backoffDelay(attempt, this.#opts.backoff);
        this.#log.warn({ error: describeError(err), retryInMs: delay }, 'API discovery failed: retrying');
        await sleep(delay, undefined, { signal: this.#abort.signal }).catch(() => undefined);
      }
    }
    if (!found || this.#stopped) return;
    const period = this.#opts.discoveryPeriodMs ?? 300_000;
    if (period > 0) {
      this.#discoveryTimer = setInterval(() => void this.#rediscover(), period);
      this.#discoveryTimer.unref();
    }
    if (!found.served) {
      this.#log.info(
        { group: DESTINATION_RULES.group, checkAgainInMs: period > 0 ? period : undefined },
        period > 0 ? 'DestinationRule CRD absent: not watching DestinationRules until it appears' : 'DestinationRule CRD absent: not watching DestinationRules',
      );
      return;
    }
    await this.#watchDestinationRules(found.version);
  }

  /** Starts the DestinationRule informer in `version`; resolves once its first list is in. */
  #watchDestinationRules(version: string): Promise<void> {
    const resource: ApiResource = { ...DESTINATION_RULES, version };
    const custom = this.#opts.kubeConfig.makeApiClient(CustomObjectsApi);
    const watcher = this.#watcher(
      resource,
      () =>
        listInPages(
          (limit, cont) =>
            custom.listClusterCustomObject({ group: resource.group, version: resource.version, plural: resource.resource, limit, ...(cont !== undefined && { _continue: cont }) }) as Promise<KubernetesListObject<KubernetesObject>>,
        ),
      this.#destinationRuleHandlers!,
    );
    this.#destinationRules = { watcher, version };
    return watcher.start();
  }

  /** One periodic discovery check: starts, restarts or stops the DestinationRule informer. */
  async #rediscover(): Promise<void> {
    if (this.#rediscovering || this.#stopped) return;
    this.#rediscovering = true;
    try {
      let found: DestinationRuleDiscovery;
      try {
        found = await this.discoverDestinationRules();
      } catch (err) {
        // Not a verdict on the group: leave the informer as it is until the next check.
        this.#log.warn({ error: describeError(err) }, 'API discovery failed: DestinationRules left as they are until the next check');
        return;
      }
      const version = found.served ? found.version : undefined;
      const current = this.#destinationRules;
      if (this.#stopped || current?.version === version) return;
      const { group } = DESTINATION_RULES;
      if (current !== undefined) {
        this.#destinationRules = undefined;
        this.#watchers = this.#watchers.filter((w) => w !== current.watcher);
        await current.watcher.stop();
        if (version === undefined) {
          // Their objects are gone with the CRD; what we sent from them must go too.
          this.#destinationRuleHandlers!.relisted([]);
          this.#log.info({ group }, 'DestinationRule CRD gone: stopped watching DestinationRules, their policies are dropped');
          return;
        }
        if (this.#stopped) return;
        this.#log.info({ group, from: current.version, version }, 'DestinationRule preferred version changed: watching the new one');
      } else {
        this.#log.info({ group, version }, 'DestinationRule CRD appeared: watching DestinationRules');
      }
      // Not awaited: the next checks run meanwhile, and the informer retries its first list on its own.
      void this.#watchDestinationRules(version!);
    } finally {
      this.#rediscovering = false;
    }
  }

  #watch(resource: ApiResource, list: () => Promise<KubernetesListObject<KubernetesObject>>, target: Target): Promise<void> {
    const handler = handlerFor(resource);
    if (!handler) throw new Error(`no converter for ${apiVersionOf(resource)} ${resource.kind}`);
    return this.#watcher(resource, list, objectHandlers(resource, handler, target, this.#log.child({ source: sourceName(resource) }))).start();
  }

  #watcher(resource: ApiResource, list: () => Promise<KubernetesListObject<KubernetesObject>>, handlers: ObjectHandlers): ResourceWatcher {
    const watcher = new ResourceWatcher({
      kubeConfig: this.#opts.kubeConfig,
      resource,
      list,
      handlers,
      logger: this.#log,
      watchTimeoutMs: this.#opts.watchTimeoutMs ?? 300_000,
      watchdogMs: this.#opts.watchdogMs ?? 120_000,
      ...(this.#opts.resyncPeriodMs !== undefined ? { resyncPeriodMs: this.#opts.resyncPeriodMs } : {}),
      ...(this.#opts.backoff ? { backoff: this.#opts.backoff } : {}),
      ...(this.#opts.now ? { now: this.#opts.now } : {}),
    });
    this.#watchers.push(watcher);
    return watcher;
  }
}

/**
 * Idempotent handlers for one resource: each API object (namespace/name) maps to one model object;
 * unchanged objects are not re-sent, an invalid version is logged once and skipped (the last good
 * version stays), and a relist deletes what is no longer there.
 */
export function objectHandlers(resource: ApiResource, handler: KindHandler, target: Target, log: Logger): ObjectHandlers {
  // The last model object sent per key (the store holds the same object): an unchanged object
  // (a relist, a resync, a status-only update) is not sent again.
  const sent = new Map<string, unknown>();
  const reported = new Map<string, string>();
  const remove = (namespace: string, name: string) => {
    const key = `${namespace}/${name}`;
    reported.delete(key);
    if (!sent.delete(key)) return;
    target.delete(namespace, name);
  };
  return {
    upsert(raw) {
      const { namespace, name } = objectRef(raw);
      const key = `${namespace}/${name}`;
      const converted = convertApiObject(handler, raw);
      if (!converted.ok) {
        const problems = converted.problems.join('; ');
        if (reported.get(key) !== problems) {
          reported.set(key, problems);
          log.warn(
            { kind: resource.kind, namespace, name, problems: converted.problems },
            `invalid ${resource.kind} ${key}: ${problems}; skipped${sent.has(key) ? ' (its last good version stays in force)' : ''}`,
          );
        }
        return;
      }
      if (reported.delete(key)) log.info({ kind: resource.kind, namespace, name }, `${resource.kind} ${key} is valid again`);
      const [obj] = converted.objects;
      if (!obj) return;
      const last = sent.get(key);
      if (last !== undefined && isDeepStrictEqual(last, obj.value)) return;
      sent.set(key, obj.value);
      target.upsert(obj);
    },
    delete(raw) {
      const { namespace, name } = objectRef(raw);
      remove(namespace, name);
    },
    relisted(objects) {
      const present = new Set(objects.map((o) => {
        const { namespace, name } = objectRef(o);
        return `${namespace}/${name}`;
      }));
      for (const key of [...sent.keys()]) {
        if (present.has(key)) continue;
        const slash = key.indexOf('/');
        remove(key.slice(0, slash), key.slice(slash + 1));
      }
    },
  };
}
