// Runs the real agent (bin/edgeproxy.js) inside a cluster's node namespace, collects its JSON
// logs, and reads its metrics — for e2e tests and the demo.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, cp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { splitRuleArgs } from '../../src/netfilter/args.ts';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { createCluster, nodeBin, repoRoot, kubeProxyRulesFile, requirePrivileges } from './cluster.ts';
import type { Cluster } from './cluster.ts';
import { readFileSync } from 'node:fs';

export const edgeproxyBin = join(repoRoot, 'bin', 'edgeproxy.js');
export const METRICS_ADDRESS = '127.0.0.1:10260';

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface RunningAgent {
  process: ChildProcess;
  logs: LogLine[];
  /** stderr text, for failure messages. */
  stderr: () => string;
  waitForLog(pred: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Parsed /metrics samples: "name{labels}" → value. */
  metrics(): Promise<Map<string, number>>;
  /** Sends the signal and waits for exit; resolves the exit code (or signal name). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

/** A temp dir with a copy of examples/manifests, for tests that edit manifests. */
export async function copyExampleManifests(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-manifests-'));
  await cp(join(repoRoot, 'examples', 'manifests'), dir, { recursive: true });
  return dir;
}

export async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-config-'));
  const file = join(dir, 'config.yaml');
  await writeFile(file, stringify({ metricsBindAddress: METRICS_ADDRESS, iptables: { syncPeriod: '1s', minSyncPeriod: '100ms' }, ...config }));
  return file;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Runs `edgeproxy <args>` once in the node namespace. */
export function edgeproxy(cluster: Cluster, args: string[], timeoutMs = 15_000) {
  return cluster.exec(cluster.nodeNs, nodeBin, [edgeproxyBin, ...args], { timeoutMs });
}

export async function startAgent(
  cluster: Cluster,
  opts: { manifests: string; config: string; waitReady?: boolean; nodeFlags?: readonly string[]; args?: readonly string[] },
): Promise<RunningAgent> {
  const child = cluster.spawn(cluster.nodeNs, nodeBin, [...(opts.nodeFlags ?? []), edgeproxyBin, 'run', '--manifests', opts.manifests, '--config', opts.config, '--log-level', 'debug', ...(opts.args ?? [])]);
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ msg: line });
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));

  const agent: RunningAgent = {
    process: child,
    logs,
    stderr: () => stderr,
    waitForLog(pred, timeoutMs = 10_000, what = 'log line') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(pred);
          if (found) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; agent stderr:\n${stderr}\nlast logs:\n${logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
        void exited.then(() => {
          if (waiters.has(check)) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`agent exited while waiting for ${what}; stderr:\n${stderr}\nlast logs:\n${logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
          }
        });
      });
    },
    async metrics() {
      const text = await cluster.run(cluster.nodeNs, 'curl', ['-sS', '--fail', `http://${METRICS_ADDRESS}/metrics`]);
      return parseMetrics(text);
    },
    async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
      return Promise.race([exited, timeout]);
    },
  };
  if (opts.waitReady ?? true) await agent.waitForLog((l) => l.msg === 'initial sync done', 15_000, 'initial sync');
  return agent;
}

export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sep = line.lastIndexOf(' ');
    out.set(line.slice(0, sep), Number(line.slice(sep + 1)));
  }
  return out;
}

/** The value of one metric sample for a service port, 0 when absent. */
export function portMetric(metrics: Map<string, number>, name: string, servicePort: string, protocol = 'TCP'): number {
  return metrics.get(`${name}{service_port="${servicePort}",protocol="${protocol}"}`) ?? 0;
}

/** kube-proxy's restore payload and its PREROUTING/OUTPUT/POSTROUTING jumps, from the full-table fixture. */
export function kubeProxyPayloadAndJumps(): { payload: string; jumps: string[] } {
  const lines = readFileSync(kubeProxyRulesFile, 'utf8').split('\n');
  const builtin = /^(:|-A )(PREROUTING|INPUT|OUTPUT|POSTROUTING)\b/;
  const payload = lines.filter((l) => l && !l.startsWith('#') && !l.startsWith('*') && l !== 'COMMIT' && !builtin.test(l));
  const jumps = lines.filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING) /.test(l));
  return { payload: ['*nat', ...payload, 'COMMIT', ''].join('\n'), jumps };
}

/**
 * Does what kube-proxy does when it starts on a node where the agent already runs: restores its
 * own chains with --noflush and, for each missing jump, `iptables -I <chain>` (position 1).
 */
export async function startKubeProxyAfterAgent(cluster: Cluster): Promise<void> {
  const { payload, jumps } = kubeProxyPayloadAndJumps();
  await cluster.run(cluster.nodeNs, 'iptables-restore', ['--noflush'], { input: payload });
  for (const jump of jumps) {
    const args = splitRuleArgs(jump.replace(/^-A /, ''));
    await cluster.run(cluster.nodeNs, 'iptables', ['-t', 'nat', '-I', ...args]);
  }
}

/** Our chains and jumps in an iptables-save text. */
export function ourRules(saved: string): string[] {
  return saved.split('\n').filter((l) => /KUBE-PORTALS|EDGE-MESH/.test(l));
}

/** kube-proxy's part of an iptables-save text (without counters, comments and our lines). */
export function kubeProxyRules(saved: string): string[] {
  return saved.split('\n').filter((l) => (l.startsWith('-A') || l.startsWith(':')) && !/KUBE-PORTALS|EDGE-MESH/.test(l)).map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

export interface AgentCluster {
  cluster: Cluster;
  /** A private copy of examples/manifests, free to edit. */
  manifests: string;
  configFile: string;
  /** Set when started (by default, or later with startAgent). */
  agent?: RunningAgent;
}

/**
 * The usual e2e set-up: a cluster, kube-proxy's rules, a manifests copy, a config, the agent;
 * everything is torn down when the test ends, whether it passed or not.
 */
export async function setupAgentCluster(
  t: { after(fn: () => Promise<void>): void },
  opts: { config?: Record<string, unknown>; kubeProxyFirst?: boolean; start?: boolean } = {},
): Promise<AgentCluster> {
  requirePrivileges();
  const cluster = await createCluster();
  const env: AgentCluster = { cluster, manifests: '', configFile: '' };
  t.after(async () => {
    await env.agent?.stop('SIGKILL');
    await cluster.destroy();
    if (env.manifests) await removeDir(env.manifests);
    if (env.configFile) await removeDir(dirname(env.configFile));
  });
  env.manifests = await copyExampleManifests();
  env.configFile = await writeConfig(opts.config ?? {});
  if (opts.kubeProxyFirst ?? true) await cluster.loadKubeProxyRules();
  if (opts.start ?? true) env.agent = await startAgent(cluster, { manifests: env.manifests, config: env.configFile });
  return env;
}

/**
 * SIGTERM and check what a clean stop leaves: exit 0, none of our chains or jumps, kube-proxy's
 * rules exactly as `kubeProxyBefore`, and `url` answered again (by kube-proxy) from `fromNs`.
 */
export async function stopAndCheckClean(cluster: Cluster, agent: RunningAgent, kubeProxyBefore: string[], fromNs: string, url: string): Promise<void> {
  const code = await agent.stop('SIGTERM');
  assert.equal(code, 0, agent.stderr());
  const saved = await cluster.iptablesSave();
  assert.deepEqual(ourRules(saved), []);
  assert.deepEqual(kubeProxyRules(saved), kubeProxyBefore);
  assert.match(await cluster.curl(fromNs, url), /^pod-[ab]$/);
}
