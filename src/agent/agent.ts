// Wiring and the sync loop: state → filter → listeners → rules → one iptables-restore, then
// listeners no rule points at are closed. Every sync renders the whole ruleset (as kube-proxy's
// syncProxyRules does) and the rule backend writes only what differs, so a flushed table or a
// kube-proxy jump put in front is repaired by the next periodic resync without any special path.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { StateStore } from '../state/store.ts';
import type { ProxyManager } from '../proxy/manager.ts';
import type { RuleBackend } from '../netfilter/iptables.ts';
import type { AgentMetrics, SourceStatus } from '../telemetry/metrics.ts';
import type { HealthSource } from '../telemetry/server.ts';
import { renderRules } from '../rules/render.ts';
import { computeDesired, desiredRules, type Desired, type ServicePlan } from './desired.ts';
import type { ProxyPortStatus } from '../proxy/types.ts';
import type { DesiredRules, RenderedRules } from '../rules/types.ts';
import { SyncRunner } from './syncRunner.ts';
import { describeChanges } from './changes.ts';

export interface AgentDeps {
  config: Config;
  store: StateStore;
  proxy: ProxyManager;
  iptables: RuleBackend;
  logger: Logger;
  metrics: AgentMetrics;
  /** Waits for sources' initial load before the first sync (so a restart never drops services). */
  sourcesReady?: () => Promise<void>;
  /** Called once, when the first sync is done (the CLI releases its start-up heap setting then). */
  onInitialSync?: () => void;
  /** Watch state of the sources, for health details (a stale source never fails a probe). */
  sourceStatus?: () => readonly SourceStatus[];
  /** Moves live UDP flows onto the current rules when a UDP portal appears or disappears. */
  conntrack?: { forgetUdp(ip: string, port: number): Promise<void> };
}

export class Agent implements HealthSource {
  #deps: AgentDeps;
  #log: Logger;
  #runner: SyncRunner;
  #unsubscribe: (() => void) | undefined;
  #previous: Desired | undefined;
  #lastSuccess = 0;
  #lastError: string | undefined;
  #syncedOnce = false;
  #lastRender: { plans: readonly ServicePlan[]; listening: readonly ProxyPortStatus[]; rules: DesiredRules; rendered: RenderedRules } | undefined;
  /** "ip:port" of the UDP portals our rules currently REDIRECT. */
  #udpPortals = new Set<string>();

