// Forgets the kernel's UDP connection-tracking entries for a ClusterIP port. nat rules only
// see a flow's first packet: a UDP client that keeps sending stays on whatever its entry
// says — kube-proxy's DNAT after we start proxying the port, or our REDIRECT to a closed
// listener after we stop — until it pauses for the conntrack timeout. Deleting the entries
// when a UDP portal appears or disappears makes the next datagram take the current rules,
// as kube-proxy does for UDP when its endpoints change.
import type { Logger } from 'pino';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';

export class Conntrack {
  readonly #runner: CommandRunner;
  readonly #log: Logger;
  #missingReported = false;

  constructor(opts: { runner: CommandRunner; logger: Logger }) {
    this.#runner = opts.runner;
    this.#log = opts.logger;
  }

  /** Deletes the UDP entries whose original destination is ip:port; never throws. */
  async forgetUdp(ip: string, port: number): Promise<void> {
    try {
      const { code, stderr } = await this.#runner('conntrack', ['-D', '-p', 'udp', '--orig-dst', ip, '--orig-port-dst', String(port)]);
      // Exit 1 with "0 flow entries have been deleted" just means there was nothing to forget.
      if (code !== 0 && !/0 flow entries/.test(stderr)) this.#log.warn({ ip, port, code, stderr: stderr.trim() }, 'conntrack -D failed');
    } catch (err) {
      if (!(err instanceof CommandNotFoundError)) throw err;
      if (!this.#missingReported) {
        this.#missingReported = true;
        this.#log.warn('conntrack not found (install the conntrack package): long-lived UDP flows keep their old path until they pause');
      }
    }
  }
}
