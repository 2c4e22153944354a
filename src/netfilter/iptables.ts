// The only place that runs iptables commands. The first full sync (and the first after a cleanup
// or a failed write) reads the whole nat table (iptables-save) and plans against it. Later full
// syncs (periodic, or a jump gone) read only the chains that hold our rules and jumps, `iptables
// -S` each in parallel: with nf_tables a few ms whatever kube-proxy holds, where iptables-save of
// a 5,000-service kube-proxy table takes ~0.5 s and 6 MB. Incremental syncs plan against the state
// the last successful sync wrote and read only PREROUTING and OUTPUT to check our jumps, so a
// change costs what changed and a no-op resync writes nothing. Every write is one atomic
// `iptables-restore --noflush` transaction. A failed full write is retried once against the whole
// table, which also finds jumps to our chains from anywhere else.
import type { Logger } from 'pino';
import type { RenderedRules } from '../rules/types.ts';
import type { ChainRules } from './delta.ts';
import { OVERRIDE_FROM_RULES } from './override.ts';
import { OUR_CHAINS } from '../rules/chains.ts';
import { planCleanup, planIncremental, planSync, type SyncPlan } from './plan.ts';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';
import { parseNatSave, parseRuleListing, type NatTable } from './save.ts';

export interface IptablesBinaries {
  save: string;
  restore: string;
  /** For the per-chain reads (`-S CHAIN`); defaults to `save` without its "-save" suffix. */
  list?: string;
}

export interface IptablesOptions {
  runner: CommandRunner;
  /** Defaults to iptables-save / iptables-restore; ip6tables-save / ip6tables-restore for IPv6. */
  binaries?: IptablesBinaries;
  /**
   * A full sync (whole-table read) runs at least this often as a safety net, e.g. for one of our
   * chains flushed behind our back; 0 makes every sync full. Default 60 s.
   */
  fullSyncPeriodMs?: number;
  /**
   * Incremental syncs override rather than delete rules in chains this long (override.ts); the
   * leftovers go at the next sync with nothing to change. Default OVERRIDE_FROM_RULES; Infinity: never.
   */
  overrideFromRules?: number;
  /** Clock for the full-sync period (tests pass their own). */
  now?: () => number;
  logger?: Logger;
}

export interface SyncResult {
  repairs: string[];
  /** Jumps inserted for chains that did not exist yet (first install). */
  installed: string[];
  /** Rule lines (-A/-I) written; 0 when the table already matched and nothing was restored. */
  rulesWritten: number;
}

/** How the last sync ran, for logs, tests and the bench. */
export interface SyncMode {
  mode: 'full' | 'incremental';
  /** Why a full sync ran: 'first sync', 'periodic', or what made the incremental plan unusable. */
  reason?: string;
}

/** iptables-restore rejected a payload; nothing of it was applied (the restore is atomic). */
export class RestoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestoreError';
  }
}

