// `edgeproxy run`: wires the agent from config and flags, serves until SIGTERM/SIGINT, then
// removes every rule it added before exiting.
import type { Server } from 'node:http';
import { loadConfig, ConfigError } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { createLogger } from '../../telemetry/logger.ts';
import { createMetrics } from '../../telemetry/metrics.ts';
import { startTelemetryServer } from '../../telemetry/server.ts';
import { StateStore } from '../../state/store.ts';
import { ManifestDirectorySource } from '../../sources/manifests/directory.ts';
import { ProxyManager } from '../../proxy/manager.ts';
import { Iptables } from '../../netfilter/iptables.ts';
import { spawnRunner } from '../../netfilter/runner.ts';
import { Agent } from '../../agent/agent.ts';

export interface RunOptions {
  manifests?: string;
  config?: string;
  logLevel?: string;
}

export async function resolveConfig(opts: { manifests?: string; config?: string }): Promise<Config & { manifests: string }> {
  const config = await loadConfig(opts.config);
  const manifests = opts.manifests ?? config.manifests;
  if (!manifests) throw new ConfigError('no service source: pass --manifests DIR or set "manifests" in the config file');
  return { ...config, manifests };
}

export async function runCommand(opts: RunOptions): Promise<number> {
  const config = await resolveConfig(opts);
  const logger = createLogger(opts.logLevel ?? config.log.level);
  const store = new StateStore();
  const source = new ManifestDirectorySource({ dir: config.manifests, sink: store, logger });
  const proxy = new ProxyManager({ logger, host: config.proxy.bindAddress, connectTimeoutMs: config.proxy.connectTimeout });
  const iptables = new Iptables({ runner: spawnRunner });
  const metrics = createMetrics(() => proxy.stats());
  const agent = new Agent({ config, store, proxy, iptables, logger, metrics, sourcesReady: () => source.start() });

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

  logger.info({ manifests: config.manifests, layout: config.layout, serviceFilterMode: config.serviceFilterMode }, 'edgeproxy starting');
  if (config.metricsBindAddress) {
    const sep = config.metricsBindAddress.lastIndexOf(':');
    server = await startTelemetryServer({
      host: config.metricsBindAddress.slice(0, sep),
      port: Number(config.metricsBindAddress.slice(sep + 1)),
      registry: metrics.registry,
      health: agent,
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
