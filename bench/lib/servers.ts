// Starts the peers and backends of the bench, each a tracked process of the cluster (killed by
// PID on destroy). Config files go to one temp directory the caller removes.
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cluster } from '../../test/support/cluster.ts';
import { PATHS, path } from './topology.ts';
import { sleep } from './stats.ts';

export const TRANSFER_BYTES = 4 * 1024 * 1024;
export const DNS_NAME = 'bench.example';

/** Resolves once something accepts TCP connections on ip:port from ns (bounded). */
export async function waitTcp(cluster: Cluster, ns: string, ip: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await cluster.exec(ns, 'nc', ['-z', '-w', '1', ip, String(port)], { timeoutMs: 3000 });
    if (r.code === 0) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${ip}:${port} (seen from ${ns}) after ${timeoutMs} ms`);
}

function collectStderr(child: ChildProcess): () => string {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.stdout?.resume();
  return () => err;
}

async function ensureRunning(child: ChildProcess, what: string, stderr: () => string): Promise<void> {
  await sleep(300);
  if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited at start: ${stderr()}`);
}

/** nginx-light in the server pod: `/ok` (return 200) and `/4m` (a 4 MB file), one listen port per path. */
export async function startNginxHttp(cluster: Cluster, ns: string, dir: string): Promise<ChildProcess> {
  await writeFile(join(dir, '4m'), Buffer.alloc(TRANSFER_BYTES, 0x61));
  const listens = PATHS.map((p) => `    listen ${p.backend.http} backlog=4096;`).join('\n');
  const conf = `user root;
worker_processes auto;
pid ${dir}/nginx-http.pid;
error_log ${dir}/nginx-http.err warn;
daemon off;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 0;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
${listens}
    root ${dir};
    location = /ok { default_type text/plain; return 200 "ok\\n"; }
    location = /4m { default_type application/octet-stream; }
  }
}
`;
  const file = join(dir, 'nginx-http.conf');
  await writeFile(file, conf);
  const child = cluster.spawn(ns, 'nginx', ['-c', file]);
  const err = collectStderr(child);
  await ensureRunning(child, 'nginx (http)', err);
  for (const p of PATHS) await waitTcp(cluster, ns, '127.0.0.1', p.backend.http);
  return child;
}

/** One iperf3 server per path (an iperf3 server runs one test at a time). */
export async function startIperfServers(cluster: Cluster, ns: string): Promise<void> {
  for (const p of PATHS) {
    const child = cluster.spawn(ns, 'iperf3', ['-s', '-p', String(p.backend.iperf)]);
    const err = collectStderr(child);
    await ensureRunning(child, `iperf3 -s -p ${p.backend.iperf}`, err);
    await waitTcp(cluster, ns, '127.0.0.1', p.backend.iperf);
  }
}

/** HAProxy 2.6 in the node namespace: mode tcp, maxconn 4000, to the HAProxy path's backends. */
export async function startHaproxy(cluster: Cluster, serverIp: string, dir: string): Promise<ChildProcess> {
  const hp = path('haproxy');
  const conf = `global
  maxconn 4000
  log stderr format raw local0 emerg
defaults
  mode tcp
  maxconn 4000
  timeout connect 3s
  timeout client 60s
  timeout server 60s
frontend iperf
  bind 0.0.0.0:${hp.listen!.iperf}
  default_backend iperf_be
backend iperf_be
  server b1 ${serverIp}:${hp.backend.iperf}
frontend http
  bind 0.0.0.0:${hp.listen!.http}
  default_backend http_be
backend http_be
  server b1 ${serverIp}:${hp.backend.http}
`;
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, conf);
  const child = cluster.spawn(cluster.nodeNs, 'haproxy', ['-db', '-f', file]);
  const err = collectStderr(child);
  await ensureRunning(child, 'haproxy', err);
  await waitTcp(cluster, cluster.nodeNs, '127.0.0.1', hp.listen!.http);
  return child;
}

/** dnsmasq per path in the server pod, answering every query for DNS_NAME locally, no cache. */
export async function startDnsmasq(cluster: Cluster, ns: string, serverIp: string): Promise<void> {
  for (const p of PATHS) {
    const child = cluster.spawn(ns, 'dnsmasq', [
      '--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--user=root', '--group=root',
      `--port=${p.backend.dns}`, `--listen-address=${serverIp}`, '--bind-interfaces', '--cache-size=0',
      `--address=/${DNS_NAME}/10.0.0.1`, `--pid-file=`, '--log-facility=-', '--dns-forward-max=10000',
    ]);
    const err = collectStderr(child);
    await ensureRunning(child, `dnsmasq :${p.backend.dns}`, err);
  }
}

/** nginx stream UDP proxy in the node namespace (the UDP peer: HAProxy has no UDP). */
export async function startNginxUdp(cluster: Cluster, serverIp: string, dir: string): Promise<ChildProcess> {
  const hp = path('haproxy');
  const conf = `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
user root;
worker_processes auto;
pid ${dir}/nginx-udp.pid;
error_log ${dir}/nginx-udp.err warn;
daemon off;
events { worker_connections 8192; }
stream {
  server {
    listen 0.0.0.0:${hp.listen!.dns} udp reuseport;
    proxy_pass ${serverIp}:${hp.backend.dns};
    proxy_responses 1;
    proxy_timeout 5s;
  }
}
`;
  const file = join(dir, 'nginx-udp.conf');
  await writeFile(file, conf);
  const child = cluster.spawn(cluster.nodeNs, 'nginx', ['-c', file]);
  const err = collectStderr(child);
  await ensureRunning(child, 'nginx (udp stream)', err);
  return child;
}
