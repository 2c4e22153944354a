// How the netfilter layer runs commands: a plain function so tests can pass one that runs
// inside a network namespace (or records calls) instead of touching the host.
import { spawn } from 'node:child_process';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type CommandRunner = (cmd: string, args: string[], stdin?: string) => Promise<CommandResult>;

/** Thrown when the binary itself is missing (ENOENT), so callers can say what to install. */
export class CommandNotFoundError extends Error {
  readonly command: string;
  constructor(command: string) {
    super(`${command} not found`);
    this.name = 'CommandNotFoundError';
    this.command = command;
  }
}

/** Runs the command directly (no shell), collecting its output; never rejects on a non-zero exit. */
export const spawnRunner: CommandRunner = (cmd, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT' ? new CommandNotFoundError(cmd) : err);
    });
    child.on('close', (code, signal) => {
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}killed by ${signal}` : stderr });
    });
    // A command that exits without reading stdin makes the write fail with EPIPE; its exit
    // status already tells the story.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });

/** Runs every command through a prefix, e.g. ['ip', 'netns', 'exec', 'ns1']. */
export function prefixedRunner(prefix: string[], inner: CommandRunner = spawnRunner): CommandRunner {
  const [head, ...rest] = prefix;
  if (!head) return inner;
  return (cmd, args, stdin) => inner(head, [...rest, cmd, ...args], stdin);
}
