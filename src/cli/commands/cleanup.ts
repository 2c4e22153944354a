// `edgeproxy cleanup`: removes every chain and jump of ours (both layouts), leaving kube-proxy's rules.
import { Iptables } from '../../netfilter/iptables.ts';
import { spawnRunner } from '../../netfilter/runner.ts';

export async function cleanupCommand(out: NodeJS.WritableStream, iptables = new Iptables({ runner: spawnRunner })): Promise<number> {
  const removed = await iptables.cleanup();
  out.write(removed ? 'removed the edgeproxy chains and their jumps\n' : 'nothing to remove: no edgeproxy chains or jumps\n');
  return 0;
}
