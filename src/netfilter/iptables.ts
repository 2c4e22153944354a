// The only place that runs iptables-save / iptables-restore. Reads the nat table, plans with
// the pure planner, and writes one atomic `iptables-restore --noflush` transaction.
import type { RenderedRules } from '../rules/types.ts';
import { planCleanup, planSync } from './plan.ts';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';
import { parseNatSave, type NatTable } from './save.ts';

export interface IptablesBinaries {
  save: string;
  restore: string;
}

export interface IptablesOptions {
  runner: CommandRunner;
  /** Defaults to iptables-save / iptables-restore; ip6tables-save / ip6tables-restore for IPv6. */
  binaries?: IptablesBinaries;
}

export interface SyncResult {
  repairs: string[];
  /** Jumps inserted for chains that did not exist yet (first install). */
  installed: string[];
  /** Rule lines (-A/-I) written; 0 when the table already matched and nothing was restored. */
  rulesWritten: number;
}

/** "line 3 failed" (rule errors) or "Error occurred at line: 3" (parse errors). */
function failedLineNumber(stderr: string): number | undefined {
  const m = /line:? (\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

/**
 * What the agent needs from a packet-filter backend: make our rules exactly `rendered`, and
 * remove them all. Iptables is the one implementation; an nftables backend would be another.
 */
export interface RuleBackend {
  sync(rendered: RenderedRules): Promise<SyncResult>;
  cleanup(): Promise<boolean>;
}

export class Iptables implements RuleBackend {
  readonly #runner: CommandRunner;
  readonly #binaries: IptablesBinaries;

  constructor(options: IptablesOptions) {
    this.#runner = options.runner;
    this.#binaries = options.binaries ?? { save: 'iptables-save', restore: 'iptables-restore' };
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

  /** Applies a nat-table payload (body lines, no "*nat"/"COMMIT") atomically, leaving other rules alone. */
  async restoreNat(payload: string): Promise<void> {
    const input = `*nat\n${payload}${payload.endsWith('\n') || payload === '' ? '' : '\n'}COMMIT\n`;
    // --wait: with iptables-legacy kube-proxy may hold the xtables lock for a moment.
    const { code, stderr } = await this.#run(this.#binaries.restore, ['--noflush', '--wait', '5'], input);
    if (code === 0) return;
    const lineNo = failedLineNumber(stderr);
    const lineText = lineNo === undefined ? undefined : input.split('\n')[lineNo - 1];
    const where = lineText === undefined ? '' : `; line ${lineNo}: ${lineText}`;
    throw new Error(`${this.#binaries.restore} failed (exit ${code}): ${stderr.trim()}${where}`);
  }

  /** Makes our chains hold exactly `rendered` with our jumps first; restores nothing when already so. */
  async sync(rendered: RenderedRules): Promise<SyncResult> {
    const { payload, repairs, installed } = planSync(rendered, await this.readNat());
    if (payload === '') return { repairs, installed, rulesWritten: 0 };
    await this.restoreNat(payload);
    const rulesWritten = payload.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith('-I ')).length;
    return { repairs, installed, rulesWritten };
  }

  /** Removes all our chains and jumps (either layout). Returns whether anything was removed. */
  async cleanup(): Promise<boolean> {
    const payload = planCleanup(await this.readNat());
    if (payload === '') return false;
    await this.restoreNat(payload);
    return true;
  }
}
