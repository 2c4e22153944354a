// Command line: run, plan, status, cleanup. Each command is a small module taking its options;
// this file only parses arguments and maps errors to exit codes.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { runCommand } from './commands/run.ts';
import { planCommand } from './commands/plan.ts';
import { statusCommand } from './commands/status.ts';
import { cleanupCommand } from './commands/cleanup.ts';
import { ConfigError } from '../config/load.ts';

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const program = new Command()
    .name('edgeproxy')
    .version(`edgeproxy ${version} (Node ${process.version})`, '-V, --version')
    .description('Hybrid proxy for Kubernetes edge nodes: takes ClusterIP traffic in front of kube-proxy for the services it proxies.')
    .showHelpAfterError()
    .exitOverride();

  const configOption = () => new Option('-c, --config <file>', 'YAML config file (see README: Configuration)');
  const manifestsOption = () => new Option('-m, --manifests <dir>', 'directory of Service/EndpointSlice/Endpoints manifests (overrides config "manifests")');

  program
    .command('run')
    .description('run the agent: watch services, program iptables, proxy traffic (root)')
    .addOption(manifestsOption())
    .addOption(new Option('-k, --kubeconfig <file>', 'read services from the Kubernetes API with this kubeconfig (turns the API source on; without it, kubernetes.enabled uses $KUBECONFIG or the pod service account)'))
    .addOption(configOption())
    .addOption(new Option('--node-name <name>', 'this node\'s name, for internalTrafficPolicy: Local (overrides config nodeName; the DaemonSet passes spec.nodeName)'))
    .addOption(new Option('--log-level <level>', 'override config log.level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .action(async (opts: { manifests?: string; config?: string; logLevel?: string; kubeconfig?: string; nodeName?: string }) => {
      exitCode = await runCommand(opts);
    });

  program
    .command('plan')
    .description('show each service as proxied or ignored (with the reason) and the rules that would be applied; changes nothing, needs no root')
    .addOption(manifestsOption())
    .addOption(configOption())
    .action(async (opts: { manifests?: string; config?: string }) => {
      exitCode = await planCommand(opts, process.stdout);
    });

  program
    .command('status')
    .description("read the live nat table: our chains, their position relative to kube-proxy's KUBE-SERVICES, and what is wrong (exit 1 if the order is wrong)")
    .action(async () => {
      exitCode = await statusCommand(process.stdout);
    });

  program
    .command('cleanup')
    .description('remove every rule and chain edgeproxy added (for an agent that died)')
    .action(async () => {
      exitCode = await cleanupCommand(process.stdout);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return 0;
    if (code?.startsWith('commander.')) return 2;
    if (err instanceof ConfigError) {
      process.stderr.write(`edgeproxy: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`edgeproxy: ${(err as Error).message}\n`);
    return 1;
  }
  return exitCode;
}
