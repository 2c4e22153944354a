// `edgeproxy cleanup`: removes every chain and jump of ours (both layouts), leaving kube-proxy's
// rules, in whichever iptables backend (nf_tables, legacy) holds them.
import { BACKEND_BINARIES, backendsWithOurChains, readEvidence } from '../../netfilter/backend.ts';
import { Iptables } from '../../netfilter/iptables.ts';
import { spawnRunner, type CommandRunner } from '../../netfilter/runner.ts';

export async function cleanupCommand(out: NodeJS.WritableStream, runner: CommandRunner = spawnRunner): Promise<number> {
  let removed = false;
  for (const mode of backendsWithOurChains(await readEvidence(runner))) {
    if (await new Iptables({ runner, binaries: BACKEND_BINARIES[mode] }).cleanup()) {
      removed = true;
      out.write(`removed the edgeproxy chains and their jumps${mode === 'system' ? '' : ` (iptables ${mode})`}\n`);
    }
  }
  if (!removed) out.write('nothing to remove: no edgeproxy chains or jumps\n');
  return 0;
}
