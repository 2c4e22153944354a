// Which iptables our rules go through. iptables 1.8 has two backends that do not see each other:
// "legacy" (the kernel's x_tables) and "nft" (nf_tables). Our jump must sit in front of
// kube-proxy's KUBE-SERVICES in the same backend, or the kernel runs the two nat tables in an
// order nobody chose. A hostNetwork container must therefore use the node's backend, whatever its
// image's `iptables` points at. We look for kube-proxy's KUBE-SERVICES in either nat table and,
// failing that (kube-proxy not started yet), for the chains kubelet creates in the mangle table
// (KUBE-IPTABLES-HINT, or KUBE-KUBELET-CANARY before 1.24), as kube-proxy's own image does
// (kubernetes-sigs/iptables-wrappers).
import { OUR_CHAINS } from '../rules/chains.ts';
import type { IptablesBinaries } from './iptables.ts';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';

export type IptablesMode = 'nft' | 'legacy';

/** Config iptables.backend: detect, one of the two, or the image's plain `iptables`. */
export type BackendSetting = 'auto' | IptablesMode | 'system';

export interface BackendChoice {
  mode: IptablesMode | 'system';
  binaries: IptablesBinaries;
  /** Why, for the log and `edgeproxy status`. */
  reason: string;
}

export const BACKEND_BINARIES: Record<IptablesMode | 'system', IptablesBinaries> = {
  nft: { save: 'iptables-nft-save', restore: 'iptables-nft-restore', list: 'iptables-nft' },
  legacy: { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore', list: 'iptables-legacy' },
  system: { save: 'iptables-save', restore: 'iptables-restore', list: 'iptables' },
};

const KUBELET_CHAINS = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m;
const KUBE_SERVICES = /^:KUBE-SERVICES /m;

/** What the detection read; undefined where the binary is missing or the read failed. */
export interface BackendEvidence {
  /** iptables-nft-save -t nat */
  nftNat?: string;
  /** iptables-nft-save -t mangle */
  nftMangle?: string;
  /** iptables-legacy-save: every table that exists (`-t` would create the table in the kernel). */
  legacyAll?: string;
}

/** The `*table` section of iptables-save output ('' when absent). */
export function saveSection(text: string, table: string): string {
  const start = text.indexOf(`*${table}\n`);
  if (start === -1) return '';
  const end = text.indexOf('\nCOMMIT', start);
  return end === -1 ? text.slice(start) : text.slice(start, end);
}

/**
 * The decision, from what was read (pure). kube-proxy's KUBE-SERVICES decides first, since our
 * jump is placed relative to it; then kubelet's mangle chains, which exist before kube-proxy runs.
 */
export function chooseBackend(evidence: BackendEvidence): BackendChoice {
  const pick = (mode: IptablesMode | 'system', reason: string): BackendChoice => ({ mode, binaries: BACKEND_BINARIES[mode], reason });
  const legacyNat = saveSection(evidence.legacyAll ?? '', 'nat');
  const legacyMangle = saveSection(evidence.legacyAll ?? '', 'mangle');
  if (KUBE_SERVICES.test(legacyNat)) return pick('legacy', "kube-proxy's KUBE-SERVICES is in the legacy backend's nat table");
  if (KUBE_SERVICES.test(evidence.nftNat ?? '')) return pick('nft', "kube-proxy's KUBE-SERVICES is in the nf_tables backend's nat table");
  if (KUBELET_CHAINS.test(evidence.nftMangle ?? '')) return pick('nft', "kubelet's iptables hint chain is in the nf_tables backend");
  if (KUBELET_CHAINS.test(legacyMangle)) return pick('legacy', "kubelet's iptables hint chain is in the legacy backend");
  if (evidence.nftNat === undefined && evidence.nftMangle === undefined && evidence.legacyAll === undefined) {
    return pick('system', 'neither iptables-nft nor iptables-legacy could be read (missing, or iptables before 1.8): using iptables as installed');
  }
  return pick('system', 'no kube-proxy or kubelet chains in either backend: using iptables as installed (set iptables.backend to choose)');
}

/** Reads what the detection needs (nothing is written, and no table is created). */
export async function readEvidence(runner: CommandRunner): Promise<BackendEvidence> {
  const read = async (cmd: string, args: string[]): Promise<string | undefined> => {
    try {
      const r = await runner(cmd, args);
      return r.code === 0 ? r.stdout : undefined;
    } catch (err) {
      if (err instanceof CommandNotFoundError) return undefined;
      throw err;
    }
  };
  const [nftNat, nftMangle, legacyAll] = await Promise.all([
    read('iptables-nft-save', ['-t', 'nat']),
    read('iptables-nft-save', ['-t', 'mangle']),
    read('iptables-legacy-save', []),
  ]);
  return { nftNat, nftMangle, legacyAll };
}

export async function detectBackend(runner: CommandRunner): Promise<BackendChoice> {
  return chooseBackend(await readEvidence(runner));
}

const OUR_CHAIN_DECLARATION = new RegExp(`^:(${OUR_CHAINS.join('|')}) `, 'm');

/**
 * The backends whose nat table holds a chain of ours (pure): what `edgeproxy cleanup` must clean.
 * With neither binary, the installed `iptables`, which only a read can tell about.
 */
export function backendsWithOurChains(evidence: BackendEvidence): (IptablesMode | 'system')[] {
  if (evidence.nftNat === undefined && evidence.legacyAll === undefined) return ['system'];
  const modes: IptablesMode[] = [];
  if (OUR_CHAIN_DECLARATION.test(evidence.nftNat ?? '')) modes.push('nft');
  if (OUR_CHAIN_DECLARATION.test(saveSection(evidence.legacyAll ?? '', 'nat'))) modes.push('legacy');
  return modes;
}

/** The backend for a config setting: detected for 'auto', else as set. */
export async function resolveBackend(setting: BackendSetting, runner: CommandRunner): Promise<BackendChoice> {
  if (setting === 'auto') return detectBackend(runner);
  return { mode: setting, binaries: BACKEND_BINARIES[setting], reason: 'iptables.backend in the config' };
}
