// Rule sync cost through the real netfilter layer (Iptables: a full sync reads the table with
// iptables-save; later syncs plan a per-rule delta against the last written state and read only
// PREROUTING/OUTPUT; one iptables-restore --noflush) in a namespace of its own that holds
// kube-proxy's table, against a naive baseline that runs one `iptables` exec per rule. Both run
// in a child process inside that namespace (bench/ruleSyncChild.ts), as the agent runs in its
// node's: no `ip netns exec` in front of any command.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kubeProxyRulesFile, nodeBin } from '../test/support/cluster.ts';
import { Iptables } from '../src/netfilter/iptables.ts';
import { spawnRunner } from '../src/netfilter/runner.ts';
import { renderRules } from '../src/rules/render.ts';
import type { DesiredRules, ProxiedPortRule, RenderedRules } from '../src/rules/types.ts';
import { jumpRuleSpec } from '../src/rules/syntax.ts';
import { median, since } from './lib/stats.ts';
import { largeKubeProxyTable } from './lib/kubeProxyTable.ts';

export interface RuleSyncResult {
  rules1k: number;
  rules10k: number;
  /** Render + iptables.sync of 1,000 / 10,000 services into a table without our chains (median of runs). */
  full1kMs: number;
  full10kMs: number;
  /** One service's listen port changed, 10,000 in place: render + sync (median). */
  incremental10kMs: number;
  /** The first quiet sync after those changes, which deletes the rules they overrode. */
  tidy10kMs: number;
  /** Nothing changed, 10,000 in place: the periodic resync (median). */
  noop10kMs: number;
  /** Nothing changed, 10,000 in place: the periodic full sync (reads our chains back; median). */
  periodicFull10kMs: number;
  /** The same beside a large kube-proxy table, and iptables-save of that table for scale. */
  largeKubeProxy: { services: number; rules: number; periodicFull10kMs: number; wholeTableReadMs: number };
  /** Naive: one iptables exec per rule. */
  baseline: { rules: number; totalMs: number; perRuleMs: number }[];
  /** Baseline per-rule cost (at 1,000 rules) × rule count, over the measured full sync. */
  speedup1k: number;
  speedup10k: number;
}

