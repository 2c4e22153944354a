// A throw-away "Kubernetes node" built from network namespaces, for e2e tests, the demo and
// benchmarks. Nothing in the root namespace changes: every veth is created directly inside its
// namespaces, every iptables command runs in the node namespace.
//
//   router ns  192.168.77.1 ──veth── 192.168.77.2  node ns  (kube-proxy rules, agent, apiserver :6443)
//                                     10.244.7.1 ──veth── 10.244.7.2  pod-a
//                                     10.244.8.1 ──veth── 10.244.8.2  pod-b
//
// The router only gives the node a default route: without one, connect() to a ClusterIP fails
// with ENETUNREACH before nat OUTPUT gets to DNAT it. The router forwards nothing.
import { spawn as spawnChild, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot: string = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
/** Node 24 (runs .ts directly); the system node is older. */
export const nodeBin: string = join(repoRoot, 'node_modules', '.bin', 'node');
export const podServerScript: string = join(repoRoot, 'test', 'support', 'podServer.ts');
export const udpProbeScript: string = join(repoRoot, 'test', 'support', 'udpProbe.ts');
export const kubeProxyRulesFile: string = join(repoRoot, 'test', 'fixtures', 'kube-proxy-nat.rules');

export const NODE_IP = '192.168.77.2';
export const ROUTER_IP = '192.168.77.1';
export const APISERVER_PORT = 6443;
export const DEFAULT_POD_TCP_PORTS: readonly number[] = [8080, 8082, 3000, 9153];
export const DEFAULT_POD_UDP_PORTS: readonly number[] = [9999];
export const DEFAULT_DNS_PORT = 53;

export const REQUIRED_COMMANDS: readonly string[] = ['ip', 'iptables', 'iptables-save', 'iptables-restore', 'curl', 'dig', 'nc'];

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long; default 10 s. code is then 124 (like timeout(1)). */
  timeoutMs?: number;
  /** Written to the command's stdin (which is then closed). */
  input?: string | Buffer;
}

export interface ClusterPod {
  /** "pod-a" / "pod-b"; also the body every server of the pod answers with. */
  name: string;
  /** Network namespace name. */
  ns: string;
  ip: string;
  /** The node's address on this pod's veth (the pod's default gateway). */
  gateway: string;
  /** The A record the pod's DNS server answers every query with. */
  dnsAnswer: string;
}

export interface PodServerOptions {
  /** Body every listener answers with. */
  name: string;
  /** Address to bind; default 0.0.0.0. */
  host?: string;
  /** HTTP/1.1 ports. */
  tcpPorts?: readonly number[];
  /** UDP "reply with name" ports. */
  udpPorts?: readonly number[];
  /** DNS port (UDP + TCP); 0 or undefined: none. */
  dnsPort?: number;
  dnsAnswer?: string;
  /** Bounded wait for the "ready" line; default 10 s. */
  readyTimeoutMs?: number;
}

export interface ClusterOptions {
  /** Name prefix of namespaces and interfaces: [a-z0-9-], at most 11 characters. Default ep<pid%10000>-<3 hex>. */
  prefix?: string;
  /** HTTP ports every pod serves; default 8080, 8082, 3000, 9153. */
  podTcpPorts?: readonly number[];
  /** UDP ports every pod serves; default 9999. */
  podUdpPorts?: readonly number[];
  /** DNS port of every pod (UDP + TCP); default 53, 0 for none. */
  dnsPort?: number;
  /** Start the pod and apiserver servers; default true. */
  startServers?: boolean;
  /** Clean up on process exit / SIGINT / SIGTERM if destroy() was not reached; default true. */
  cleanupOnExit?: boolean;
  /** Bounded wait for each server's "ready" line; default 10 s. */
  readyTimeoutMs?: number;
}

export interface NatRule {
  chain: string;
  /** The rule as iptables-save prints it, without the counters and without "-A CHAIN". */
  rule: string;
  /** Jump / goto target, if any. */
  target: string | undefined;
  packets: number;
  bytes: number;
}

export interface SpawnOptions {
  /** stdout/stderr handling (stdin is always ignored); default 'pipe'. */
  stdio?: 'pipe' | 'inherit' | 'ignore';
  /** Give the process a writable stdin (default: none). */
  stdin?: boolean;
  /** Extra environment variables, merged over the test process's environment. */
  env?: Record<string, string>;
}