/** "line 3 failed" (rule errors) or "Error occurred at line: 3" (parse errors). */
function failedLineNumber(stderr: string): number | undefined {
  const m = /line:? (\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

function countWrites(payload: string): number {
  return payload.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith('-I ')).length;
}

/**
 * What the agent needs from a packet-filter backend: make our rules exactly `rendered`, and
 * remove them all. Iptables is the one implementation; an nftables backend would be another.
 */
export interface RuleBackend {
  sync(rendered: RenderedRules): Promise<SyncResult>;
  cleanup(): Promise<boolean>;
}

export const DEFAULT_FULL_SYNC_PERIOD_MS = 60_000;

/** What a cleanup reads: the built-in chains our jumps live in, and every chain we may own. */
const CHAINS_TO_READ: readonly string[] = ['PREROUTING', 'OUTPUT', ...OUR_CHAINS];

/** The built-in chains the layout's jumps live in. */
function jumpChains(rendered: RenderedRules): string[] {
  return [...new Set(rendered.jumps.map((j) => j.chain))];
}

/** `iptables -S CHAIN` of a chain that does not exist (legacy; nf_tables 1.8.9 says "incompatible"). */
const NO_SUCH_CHAIN = /No chain\/target\/match by that name|does not exist|is incompatible, use 'nft' tool/;

export class Iptables implements RuleBackend {
  readonly #runner: CommandRunner;
  readonly #binaries: Required<IptablesBinaries>;
  readonly #fullSyncPeriodMs: number;
  readonly #overrideFrom: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  /** Our chains as the last successful sync left them; undefined when unknown (next sync is full). */
  #written: ChainRules | undefined;
  #lastFullSyncAt = 0;
  #lastMode: SyncMode | undefined;

  constructor(options: IptablesOptions) {
    this.#runner = options.runner;
    const binaries = options.binaries ?? { save: 'iptables-save', restore: 'iptables-restore' };
    this.#binaries = { ...binaries, list: binaries.list ?? binaries.save.replace(/-save$/, '') };
    this.#fullSyncPeriodMs = options.fullSyncPeriodMs ?? DEFAULT_FULL_SYNC_PERIOD_MS;
    this.#overrideFrom = options.overrideFromRules ?? OVERRIDE_FROM_RULES;
    this.#now = options.now ?? Date.now;
    this.#log = options.logger;
  }

  /** How the last sync ran; undefined before the first. */
  get lastSyncMode(): SyncMode | undefined {
    return this.#lastMode;
  }

  async #run(binary: string, args: string[], stdin?: string) {
    try {
      return await this.#runner(binary, args, stdin);
    } catch (err) {
      if (err instanceof CommandNotFoundError) {
        throw new Error(`${err.command} not found: install iptables`, { cause: err });
      }
      throw err;
    }
  }

  async readNat(): Promise<NatTable> {
    const { code, stdout, stderr } = await this.#run(this.#binaries.save, ['-t', 'nat']);
    if (code !== 0) throw new Error(`${this.#binaries.save} -t nat failed (exit ${code}): ${stderr.trim()}`);
    return parseNatSave(stdout);
  }

  /**
   * Reads only the named nat chains (`iptables -S CHAIN`, in parallel). With nf_tables this
   * fetches just those chains, so PREROUTING/OUTPUT cost a few ms however large our chains are.
   * missingOk: a chain that does not exist is left out of the result instead of failing the read.
   */
  async readChains(chains: readonly string[], opts: { missingOk?: boolean } = {}): Promise<NatTable> {
    const listings = await Promise.all(
      chains.map(async (chain) => {
        const args = ['-w', '5', '-t', 'nat', '-S', chain];
        const { code, stdout, stderr } = await this.#run(this.#binaries.list, args);
        if (code === 1 && opts.missingOk === true && NO_SUCH_CHAIN.test(stderr)) return '';
        if (code !== 0) throw new Error(`${this.#binaries.list} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`);
        return stdout;
      }),
    );
    return parseRuleListing(listings.join('\n'));
  }

  /** PREROUTING, OUTPUT and those of our chains (either layout) that exist: what a cleanup plans against. */
  async readOurChains(): Promise<NatTable> {
    return this.readChains(CHAINS_TO_READ, { missingOk: true });
  }

  /** Applies a nat-table payload (body lines, no "*nat"/"COMMIT") atomically, leaving other rules alone. */
  async restoreNat(payload: string): Promise<void> {
    const input = `*nat\n${payload}${payload.endsWith('\n') || payload === '' ? '' : '\n'}COMMIT\n`;
    // --wait: with iptables-legacy kube-proxy may hold the xtables lock for a moment.
    const { code, stderr } = await this.#run(this.#binaries.restore, ['--noflush', '--wait', '5'], input);
    if (code === 0) return;
    const lineNo = failedLineNumber(stderr);
    const lineText = lineNo === undefined ? undefined : input.split('\n')[lineNo - 1];
    const where = lineText === undefined ? '' : `; line ${lineNo}: ${lineText}`;
    throw new RestoreError(`${this.#binaries.restore} failed (exit ${code}): ${stderr.trim()}${where}`);
  }

  #fullSyncReason(): string | undefined {
    if (this.#written === undefined) return 'first sync';
    if (this.#fullSyncPeriodMs <= 0) return 'fullSyncPeriod is 0';
    if (this.#now() - this.#lastFullSyncAt >= this.#fullSyncPeriodMs) return 'periodic';
    return undefined;
  }

  async #apply(plan: SyncPlan, mode: SyncMode): Promise<SyncResult> {
    if (plan.payload !== '') await this.restoreNat(plan.payload);
    this.#written = plan.chains;
    this.#lastMode = mode;
    return { repairs: plan.repairs, installed: plan.installed, rulesWritten: countWrites(plan.payload) };
  }

  /**
   * Makes our chains hold exactly `rendered` (as a set; EDGE-MESH's RETURNs first) with our jumps
   * first; restores nothing when already so. Incremental when the last written state is known
   * and the full-sync period has not run out; a failed incremental write (say a rule we meant to
   * delete was deleted behind our back) falls back to a full sync within the same call.
   */
  async sync(rendered: RenderedRules): Promise<SyncResult> {
    let reason = this.#fullSyncReason();
    const written = this.#written;
    if (reason === undefined && written !== undefined) {
      const builtins = await this.readChains(jumpChains(rendered));
      const plan = planIncremental(rendered, written, builtins, { overrideFrom: this.#overrideFrom });
      if ('fullSyncNeeded' in plan) {
        reason = plan.fullSyncNeeded;
      } else {
        try {
          return await this.#apply(plan, { mode: 'incremental' });
        } catch (err) {
          if (!(err instanceof RestoreError)) throw err;
          reason = `incremental update failed: ${err.message}`;
          this.#log?.warn({ err: err.message }, 'incremental rule update failed (rules changed behind our back?); running a full sync');
        }
      }
    }
    return this.#fullSync(rendered, reason ?? 'first sync');
  }

  async #fullSync(rendered: RenderedRules, reason: string): Promise<SyncResult> {
    // Nothing written yet (a start, or after a cleanup or a failed write): read the whole table,
    // which shows whatever an earlier run or the other layout left, wherever. Otherwise the
    // chains we wrote, those we want and those our jumps live in are all there is to read.
    const written = this.#written;
    const live =
      written === undefined
        ? await this.readNat()
        : await this.readChains([...new Set([...jumpChains(rendered), ...written.keys(), ...rendered.chains])], { missingOk: true });
    // Until this succeeds, what our chains hold is unknown.
    this.#written = undefined;
    const startedAt = this.#now();
    const plan = planSync(rendered, live);
    let result: SyncResult;
    try {
      result = await this.#apply(plan, { mode: 'full', reason });
    } catch (err) {
      if (!(err instanceof RestoreError)) throw err;
      // A rule changed between our read and the write, or a chain of ours that must go is still
      // jumped to from a chain we did not read: plan again against the whole table, refilling
      // our chains instead of deleting rule by rule.
      this.#log?.warn({ err: err.message }, 'full rule sync failed; retrying against the whole nat table with our chains refilled');
      result = await this.#apply(planSync(rendered, await this.readNat(), { refillChains: true }), { mode: 'full', reason });
    }
    this.#lastFullSyncAt = startedAt;
    this.#log?.debug({ reason, rulesWritten: result.rulesWritten }, 'full rule sync');
    return result;
  }

  /** Removes all our chains and jumps (either layout). Returns whether anything was removed. */
  async cleanup(): Promise<boolean> {
    this.#written = undefined;
    const payload = planCleanup(await this.readOurChains());
    if (payload === '') return false;
    try {
      await this.restoreNat(payload);
    } catch (err) {
      if (!(err instanceof RestoreError)) throw err;
      // Something else jumps to a chain of ours (only the whole table shows where), or the
      // table changed under us: plan against the whole table once.
      const whole = planCleanup(await this.readNat());
      if (whole !== '') await this.restoreNat(whole);
    }
    return true;
  }
}
