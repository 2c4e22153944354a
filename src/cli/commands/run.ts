// `edgeproxy run`: wires the agent from config and flags, serves until SIGTERM/SIGINT, then
// removes every rule it added before exiting.
import type { Server } from 'node:http';
import { availableParallelism } from 'node:os';
import { loadConfig, ConfigError } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { createLogger } from '../../telemetry/logger.ts';
import { createMetrics, registerSourceMetrics } from '../../telemetry/metrics.ts';
import { startTelemetryServer } from '../../telemetry/server.ts';
import { StateStore } from '../../state/store.ts';
import { ManifestDirectorySource } from '../../sources/manifests/directory.ts';
// The Kubernetes client is imported only when that source is on (see pickKubeconfig.ts).
import type { KubernetesSource } from '../../sources/kubernetes/source.ts';
import { pickKubeconfig } from '../../sources/kubernetes/pickKubeconfig.ts';
import { ProxyManager } from '../../proxy/manager.ts';
import { Iptables } from '../../netfilter/iptables.ts';
import { resolveBackend } from '../../netfilter/backend.ts';
import { spawnRunner } from '../../netfilter/runner.ts';
import { Conntrack } from '../../netfilter/conntrack.ts';
import { Agent } from '../../agent/agent.ts';
import { holdHeapGrowth, youngGenerationSizedByOperator } from '../../agent/heap.ts';

export interface RunOptions {
  manifests?: string;
  config?: string;
  logLevel?: string;
  kubeconfig?: string;
  nodeName?: string;
}

export interface RunConfig extends Config {
  manifests?: string;
  /** Set when the Kubernetes API source is on; kubeconfig undefined = in-cluster service account. */
  kubernetesSource?: { kubeconfig: string | undefined };
  /** EdgeMesh keys that were ignored, to log once the logger exists. */
  warnings: string[];
}

/**
 * Which sources `run` uses: the manifest directory (--manifests or "manifests"), the Kubernetes API
 * (--kubeconfig, or kubernetes.enabled with kubernetes.kubeconfig, then $KUBECONFIG, then in-cluster),
 * or both. env is passed in: nothing reads the environment at import time.
 */
export async function resolveRunConfig(opts: { manifests?: string; config?: string; kubeconfig?: string; nodeName?: string }, env: NodeJS.ProcessEnv): Promise<RunConfig> {
  const warnings: string[] = [];
  const config = await loadConfig(opts.config, warnings);
  const manifests = opts.manifests ?? config.manifests;
  const kubernetesOn = opts.kubeconfig !== undefined || config.kubernetes.enabled;
  if (!manifests && !kubernetesOn) {
    throw new ConfigError('no service source: pass --manifests DIR and/or --kubeconfig FILE, or set "manifests" or "kubernetes.enabled" in the config file');
  }
  return {
    ...config,
    ...(opts.nodeName ? { nodeName: opts.nodeName } : {}),
    ...(manifests ? { manifests } : {}),
    ...(kubernetesOn ? { kubernetesSource: { kubeconfig: pickKubeconfig(opts.kubeconfig, config.kubernetes.kubeconfig, env['KUBECONFIG']) } } : {}),
    warnings,
  };
}

export async function resolveConfig(opts: { manifests?: string; config?: string }): Promise<Config & { manifests: string }> {
  const config = await loadConfig(opts.config);
  const manifests = opts.manifests ?? config.manifests;
  if (!manifests) throw new ConfigError('no service source: pass --manifests DIR or set "manifests" in the config file');
  return { ...config, manifests };
}

