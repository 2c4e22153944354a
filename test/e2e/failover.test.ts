// Failover, bounded refusal and undisturbed live streams, with the real agent in a namespace
// node and real clients in a pod. Needs root and iptables (never skips).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { nodeBin } from '../support/cluster.ts';
import type { Cluster } from '../support/cluster.ts';
import { portMetric, setupAgentCluster, startAgent } from '../support/agent.ts';

const FAILOVER_IP = '10.96.40.40';
const STREAM_IP = '10.96.40.41';
const BACKEND_PORT = 8181;
const STREAM_PORT = 8282;
const PROXY = { connectTimeout: '300ms', maxDialAttempts: 3, dialBackoff: '50ms', ejectionTime: '1s', maxEjectionTime: '4s' };
/** connectTimeout × maxDialAttempts + the backoffs between attempts. */
const REFUSAL_BOUND_MS = 300 * 3 + 50 * 2;

function serviceYaml(name: string, ip: string, port: number, targetPort: number, addresses: string[]): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  clusterIP: ${ip}
  ports:
    - { name: p, protocol: TCP, port: ${port}, targetPort: ${targetPort} }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-x1
  namespace: default
  labels: { kubernetes.io/service-name: ${name} }
addressType: IPv4
ports:
  - { name: p, protocol: TCP, port: ${targetPort} }
