// Splits an iptables-restore rule line into arguments the way iptables-restore does
// (double or single quotes group, a backslash escapes the next character), so that two
// spellings of the same rule (e.g. quoted or bare comment) compare equal.

export function splitRuleArgs(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let inToken = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      inToken = true;
    } else if (quote) {
      if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inToken = true;
    } else if (c === ' ' || c === '\t') {
      if (inToken) args.push(current);
      current = '';
      inToken = false;
    } else {
      current += c;
      inToken = true;
    }
  }
  if (quote) throw new Error(`unterminated quote in rule: ${line}`);
  if (inToken) args.push(current);
  return args;
}

/** True when both lines are the same rule argument for argument. */
export function sameRule(a: string, b: string): boolean {
  const x = splitRuleArgs(a);
  const y = splitRuleArgs(b);
  return x.length === y.length && x.every((arg, i) => arg === y[i]);
}

/** The chain or target a rule line jumps (-j) or goes (-g) to, if any. */
export function ruleTarget(line: string): string | undefined {
  const args = splitRuleArgs(line);
  const i = args.findIndex((a) => a === '-j' || a === '-g');
  return i >= 0 ? args[i + 1] : undefined;
}