export async function runCommand(opts: RunOptions): Promise<number> {
  const config = await resolveRunConfig(opts, process.env);
  const logger = createLogger(opts.logLevel ?? config.log.level);
  for (const warning of config.warnings) logger.warn(warning);
  // A young generation that stays small, and V8 favouring size until the first sync (agent/heap.ts).
  const releaseHeap = holdHeapGrowth({ operatorSized: youngGenerationSizedByOperator(process.execArgv, process.env['NODE_OPTIONS']) });
  const store = new StateStore();
  const manifestSource = config.manifests ? new ManifestDirectorySource({ dir: config.manifests, sink: store, logger }) : undefined;
  const kubernetesSource: KubernetesSource | undefined = config.kubernetesSource
    ? new (await import('../../sources/kubernetes/source.ts')).KubernetesSource({
        kubeConfig: (await import('../../sources/kubernetes/kubeconfig.ts')).loadKubeConfig(config.kubernetesSource.kubeconfig),
        sink: store,
        logger,
        watchTimeoutMs: config.kubernetes.watchTimeout,
        watchdogMs: config.kubernetes.watchdog,
        resyncPeriodMs: config.kubernetes.resyncPeriod,
        discoveryPeriodMs: config.kubernetes.discoveryPeriod,
      })
    : undefined;
  // Both feed one store; the first sync waits for every source's initial load.
  const source = {
    start: async () => void (await Promise.all([manifestSource?.start(), kubernetesSource?.start()])),
    stop: async () => void (await Promise.all([manifestSource?.stop(), kubernetesSource?.stop()])),
  };
  const proxy = new ProxyManager({
    logger,
    host: config.proxy.bindAddress,
    connectTimeoutMs: config.proxy.connectTimeout,
    tcp: {
      maxDialAttempts: config.proxy.maxDialAttempts,
      dialBackoffMs: config.proxy.dialBackoff,
      ejectionTimeMs: config.proxy.ejectionTime,
      maxEjectionTimeMs: config.proxy.maxEjectionTime,
      idleTimeoutMs: config.proxy.tcpIdleTimeout,
      removedEndpointGracePeriodMs: config.proxy.removedEndpointGracePeriod,
      maxConnections: config.proxy.maxConnectionsPerPort,
    },
    maxConnections: config.proxy.maxConnections,
    workers: config.proxy.workers === 'auto' ? availableParallelism() : config.proxy.workers,
    ...(config.proxy.portRange !== undefined && { portRange: config.proxy.portRange }),
    udp: { idleTimeoutMs: config.udp.idleTimeout, maxFlowsPerPort: config.udp.maxFlowsPerPort },
  });
  // kube-proxy's backend (legacy or nf_tables), whatever this image's `iptables` points at.
  const backend = await resolveBackend(config.iptables.backend, spawnRunner);
  logger.info({ backend: backend.mode, reason: backend.reason }, 'iptables backend');
  const iptables = new Iptables({ runner: spawnRunner, binaries: backend.binaries, fullSyncPeriodMs: config.iptables.fullSyncPeriod, logger });
  const metrics = createMetrics(() => proxy.stats(), { workerRestarts: () => proxy.workerRestarts, perServicePort: config.metricsPerServicePort });
  const sourceStatus = () => kubernetesSource?.status() ?? [];
  registerSourceMetrics(metrics.registry, sourceStatus);
  const conntrack = new Conntrack({ runner: spawnRunner, logger });
  const agent = new Agent({ config, store, proxy, iptables, logger, metrics, sourcesReady: () => source.start(), sourceStatus, conntrack, onInitialSync: releaseHeap });

  let server: Server | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without cleanup (run `edgeproxy cleanup`)');
      process.exit(1);
    }
    logger.info({ signal }, 'stopping: removing rules');
    stopping = (async () => {
      await source.stop();
      server?.close();
      await agent.stop();
    })();
  };
  const done = new Promise<number>((resolve) => {
    const finish = (signal: string) => {
      stop(signal);
      stopping!.then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'cleanup failed: run `edgeproxy cleanup`');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => finish('SIGTERM'));
    process.on('SIGINT', () => finish('SIGINT'));
  });

  logger.info({ manifests: config.manifests, kubernetes: config.kubernetesSource ? (config.kubernetesSource.kubeconfig ?? 'in-cluster') : false, layout: config.layout, serviceFilterMode: config.serviceFilterMode }, 'edgeproxy starting');
  if (config.metricsBindAddress) {
    const sep = config.metricsBindAddress.lastIndexOf(':');
    server = await startTelemetryServer({
      host: config.metricsBindAddress.slice(0, sep),
      port: Number(config.metricsBindAddress.slice(sep + 1)),
      scrape: metrics.scrape,
      contentType: metrics.contentType,
      health: agent,
      beforeMetrics: () => proxy.refreshStats(),
    });
    logger.info({ address: config.metricsBindAddress }, 'serving /metrics, /healthz, /readyz');
  }
  try {
    await agent.start();
  } catch (err) {
    // Nothing was programmed yet (sources load before the first sync): just release what is open.
    server?.close();
    await source.stop();
    await proxy.close();
    throw err;
  }
  return done;
}