export interface DigOptions {
  tcp?: boolean;
  port?: number;
  timeoutMs?: number;
}

export interface Cluster {
  prefix: string;
  nodeNs: string;
  routerNs: string;
  nodeIp: string;
  routerIp: string;
  /** pod-a (10.244.7.2) then pod-b (10.244.8.2). */
  pods: ClusterPod[];
  /** Look a pod up by name ("pod-a"); throws if unknown. */
  pod(name: string): ClusterPod;
  /** Runs `ip netns exec ns cmd ...args`; never throws for a non-zero exit. */
  exec(ns: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Like exec but throws (with stderr) unless the exit code is 0; resolves to stdout. */
  run(ns: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<string>;
  /**
   * Starts a long-running process in ns (`ip netns exec` execs it, so child.pid is the command
   * itself); tracked and killed by PID on destroy(). stdio defaults to 'pipe' for stdout/stderr:
   * read them (or pass 'ignore'/'inherit'), a full pipe blocks the process.
   */
  spawn(ns: string, cmd: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Starts another podServer.ts in ns (e.g. for a new service's target port); resolves once it is ready. */
  startServer(ns: string, opts: PodServerOptions): Promise<ChildProcess>;
  /** iptables-restore into the node namespace's nat table (replaces only that table). Default: the kube-proxy fixture. */
  loadKubeProxyRules(text?: string): Promise<void>;
  /** `iptables-save -t nat` of the node namespace; with counters if asked. */
  iptablesSave(opts?: { counters?: boolean }): Promise<string>;
  /** Every rule of the node namespace's nat table with its counters. */
  natRules(): Promise<NatRule[]>;
  /**
   * Packets that entered CHAIN: the sum of the packet counters of the rules that jump (or goto) to
   * it. Nat rules see only a connection's first packet, so for KUBE-SVC-xxx this counts new
   * connections/flows that kube-proxy handled. Throws if nothing jumps to the chain.
   */
  chainPackets(chain: string): Promise<number>;
  /** GET url with curl from ns; resolves to the body, throws on connection failure or HTTP error. */
  curl(fromNs: string, url: string, opts?: { timeoutMs?: number; extraArgs?: readonly string[] }): Promise<string>;
  /** `dig @server name +short` from ns; resolves to the answer lines. */
  dig(fromNs: string, server: string, name: string, opts?: DigOptions): Promise<string[]>;
  /** Sends one UDP datagram from ns and resolves to the first reply; throws on timeout. */
  udp(fromNs: string, host: string, port: number, payload?: string, timeoutMs?: number): Promise<string>;
  /** PIDs of the tracked processes still running. */
  trackedPids(): number[];
  /** Kills tracked processes (SIGTERM, then SIGKILL), deletes the namespaces. Idempotent. */
  destroy(): Promise<void>;
}

/** Commands from REQUIRED_COMMANDS not found in PATH, plus "root" if not running as root. */
export function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root (uid 0)');
  const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter);
  for (const cmd of REQUIRED_COMMANDS) {
    const found = dirs.some((dir) => {
      try {
        accessSync(join(dir, cmd), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) missing.push(cmd);
  }
  try {
    accessSync(nodeBin, constants.X_OK);
  } catch {
    missing.push(nodeBin);
  }
  return missing;
}

/** Throws a clear error when the e2e environment is incomplete (tests must fail, not skip). */
export function requirePrivileges(): void {
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    throw new Error(`e2e cluster prerequisites missing: ${missing.join(', ')} (needs root and iproute2, iptables, curl, dnsutils, netcat)`);
  }
}

function defaultPrefix(): string {
  return `ep${process.pid % 10000}-${randomBytes(2).toString('hex').slice(0, 3)}`;
}

/** Process-wide list of clusters still alive, so one exit/signal handler can clean them all up. */
const liveClusters = new Set<() => void>();
let exitHandlersInstalled = false;

function onExit(): void {
  for (const cleanup of liveClusters) cleanup();
  liveClusters.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  onExit();
  removeExitHandlers();
  // Re-raise so the process dies with the usual status for the signal.
  process.kill(process.pid, signal);
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeExitHandlers(): void {
  if (!exitHandlersInstalled) return;
  exitHandlersInstalled = false;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/** Parses `iptables-save -c` output of one table. */
export function parseNatRules(saved: string): NatRule[] {
  const rules: NatRule[] = [];
  for (const line of saved.split('\n')) {
    const m = /^\[(\d+):(\d+)\] -A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const rule = m[4]!;
    const target = /(?:^| )-[jg] (\S+)/.exec(rule)?.[1];
    rules.push({ chain: m[3]!, rule, target, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return rules;
}

function waitForReady(child: ChildProcess, what: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onOut);
      child.stderr?.off('data', onErr);
      child.off('exit', onExitEarly);
      if (error) reject(error);
      else resolve();
    };
    const onOut = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.split('\n').includes('ready')) finish();
    };
    const onErr = (chunk: Buffer): void => {
      err += chunk.toString();
    };
    const onExitEarly = (code: number | null, signal: string | null): void =>
      finish(new Error(`${what} exited (code ${code}, signal ${signal}) before ready: ${err.trim()}`));
    const timer = setTimeout(() => finish(new Error(`${what} not ready within ${timeoutMs} ms: ${err.trim()}`)), timeoutMs);
    child.stdout?.on('data', onOut);
    child.stderr?.on('data', onErr);
    child.once('exit', onExitEarly);
  });
}

export async function createCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  requirePrivileges();
  const prefix = opts.prefix ?? defaultPrefix();
  // Interface names are "<prefix>-rt" etc. and must stay within IFNAMSIZ-1 = 15 characters.
  if (!/^[a-z0-9][a-z0-9-]{0,10}$/.test(prefix)) {
    throw new Error(`cluster prefix must match [a-z0-9][a-z0-9-]{0,10}: ${prefix}`);
  }
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  const nodeNs = `${prefix}-node`;
  const routerNs = `${prefix}-rtr`;
  const pods: ClusterPod[] = [
    { name: 'pod-a', ns: `${prefix}-pa`, ip: '10.244.7.2', gateway: '10.244.7.1', dnsAnswer: '10.0.0.7' },
    { name: 'pod-b', ns: `${prefix}-pb`, ip: '10.244.8.2', gateway: '10.244.8.1', dnsAnswer: '10.0.0.8' },
  ];

  const createdNs: string[] = [];
  const children = new Set<ChildProcess>();
  let destroyPromise: Promise<void> | undefined;

  // Synchronous last-resort cleanup for the exit handler (async work cannot run there).
  const cleanupSync = (): void => {
    for (const child of children) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const ns of createdNs.splice(0)) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // best effort
      }
    }
  };
  if (opts.cleanupOnExit !== false) {
    liveClusters.add(cleanupSync);
    installExitHandlers();
  }

  const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
    // A test runner's marker would make a spawned node program think it is a test file.
    const { NODE_TEST_CONTEXT: _ignored, ...env } = process.env;
    return { ...env, ...extra };
  };

  const exec = (ns: string, cmd: string, args: readonly string[] = [], execOpts: ExecOptions = {}): Promise<ExecResult> =>
    new Promise((resolve, reject) => {
      const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() });
      children.add(child);
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, execOpts.timeoutMs ?? 10_000);
      child.stdout.on('data', (c: Buffer) => stdout.push(c));
      child.stderr.on('data', (c: Buffer) => stderr.push(c));
      child.on('error', (err) => {
        clearTimeout(timer);
        children.delete(child);
        reject(err);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        const err = Buffer.concat(stderr).toString();
        resolve({
          code: timedOut ? 124 : (code ?? 1),
          stdout: Buffer.concat(stdout).toString(),
          stderr: timedOut ? `${err}timed out after ${execOpts.timeoutMs ?? 10_000} ms\n` : err,
        });
      });
      child.stdin.on('error', () => {}); // the command may exit without reading its input
      child.stdin.end(execOpts.input ?? '');
    });

  const run = async (ns: string, cmd: string, args: readonly string[] = [], execOpts: ExecOptions = {}): Promise<string> => {
    const res = await exec(ns, cmd, args, execOpts);
    if (res.code !== 0) {
      throw new Error(`[${ns}] ${cmd} ${args.join(' ')} → exit ${res.code}: ${res.stderr.trim() || res.stdout.trim()}`);
    }
    return res.stdout;
  };

  /** ip commands that run in the root namespace only to manage namespaces (`ip netns add/del`, `ip -n`). */
  const ip = (args: readonly string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawnChild('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip ${args.join(' ')} → exit ${code}: ${err.trim()}`))));
    });

  const spawn = (ns: string, cmd: string, args: readonly string[] = [], spawnOpts: SpawnOptions = {}): ChildProcess => {
    const out = spawnOpts.stdio ?? 'pipe';
    const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: [spawnOpts.stdin ? 'pipe' : 'ignore', out, out], env: childEnv(spawnOpts.env) });
    children.add(child);
    child.on('error', () => children.delete(child));
    child.on('exit', () => children.delete(child));
    return child;
  };

  const startServer = async (ns: string, server: PodServerOptions): Promise<ChildProcess> => {
    const args = [
      podServerScript,
      '--name', server.name,
      '--host', server.host ?? '0.0.0.0',
      '--tcp', (server.tcpPorts ?? []).join(','),
      '--udp', (server.udpPorts ?? []).join(','),
      '--dns', server.dnsPort ? String(server.dnsPort) : '',
      '--dns-answer', server.dnsAnswer ?? '10.0.0.7',
      '--tag', prefix,
    ];
    const child = spawn(ns, nodeBin, args);
    // Drain so a chatty server never blocks on a full pipe once ready.
    await waitForReady(child, `podServer ${server.name} in ${ns}`, server.readyTimeoutMs ?? readyTimeoutMs);
    child.stdout?.resume();
    child.stderr?.resume();
    return child;
  };

  const destroy = (): Promise<void> => {
    destroyPromise ??= (async () => {
      liveClusters.delete(cleanupSync);
      if (liveClusters.size === 0) removeExitHandlers();
      const running = [...children].filter((c) => c.pid !== undefined && c.exitCode === null && c.signalCode === null);
      for (const child of running) {
        try {
          process.kill(child.pid!, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      const deadline = Date.now() + 1500;
      while (running.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const child of running) {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(child.pid!, 'SIGKILL');
          } catch {
            // already gone
          }
          await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
        }
      }
      children.clear();
      const errors: string[] = [];
      for (const ns of createdNs.splice(0).reverse()) {
        try {
          await ip(['netns', 'del', ns]);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (errors.length > 0) throw new Error(`cluster ${prefix} cleanup: ${errors.join('; ')}`);
    })();
    return destroyPromise;
  };

  const iptablesSave = (saveOpts: { counters?: boolean } = {}): Promise<string> =>
    run(nodeNs, 'iptables-save', saveOpts.counters ? ['-c', '-t', 'nat'] : ['-t', 'nat']);
  const natRules = async (): Promise<NatRule[]> => parseNatRules(await iptablesSave({ counters: true }));

  const cluster: Cluster = {
    prefix,
    nodeNs,
    routerNs,
    nodeIp: NODE_IP,
    routerIp: ROUTER_IP,
    pods,
    pod(name) {
      const pod = pods.find((p) => p.name === name);
      if (!pod) throw new Error(`no pod ${name} in cluster ${prefix}`);
      return pod;
    },
    exec,
    run,
    spawn,
    startServer,
    async loadKubeProxyRules(text) {
      await run(nodeNs, 'iptables-restore', [], { input: text ?? readFileSync(kubeProxyRulesFile) });
    },
    iptablesSave,
    natRules,
    async chainPackets(chain) {
      const jumps = (await natRules()).filter((r) => r.target === chain);
      if (jumps.length === 0) throw new Error(`no rule in ${nodeNs} nat jumps to ${chain}`);
      return jumps.reduce((sum, r) => sum + r.packets, 0);
    },
    async curl(fromNs, url, curlOpts = {}) {
      const timeoutMs = curlOpts.timeoutMs ?? 5000;
      return run(fromNs, 'curl', ['-sS', '--fail', '--noproxy', '*', '--max-time', String(timeoutMs / 1000), ...(curlOpts.extraArgs ?? []), url], {
        timeoutMs: timeoutMs + 2000,
      });
    },
    async dig(fromNs, server, name, digOpts = {}) {
      const timeoutS = Math.max(1, Math.ceil((digOpts.timeoutMs ?? 2000) / 1000));
      const args = [`@${server}`, name, 'A', '+short', `+time=${timeoutS}`, '+tries=1'];
      if (digOpts.port) args.push('-p', String(digOpts.port));
      if (digOpts.tcp) args.push('+tcp');
      const out = await run(fromNs, 'dig', args, { timeoutMs: timeoutS * 1000 + 3000 });
      const lines = out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      // dig +short reports failures as ";; ..." comment lines with exit status 9.
      if (lines.some((l) => l.startsWith(';;'))) throw new Error(`dig @${server} ${name} from ${fromNs}: ${lines.join(' ')}`);
      return lines;
    },
    async udp(fromNs, host, port, payload = 'ping', timeoutMs = 2000) {
      return run(fromNs, nodeBin, [udpProbeScript, host, String(port), payload, String(timeoutMs)], { timeoutMs: timeoutMs + 5000 });
    },
    trackedPids() {
      return [...children].filter((c) => c.exitCode === null && c.signalCode === null && c.pid !== undefined).map((c) => c.pid!);
    },
    destroy,
  };

  try {
    for (const ns of [nodeNs, routerNs, ...pods.map((p) => p.ns)]) {
      await ip(['netns', 'add', ns]);
      createdNs.push(ns);
      // Before any link exists, so every interface inherits rp_filter=0 from "default":
      // replies to DNATed/masqueraded traffic arrive on interfaces strict rp_filter would reject.
      await run(ns, 'sysctl', ['-q', '-w', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await run(nodeNs, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.tcp_tw_reuse=1']);

    // Created directly in their namespaces: no interface ever appears in the root namespace.
    const uplink = `${prefix}-rt`;
    await ip(['-n', nodeNs, 'link', 'add', uplink, 'type', 'veth', 'peer', 'name', `${prefix}-nd`, 'netns', routerNs]);
    await ip(['-n', nodeNs, 'addr', 'add', `${NODE_IP}/24`, 'dev', uplink]);
    await ip(['-n', nodeNs, 'link', 'set', uplink, 'up']);
    await ip(['-n', routerNs, 'addr', 'add', `${ROUTER_IP}/24`, 'dev', `${prefix}-nd`]);
    await ip(['-n', routerNs, 'link', 'set', `${prefix}-nd`, 'up']);
    await ip(['-n', nodeNs, 'route', 'add', 'default', 'via', ROUTER_IP]);

    for (const pod of pods) {
      const nodeEnd = `${prefix}-${pod.name.slice(-1)}`; // <prefix>-a, <prefix>-b
      await ip(['-n', nodeNs, 'link', 'add', nodeEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns]);
      await ip(['-n', nodeNs, 'addr', 'add', `${pod.gateway}/24`, 'dev', nodeEnd]);
      await ip(['-n', nodeNs, 'link', 'set', nodeEnd, 'up']);
      await ip(['-n', pod.ns, 'addr', 'add', `${pod.ip}/24`, 'dev', 'eth0']);
      await ip(['-n', pod.ns, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', pod.ns, 'route', 'add', 'default', 'via', pod.gateway]);
    }

    if (opts.startServers !== false) {
      const dnsPort = opts.dnsPort ?? DEFAULT_DNS_PORT;
      await Promise.all([
        ...pods.map((pod) =>
          startServer(pod.ns, {
            name: pod.name,
            tcpPorts: opts.podTcpPorts ?? DEFAULT_POD_TCP_PORTS,
            udpPorts: opts.podUdpPorts ?? DEFAULT_POD_UDP_PORTS,
            dnsPort,
            dnsAnswer: pod.dnsAnswer,
          }),
        ),
        // default/kubernetes endpoint: the node itself.
        startServer(nodeNs, { name: 'apiserver', host: NODE_IP, tcpPorts: [APISERVER_PORT] }),
      ]);
    }
  } catch (err) {
    await destroy().catch(() => {});
    throw err;
  }
  return cluster;
}
