// Machine facts printed with every result: figures only compare within one machine and run.
import { spawnSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';

export interface MachineFacts {
  cores: number;
  cpuModel: string;
  kernel: string;
  memoryGB: number;
  node: string;
  tools: Record<string, string>;
}

function firstLine(cmd: string, args: string[]): string {
  // nginx -v and dnsperf -V print to stderr, wrk -v exits 1: take the first line of either stream.
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  if (r.error) return 'missing';
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? 'unknown';
}

export function machineFacts(nodeVersion: string): MachineFacts {
  const list = cpus();
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    memoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: nodeVersion,
    tools: {
      haproxy: firstLine('haproxy', ['-v']),
      nginx: firstLine('nginx', ['-v']),
      iptables: firstLine('iptables', ['--version']),
      iperf3: firstLine('iperf3', ['--version']),
      wrk: firstLine('wrk', ['-v']),
      dnsperf: firstLine('dnsperf', ['-V']),
    },
  };
}