  constructor(deps: AgentDeps) {
    this.#deps = deps;
    this.#log = deps.logger;
    this.#runner = new SyncRunner({
      sync: () => this.syncOnce(),
      minIntervalMs: deps.config.iptables.minSyncPeriod,
      periodMs: deps.config.iptables.syncPeriod,
      onError: (err, consecutive) => {
        const message = (err as Error).message;
        deps.metrics.syncErrors.inc();
        // What was applied before stays in place: nothing is removed when a sync fails.
        // Log a failure when it starts or changes, not on every retry.
        if (consecutive === 1 || message !== this.#lastError) {
          this.#log.error({ err, consecutive }, 'sync failed; keeping the rules and listeners already in place, retrying with backoff');
        } else this.#log.debug({ consecutive }, 'sync still failing');
        this.#lastError = message;
      },
    });
  }

  async start(): Promise<void> {
    await this.#deps.sourcesReady?.();
    this.#unsubscribe = this.#deps.store.onChange(() => this.#runner.request());
    this.#runner.start();
  }

  /** One full sync; exposed for tests and the first run. */
  async syncOnce(): Promise<void> {
    const { config, store, proxy, iptables, metrics } = this.#deps;
    const endTimer = metrics.syncDuration.startTimer();
    const desired = computeDesired(store.snapshot(), config, this.#previous);
    if (desired !== this.#previous) {
      for (const line of describeChanges(this.#previous, desired)) this.#log.info(line.fields, line.msg);
      this.#previous = desired;
    }

    // Listeners first, so no rule ever points at a port nobody listens on.
    const listening = await proxy.prepare(desired.proxySpecs);
    const { rules, rendered } = this.#render(desired, listening);
    const result = await iptables.sync(rendered);
    await this.#moveUdpFlows(new Set(rules.proxied.filter((r) => r.protocol === 'UDP').map((r) => `${r.clusterIP}:${r.port}`)));
    for (const jump of result.installed) this.#log.info({ jump }, 'jump installed');
    for (const repair of result.repairs) {
      metrics.chainOrderRepairs.inc();
      this.#log.warn({ repair }, 'chain order repaired: our jump is first again');
    }
    if (result.rulesWritten > 0) metrics.rulesWritten.inc(result.rulesWritten);
    await proxy.retire();

    endTimer();
    if (this.#lastError !== undefined) this.#log.info('sync recovered');
    this.#lastSuccess = Date.now();
    metrics.lastSyncSuccess.set(this.#lastSuccess / 1000);
    this.#lastError = undefined;
    if (!this.#syncedOnce) {
      this.#syncedOnce = true;
      this.#log.info({ proxiedPorts: listening.length, layout: config.layout }, 'initial sync done');
      this.#deps.onInitialSync?.();
    }
  }

  /**
   * The rules for this sync. When every plan is the one of the last sync and every listener
   * kept its port, they are the last sync's: the periodic resync at 10,000 services then
   * renders (and sorts, and allocates) nothing.
   */
  #render(desired: Desired, listening: readonly ProxyPortStatus[]): { rules: DesiredRules; rendered: RenderedRules } {
    const { config } = this.#deps;
    const last = this.#lastRender;
    if (last !== undefined && sameItems(last.plans, desired.services) && sameListeners(last.listening, listening)) return last;
    const listenPorts = new Map(listening.map((s) => [s.id, s.listenPort]));
    const rules = desiredRules(desired, listenPorts, { layout: config.layout, ...(config.serviceCIDR ? { serviceCIDR: config.serviceCIDR } : {}) });
    this.#lastRender = { plans: desired.services, listening, rules, rendered: renderRules(rules) };
    return this.#lastRender;
  }

  /** Removes our rules first (traffic falls back to kube-proxy), then closes listeners and drains. */
  async stop(): Promise<void> {
    this.#unsubscribe?.();
    await this.#runner.stop();
    try {
      await this.#deps.iptables.cleanup();
      this.#log.info('rules removed');
      await this.#moveUdpFlows(new Set());
    } finally {
      // New connections already go to kube-proxy; give the open ones a moment to finish.
      await this.#deps.proxy.close({ drainMs: this.#deps.config.proxy.shutdownGracePeriod });
    }
  }

  /** Forgets conntrack entries of UDP portals that appeared or disappeared since the last sync. */
  async #moveUdpFlows(current: Set<string>): Promise<void> {
    const changed = [...current].filter((p) => !this.#udpPortals.has(p)).concat([...this.#udpPortals].filter((p) => !current.has(p)));
    this.#udpPortals = current;
    if (!this.#deps.conntrack) return;
    for (const portal of changed) {
      const sep = portal.lastIndexOf(':');
      await this.#deps.conntrack.forgetUdp(portal.slice(0, sep), Number(portal.slice(sep + 1)));
    }
  }

  healthy(): { ok: boolean; detail: string } {
    // Alive while syncs keep succeeding; three missed periods means something is stuck.
    const limit = 3 * this.#deps.config.iptables.syncPeriod + 10_000;
    if (!this.#syncedOnce) return { ok: true, detail: `starting${this.#sourcesNote()}` };
    const age = Date.now() - this.#lastSuccess;
    return age <= limit
      ? { ok: true, detail: `ok: last sync ${age} ms ago${this.#sourcesNote()}` }
      : { ok: false, detail: `last successful sync ${age} ms ago${this.#lastError ? `; last error: ${this.#lastError}` : ''}${this.#sourcesNote()}` };
  }

  ready(): { ok: boolean; detail: string } {
    if (!this.#syncedOnce) return { ok: false, detail: (this.#lastError ? `initial sync failing: ${this.#lastError}` : 'initial sync not done') + this.#sourcesNote() };
    return this.#lastError ? { ok: false, detail: `last sync failed: ${this.#lastError}${this.#sourcesNote()}` } : { ok: true, detail: `ok${this.#sourcesNote()}` };
  }

  /**
   * Sources waiting for their first list, or stale (watch down, last known state served). A stale
   * source does not fail /healthz or /readyz: restarting the agent would not bring the API server
   * back, and the rules in place are the best we know. It shows here and in edgeproxy_source_*.
   */
  #sourcesNote(): string {
    const statuses = this.#deps.sourceStatus?.() ?? [];
    const notes: string[] = [];
    const now = Date.now();
    for (const s of statuses) {
      if (!s.synced) notes.push(`${s.source} waiting for its initial list${s.lastError ? ` (${s.lastError})` : ''}`);
      else if (s.stale) notes.push(`${s.source} stale for ${Math.round((now - (s.staleSince ?? now)) / 1000)} s, serving the last known state${s.lastError ? ` (${s.lastError})` : ''}`);
    }
    return notes.length ? `; ${notes.join('; ')}` : '';
  }
}

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameListeners(a: readonly ProxyPortStatus[], b: readonly ProxyPortStatus[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.id !== b[i]!.id || a[i]!.listenPort !== b[i]!.listenPort) return false;
  return true;
}