/** N proxied TCP service ports with distinct ClusterIPs (10.97.0.0/16). */
export function desiredServices(n: number, listenBase = 20000): DesiredRules {
  const proxied: ProxiedPortRule[] = [];
  for (let i = 0; i < n; i++) {
    proxied.push({
      portName: `bench/svc-${i}:http`,
      clusterIP: `10.97.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      protocol: 'TCP',
      port: 80,
      listenPort: listenBase + i,
    });
  }
  return { layout: 'portals', family: 'ipv4', proxied, ignored: [] };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return since(t0);
}

/** A shell script doing what a naive agent does: create chains, insert jumps, then one exec per rule. */
export function naiveScript(rendered: RenderedRules, ruleCount: number): string {
  const lines = ['set -e'];
  for (const chain of rendered.chains) lines.push(`iptables -w -t nat -N ${chain}`);
  for (const j of rendered.jumps) lines.push(`iptables -w -t nat -I ${j.chain} 1 ${jumpRuleSpec(j)}`);
  for (const rule of rendered.rules.slice(0, ruleCount)) lines.push(`iptables -w -t nat ${rule}`);
  return `${lines.join('\n')}\n`;
}

/** Runs measureRuleSync in a child process inside `ns`; its log lines pass through `log`. */
export async function benchRuleSync(ns: string, tmpDir: string, log: (msg: string) => void): Promise<RuleSyncResult> {
  const child = spawn('ip', ['netns', 'exec', ns, nodeBin, join(import.meta.dirname, 'ruleSyncChild.ts'), tmpDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => {
    err += d;
    const lines = err.split('\n');
    err = lines.pop() ?? '';
    for (const line of lines) log(line);
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`rule sync child exited with ${code}: ${err.slice(-500)}`);
  return JSON.parse(out) as RuleSyncResult;
}

/** The measurements, run from inside the namespace. */
export async function measureRuleSync(tmpDir: string, log: (msg: string) => void): Promise<RuleSyncResult> {
  const runner = spawnRunner;
  const ipt = new Iptables({ runner });
  const restore = await runner('iptables-restore', [], readFileSync(kubeProxyRulesFile, 'utf8'));
  if (restore.code !== 0) throw new Error(`loading kube-proxy rules: ${restore.stderr}`);

  const fullSync = async (n: number, runs: number): Promise<{ ms: number; rules: number }> => {
    const times: number[] = [];
    let rules = 0;
    for (let i = 0; i < runs; i++) {
      await ipt.cleanup();
      // The kernel frees the removed rules in the background; let that finish outside the timing.
      await new Promise((r) => setTimeout(r, 300));
      times.push(
        await timed(async () => {
          const rendered = renderRules(desiredServices(n));
          rules = rendered.rules.length;
          await ipt.sync(rendered);
        }),
      );
    }
    log(`    ${n} services: ${times.map((t) => t.toFixed(1)).join(', ')} ms`);
    return { ms: median(times), rules };
  };

  // One unmeasured round first: this process is fresh, and the agent's periodic full syncs run warm.
  await fullSync(1000, 1);
  const full1k = await fullSync(1000, 5);
  log(`  full sync 1k: ${full1k.ms.toFixed(1)} ms (${full1k.rules} rules)`);
  const full10k = await fullSync(10_000, 3);
  log(`  full sync 10k: ${full10k.ms.toFixed(1)} ms (${full10k.rules} rules)`);

  // 10,000 in place now; change one service's listen port each time. Both loops must measure
  // the incremental path, not a fallback to a full sync.
  const incrementalOnly = () => {
    if (ipt.lastSyncMode?.mode !== 'incremental') throw new Error(`rule sync fell back to a full sync: ${ipt.lastSyncMode?.reason}`);
  };
  const desiredWith4321 = (listenPort: number) => {
    const desired = desiredServices(10_000);
    desired.proxied[4321]!.listenPort = listenPort;
    return desired;
  };
  const incremental: number[] = [];
  for (let i = 0; i < 5; i++) {
    // The test's input is built outside the timing: render + sync are measured, as the agent runs them.
    const desired = desiredWith4321(40000 + i);
    incremental.push(await timed(async () => ipt.sync(renderRules(desired))));
    incrementalOnly();
  }
  // The changes above left overridden rules behind; the first quiet sync deletes them.
  const quiet = desiredWith4321(40004);
  const tidy = await timed(async () => ipt.sync(renderRules(quiet)));
  incrementalOnly();
  const noop: number[] = [];
  for (let i = 0; i < 3; i++) {
    noop.push(await timed(async () => ipt.sync(renderRules(quiet))));
    incrementalOnly();
  }
  log(`  incremental at 10k: ${median(incremental).toFixed(1)} ms, then tidy-up ${tidy.toFixed(1)} ms, no-op resync ${median(noop).toFixed(1)} ms`);

  // The periodic full sync (iptables.fullSyncPeriod) with nothing to change: a second instance
  // that makes every sync full, past its first (which reads the whole table).
  const periodicFull = async (): Promise<number> => {
    const full = new Iptables({ runner, fullSyncPeriodMs: 0 });
    const desired = renderRules(quiet);
    await full.sync(desired);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) times.push(await timed(async () => full.sync(renderRules(quiet))));
    return median(times);
  };
  const periodicFull10kMs = await periodicFull();
  // kube-proxy's own table grows with the cluster's services, and a full sync must not pay for it.
  const kpServices = 5000;
  const kpTable = largeKubeProxyTable(kpServices);
  const loaded = await runner('iptables-restore', [], kpTable);
  if (loaded.code !== 0) throw new Error(`loading the large kube-proxy table: ${loaded.stderr}`);
  const bigPeriodic = await periodicFull();
  const wholeTableReadMs = median([await timed(() => ipt.readNat()), await timed(() => ipt.readNat()), await timed(() => ipt.readNat())]);
  const largeKubeProxy = { services: kpServices, rules: kpTable.split('\n').filter((l) => l.startsWith('-A ')).length, periodicFull10kMs: bigPeriodic, wholeTableReadMs };
  log(`  periodic full sync at 10k: ${periodicFull10kMs.toFixed(1)} ms; beside ${kpServices} kube-proxy services (${largeKubeProxy.rules} rules): ${bigPeriodic.toFixed(1)} ms (iptables-save alone ${wholeTableReadMs.toFixed(0)} ms)`);
  // Back to the small table for the baseline (iptables-restore without --noflush replaces the table).
  const reloaded = await runner('iptables-restore', [], readFileSync(kubeProxyRulesFile, 'utf8'));
  if (reloaded.code !== 0) throw new Error(`reloading kube-proxy rules: ${reloaded.stderr}`);

  const baseline: RuleSyncResult['baseline'] = [];
  const rendered1k = renderRules(desiredServices(1000));
  for (const count of [1000, 2000]) {
    await ipt.cleanup();
    const script = join(tmpDir, `naive-${count}.sh`);
    await writeFile(script, naiveScript(rendered1k, count));
    const totalMs = await timed(async () => {
      const r = await spawnRunner('sh', [script]);
      if (r.code !== 0) throw new Error(`naive per-rule apply failed: ${r.stderr.slice(-300)}`);
    });
    const rules = Math.min(count, rendered1k.rules.length);
    baseline.push({ rules, totalMs, perRuleMs: totalMs / rules });
    log(`  naive per-rule exec: ${rules} rules in ${totalMs.toFixed(0)} ms (${(totalMs / rules).toFixed(2)} ms/rule)`);
  }
  await ipt.cleanup();
  const perRule = baseline[0]!.perRuleMs;
  return {
    rules1k: full1k.rules,
    rules10k: full10k.rules,
    full1kMs: full1k.ms,
    full10kMs: full10k.ms,
    incremental10kMs: median(incremental),
    tidy10kMs: tidy,
    noop10kMs: median(noop),
    periodicFull10kMs,
    largeKubeProxy,
    baseline,
    speedup1k: (perRule * full1k.rules) / full1k.ms,
    speedup10k: (perRule * full10k.rules) / full10k.ms,
  };
}

/** Creates the rule-sync namespace; the caller deletes it (deleteNamespaceSync is safe at exit). */
export function addNamespaceSync(ns: string): void {
  execFileSync('ip', ['netns', 'add', ns], { stdio: 'ignore' });
}

export function deleteNamespaceSync(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}
