// A large kube-proxy nat table for the rule-sync bench: what kube-proxy's iptables mode
// (v1.28–v1.30) writes for N ClusterIP services of two endpoints each, in the shape of
// test/fixtures/kube-proxy-nat.rules (which holds a handful of real ones). The agent never reads
// these chains, but iptables-save has to print every one of them.
import { createHash } from 'node:crypto';
import { natRestoreText } from './topology.ts';

/** kube-proxy's chain suffix: base32(sha256(key))[:16]. */
function chainHash(key: string): string {
  const bytes = createHash('sha256').update(key).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length === 16) break;
  }
  return out;
}

/** The whole nat table (an iptables-restore input) with `services` services, 9 rules and 3 chains each. */
export function largeKubeProxyTable(services: number): string {
  const chains = ['KUBE-SERVICES', 'KUBE-MARK-MASQ', 'KUBE-POSTROUTING', 'KUBE-NODEPORTS'];
  const rules: string[] = [];
  for (let i = 0; i < services; i++) {
    const name = `ns${i % 50}/svc-${i}:http`;
    const ip = `10.96.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`;
    const svc = `KUBE-SVC-${chainHash(`${name}tcp`)}`;
    chains.push(svc);
    rules.push(`-A KUBE-SERVICES -d ${ip}/32 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 80 -j ${svc}`);
    rules.push(`-A ${svc} ! -s 10.244.0.0/16 -d ${ip}/32 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`);
    for (let e = 0; e < 2; e++) {
      const ep = `10.244.${7 + e}.${(i % 250) + 2}`;
      const sep = `KUBE-SEP-${chainHash(`${name}tcp${ep}:8080`)}`;
      chains.push(sep);
      const pick = e === 0 ? ' -m statistic --mode random --probability 0.50000000000' : '';
      rules.push(`-A ${svc} -m comment --comment "${name} -> ${ep}:8080"${pick} -j ${sep}`);
      rules.push(`-A ${sep} -s ${ep}/32 -m comment --comment "${name}" -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m comment --comment "${name}" -m tcp -j DNAT --to-destination ${ep}:8080`);
    }
  }
  return natRestoreText(chains, [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ...rules,
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  ]);
}
