// The agent with TCP worker threads (proxy.workers: 2): round robin, exact metrics, SIGTERM.
// Needs root and iptables: without them these tests fail (they never skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kubeProxyRules, portMetric, setupAgentCluster, stopAndCheckClean } from '../support/agent.ts';

const WEB = 'http://10.96.10.10/';

test('proxy.workers: 2 — one rotation over the threads, metrics summed, clean SIGTERM', async (t) => {
  const { cluster, agent } = await setupAgentCluster(t, { config: { proxy: { workers: 2 } } });
  assert.ok(agent);
  const podA = cluster.pod('pod-a').ns;
  await agent.waitForLog((l) => l.msg === 'TCP proxy worker threads started', 5000, 'worker threads');

  const before = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http');
  const answers: string[] = [];
  for (let i = 0; i < 20; i++) answers.push(await cluster.curl(podA, WEB));
  // Strict alternation although the kernel spreads the connections over two threads.
  for (let i = 1; i < answers.length; i++) assert.notEqual(answers[i], answers[i - 1], `not alternating: ${answers}`);
  assert.deepEqual(new Set(answers), new Set(['pod-a', 'pod-b']));
  const after = portMetric(await agent.metrics(), 'edgeproxy_connections_accepted_total', 'default/web:http');
  assert.equal(after - before, 20, 'the scrape includes the worker thread’s connections');
  assert.equal((await agent.metrics()).get('edgeproxy_worker_restarts_total'), 0, 'exported, and no thread died');

  const kubeProxyBefore = kubeProxyRules(await cluster.iptablesSave());
  await stopAndCheckClean(cluster, agent, kubeProxyBefore, podA, WEB);
});
