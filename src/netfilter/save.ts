// Parses `iptables-save -t nat` output. Rules stay as the exact "-A CHAIN ..." lines
// iptables-save printed, because deleting a rule by spec needs that exact text back.

export interface SavedChain {
  /** "ACCEPT"/"DROP" for built-in chains; undefined for user chains ("-"). */
  policy?: string;
  rules: string[];
}

export interface NatTable {
  /** In the order iptables-save printed them. */
  chains: Map<string, SavedChain>;
}

export function parseNatSave(text: string): NatTable {
  const chains = new Map<string, SavedChain>();
  const chain = (name: string): SavedChain => {
    let c = chains.get(name);
    if (!c) chains.set(name, (c = { rules: [] }));
    return c;
  };
  // Only the *nat section counts; input without any table header is taken as nat.
  let inNat = !/^\*/m.test(text);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      inNat = line === '*nat';
      continue;
    }
    if (!inNat || line === 'COMMIT') continue;
    if (line.startsWith(':')) {
      const [name = '', policy] = line.slice(1).split(/\s+/);
      const c = chain(name);
      if (policy && policy !== '-') c.policy = policy;
    } else if (line.startsWith('-A ')) {
      chain(chainOf(line)).rules.push(line);
    } else {
      throw new Error(`unexpected line in iptables-save output: ${line}`);
    }
  }
  return { chains };
}

/**
 * The chain of an "-A CHAIN ..." line, without splitting the whole rule (at 10,000 services a
 * full sync's iptables-save has 20,000 such lines, and splitting each cost ~20 MB of garbage).
 */
function chainOf(line: string): string {
  const end = line.indexOf(' ', 3);
  return end === -1 ? line.slice(3) : line.slice(3, end);
}

/** Parses `iptables -t nat -S [CHAIN]` output ("-P", "-N" and "-A" lines) into the same shape. */
export function parseRuleListing(text: string): NatTable {
  const chains = new Map<string, SavedChain>();
  const chain = (name: string): SavedChain => {
    let c = chains.get(name);
    if (!c) chains.set(name, (c = { rules: [] }));
    return c;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('-A ')) {
      chain(chainOf(line)).rules.push(line);
      continue;
    }
    const [flag, name = '', policy] = line.split(/\s+/);
    if (flag === '-P') chain(name).policy = policy ?? '';
    else if (flag === '-N') chain(name);
    else throw new Error(`unexpected line in iptables -S output: ${line}`);
  }
  return { chains };
}
