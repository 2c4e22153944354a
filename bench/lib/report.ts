// Turns the measured figures into rows with ratios and PASS/MISS against the targets,
// and prints them as Markdown tables (readable in a terminal, pasteable into the README).
import { fmt, ratio } from './stats.ts';

export interface PathRow {
  metric: string;
  unit: string;
  dnat: number | undefined;
  peer: number | undefined;
  edge: number | undefined;
  /** Human-readable target; '' for information only. */
  target: string;
  /** PASS/MISS, undefined when there is no target or a figure is missing. */
  pass?: boolean | undefined;
}

export interface ValueRow {
  metric: string;
  value: string;
  target: string;
  pass?: boolean | undefined;
}

export function verdict(pass: boolean | undefined, target: string): string {
  if (target === '') return '';
  return pass === undefined ? 'n/a' : pass ? 'PASS' : 'MISS';
}

/** pass = every check holds; undefined when a figure is missing. */
export function check(...conds: (number | undefined | boolean)[]): boolean | undefined {
  if (conds.some((c) => c === undefined || (typeof c === 'number' && !Number.isFinite(c)))) return undefined;
  return conds.every((c) => c === true);
}

export function renderPathTable(rows: readonly PathRow[], peerName: string): string {
  const head = `| metric | kernel DNAT | ${peerName} | edgeproxy | edgeproxy / ${peerName} | edgeproxy / DNAT | target | result |`;
  const sep = '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |';
  const lines = rows.map((r) => {
    const x = (v: number | undefined) => (v === undefined ? 'n/a' : fmt(v, r.unit === 'Gbit/s' || r.unit === 'ms' ? 2 : undefined));
    return `| ${r.metric} (${r.unit}) | ${x(r.dnat)} | ${x(r.peer)} | ${x(r.edge)} | ${fmt(ratio(r.edge, r.peer))}× | ${fmt(ratio(r.edge, r.dnat))}× | ${r.target} | ${verdict(r.pass, r.target)} |`;
  });
  return [head, sep, ...lines].join('\n');
}

export function renderValueTable(rows: readonly ValueRow[]): string {
  const head = '| metric | value | target | result |';
  const sep = '| --- | ---: | --- | --- |';
  return [head, sep, ...rows.map((r) => `| ${r.metric} | ${r.value} | ${r.target} | ${verdict(r.pass, r.target)} |`)].join('\n');
}
