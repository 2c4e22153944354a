// The agent's small HTTP endpoint: /metrics (Prometheus), /healthz (alive and syncing), /readyz
// (first sync done and our rules in place).
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface HealthSource {
  healthy(): { ok: boolean; detail: string };
  ready(): { ok: boolean; detail: string };
}

export async function startTelemetryServer(opts: {
  host: string;
  port: number;
  /** One /metrics text in chunks (AgentMetrics.scrape), and its media type. */
  scrape: () => AsyncIterable<string>;
  contentType: string;
  health: HealthSource;
  /** Runs before each /metrics render (e.g. fetching the proxy worker threads' counters). */
  beforeMetrics?: () => Promise<void>;
}): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    void handle(req.url ?? '/', res);
  });
  async function handle(url: string, res: http.ServerResponse): Promise<void> {
    try {
      if (url === '/metrics') {
        await opts.beforeMetrics?.();
        res.writeHead(200, { 'content-type': opts.contentType });
        // Pulled as the client reads: a scrape of 10,000 ports is never whole in memory.
        await pipeline(Readable.from(opts.scrape()), res);
      } else if (url === '/healthz' || url === '/readyz') {
        const { ok, detail } = url === '/healthz' ? opts.health.healthy() : opts.health.ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${detail}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz\n');
      }
    } catch (err) {
      // Failed mid-body: the status is gone already, so cut the response short.
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}