endpoints:
${addresses.map((a) => `  - addresses: [${a}]\n    conditions: { ready: true }`).join('\n')}
`;
}

interface ConnResult {
  i: number;
  ok: boolean;
  body: string;
  err?: string;
  ms: number;
}

/**
 * Runs in a pod: `count` HTTP/1.1 requests, `parallel` at a time, one connection each; with
 * killPid, SIGKILLs it right after request killAt and waits until it is dead (the pods share
 * the PID namespace).
 * Prints one JSON line: every connection's result.
 */
const CONNECT_LOOP = `
import net from 'node:net';
import { existsSync } from 'node:fs';
const [host, port, count, parallel, killPid, killAt] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
function one(i) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host, port });
    let data = '';
    let err;
    s.setEncoding('utf8');
    s.on('connect', () => s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'));
    s.on('data', (d) => (data += d));
    s.on('error', (e) => (err = e.code));
    s.setTimeout(10000, () => { err = 'HUNG'; s.destroy(); });
    s.on('close', () => resolve({ i, ok: data.startsWith('HTTP/1.1 200'), body: data.split('\\r\\n\\r\\n')[1] ?? '', ...(err && { err }), ms: performance.now() - t0 }));
  });
}
// Returns once the process is gone (reaped by the test), so its listening socket is closed.
// While the kernel tears a killed process down (its threads exit one by one), the listener
// still completes handshakes and then resets them: no proxy can tell such a connection from
// one the application accepted and dropped, so the kill must be over before the next one.
async function kill(pid) {
  process.kill(pid, 'SIGKILL');
  while (existsSync('/proc/' + pid)) await new Promise((r) => setTimeout(r, 1));
}
const results = [];
let next = 0;
async function worker() {
  while (next < count) {
    const i = next++;
    results.push(await one(i));
    if (killPid > 0 && i === killAt) await kill(killPid);
  }
}
await Promise.all(Array.from({ length: parallel }, worker));
results.sort((a, b) => a.i - b.i);
console.log(JSON.stringify(results));
`;

/** An echo server: everything received is written back. */
const ECHO_SERVER = `
import net from 'node:net';
net.createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(Number(process.argv[1]), '0.0.0.0', () => console.log('ready'));
`;

/**
 * Streams to an echo service for `seconds`, keeping 256 KiB in flight, and reports the bytes
 * sent and echoed back and the longest gap between two echoed chunks (a stall shows there).
 */
const STREAM_CLIENT = `
import net from 'node:net';
const [host, port, seconds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const chunk = Buffer.alloc(64 * 1024, 7);
let sent = 0, echoed = 0, maxGap = 0, last = 0, error;
const s = net.connect({ host, port });
const pump = () => { while (sent - echoed < 256 * 1024 && !s.writableEnded) { s.write(chunk); sent += chunk.length; } };
s.on('connect', () => { last = performance.now(); pump(); setTimeout(() => s.end(), seconds * 1000); });
s.on('data', (d) => { const now = performance.now(); maxGap = Math.max(maxGap, now - last); last = now; echoed += d.length; pump(); });
s.on('error', (e) => (error = e.code));
s.on('close', () => console.log(JSON.stringify({ sent, echoed, maxGapMs: Math.round(maxGap), error })));
`;

function runScript(cluster: Cluster, ns: string, script: string, args: (string | number)[], timeoutMs: number) {
  return cluster.run(ns, nodeBin, ['--input-type=module', '-e', script, ...args.map(String)], { timeoutMs });
}

async function waitUntil(what: string, fn: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await sleep(100);
  }
  assert.fail(`not within ${timeoutMs} ms: ${what}`);
}

test('failover, bounded refusal and live streams across syncs', async (t) => {
  const env = await setupAgentCluster(t, { config: { proxy: PROXY }, start: false });
  const { cluster, manifests } = env;
  const podA = cluster.pod('pod-a');
  const podB = cluster.pod('pod-b');
  await writeFile(join(manifests, 'failover.yaml'), serviceYaml('failover', FAILOVER_IP, 80, BACKEND_PORT, [podA.ip, podB.ip]));
  await writeFile(join(manifests, 'stream.yaml'), serviceYaml('stream', STREAM_IP, 82, STREAM_PORT, [podB.ip]));
  const serverA = await cluster.startServer(podA.ns, { name: 'pod-a', tcpPorts: [BACKEND_PORT] });
  const serverB = await cluster.startServer(podB.ns, { name: 'pod-b', tcpPorts: [BACKEND_PORT] });
  const agent = (env.agent = await startAgent(cluster, { manifests, config: env.configFile }));
  await waitUntil('the failover service answers', async () => (await cluster.curl(podA.ns, `http://${FAILOVER_IP}/`)).startsWith('pod-'));

  await t.test('a backend killed during 500 sequential connections: none fails', async () => {
    const out = await runScript(cluster, podA.ns, CONNECT_LOOP, [FAILOVER_IP, 80, 500, 1, serverB.pid!, 99], 60_000);
    const results = JSON.parse(out) as ConnResult[];
    assert.equal(results.length, 500);
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed, [], 'zero failed connections');
    assert.deepEqual(new Set(results.slice(0, 100).map((r) => r.body)), new Set(['pod-a', 'pod-b']), 'both served before the kill');
    assert.deepEqual(new Set(results.slice(101).map((r) => r.body)), new Set(['pod-a']), 'only pod-a after');
    const slowest = Math.max(...results.map((r) => r.ms));
    t.diagnostic(`500 connections, slowest ${slowest.toFixed(1)} ms`);
    const metrics = await agent.metrics();
    assert.ok(portMetric(metrics, 'edgeproxy_endpoint_ejections_total', 'default/failover:p') >= 1, 'pod-b was ejected');
    assert.equal(portMetric(metrics, 'edgeproxy_connections_failed_total', 'default/failover:p'), 0);
  });

  await t.test('every backend refusing: each client is reset promptly', async () => {
    serverA.kill('SIGKILL');
    await waitExit(serverA);
    const out = await runScript(cluster, podA.ns, CONNECT_LOOP, [FAILOVER_IP, 80, 20, 1, 0, -1], 30_000);
    const results = JSON.parse(out) as ConnResult[];
    assert.ok(results.every((r) => !r.ok && r.err !== 'HUNG'), JSON.stringify(results.slice(0, 3)));
    const slowest = Math.max(...results.map((r) => r.ms));
    t.diagnostic(`refused: slowest ${slowest.toFixed(1)} ms (bound ${REFUSAL_BOUND_MS} ms)`);
    assert.ok(slowest < REFUSAL_BOUND_MS, `slowest refusal ${slowest} ms`);
  });

  await t.test('every backend black-holed: each client is reset within the dial bound, none hangs', async () => {
    // SYNs to the backend port are dropped inside the pods, so every dial runs into connectTimeout.
    for (const pod of [podA, podB]) await cluster.run(pod.ns, 'iptables', ['-A', 'INPUT', '-p', 'tcp', '--dport', String(BACKEND_PORT), '-j', 'DROP']);
    const out = await runScript(cluster, podA.ns, CONNECT_LOOP, [FAILOVER_IP, 80, 6, 6, 0, -1], 30_000);
    const results = JSON.parse(out) as ConnResult[];
    const times = results.map((r) => Math.round(r.ms));
    t.diagnostic(`black-holed: ${times.join(', ')} ms (bound ${REFUSAL_BOUND_MS} ms)`);
    for (const r of results) {
      assert.equal(r.ok, false);
      assert.notEqual(r.err, 'HUNG');
      assert.ok(r.ms >= REFUSAL_BOUND_MS - 100 && r.ms < REFUSAL_BOUND_MS + 400, `reset after ${r.ms} ms`);
    }
  });

  await t.test('a long-lived stream keeps flowing while services are added and removed around it', async () => {
    const echo = cluster.spawn(podB.ns, nodeBin, ['--input-type=module', '-e', ECHO_SERVER, String(STREAM_PORT)]);
    await new Promise<void>((resolve, reject) => {
      echo.stdout!.once('data', () => resolve());
      echo.once('exit', (code) => reject(new Error(`echo server exited ${code}`)));
    });
    const opened = () => agent.logs.filter((l) => l.msg === 'proxy listener opened').length;
    const closed = () => agent.logs.filter((l) => l.msg === 'proxy listener closed').length;
    const [openedBefore, closedBefore] = [opened(), closed()];

    const seconds = 8;
    const stream = runScript(cluster, podA.ns, STREAM_CLIENT, [STREAM_IP, 82, seconds], 30_000);
    let changes = 0;
    const churn = (async () => {
      const started = Date.now();
      for (let n = 0; Date.now() - started < (seconds - 1) * 1000; n++) {
        const file = join(manifests, `churn-${n % 4}.yaml`);
        if (n % 8 < 4) await writeFile(file, serviceYaml(`churn-${n % 4}`, `10.96.41.${n % 4}`, 80, 8080, [podA.ip]));
        else await rm(file, { force: true });
        changes++;
        await sleep(250);
      }
    })();
    const [out] = await Promise.all([stream, churn]);
    const r = JSON.parse(out) as { sent: number; echoed: number; maxGapMs: number; error?: string };
    t.diagnostic(`stream: ${(r.echoed / 2 ** 20).toFixed(0)} MiB echoed in ${seconds} s, longest gap ${r.maxGapMs} ms; ${changes} manifest changes, listeners +${opened() - openedBefore} -${closed() - closedBefore}`);
    assert.equal(r.error, undefined);
    assert.equal(r.echoed, r.sent, 'every byte came back');
    assert.ok(r.sent > 10 * 2 ** 20, `kept flowing (${r.sent} bytes)`);
    assert.ok(r.maxGapMs < 500, `no stall (longest gap ${r.maxGapMs} ms)`);
    assert.ok(opened() - openedBefore >= 4 && closed() - closedBefore >= 1, 'the churn really opened and closed listeners');
  });
});

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
