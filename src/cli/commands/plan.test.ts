import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { planCommand } from './plan.ts';

const examples = fileURLToPath(new URL('../../../examples/manifests', import.meta.url));

function capture(): { out: Writable; text: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { out, text: () => text };
}

test('plan: every example service with who handles it and why, then the exact rules', async () => {
  const { out, text } = capture();
  assert.equal(await planCommand({ manifests: examples }, out), 0);
  const rows = new Map(text().split('\n').filter((l) => /^[a-z-]+\/[a-z-]+ /.test(l)).map((l) => [l.split(/\s+/)[0], l]));
  assert.match(rows.get('default/web')!, /10\.96\.10\.10 .* edgeproxy +round-robin/);
  assert.match(rows.get('default/sticky')!, /edgeproxy +affinity 10800s/);
  assert.match(rows.get('default/empty')!, /<none> .* edgeproxy/);
  assert.match(rows.get('kube-system/kube-dns')!, /kube-proxy .*cluster DNS/);
  assert.match(rows.get('default/kubernetes')!, /kube-proxy .*default\/kubernetes/);
  assert.match(rows.get('monitoring/grafana')!, /kube-proxy .*service-proxy-name present/);
  const rules = text().split('\n').filter((l) => l.startsWith('-A '));
  // Four proxied ports, each in both portal chains.
  assert.equal(rules.length, 8);
  assert.ok(rules.includes('-A KUBE-PORTALS-HOST -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40000'));
  assert.ok(!rules.some((r) => /10\.96\.0\.(1|10)\/|10\.96\.20\.20/.test(r)), 'ignored services get no rule');
});

test('plan: the edge-mesh layout writes RETURNs for ignored services', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-plan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.yaml'), 'layout: edge-mesh\nserviceCIDR: 10.96.0.0/16\n');
  const { out, text } = capture();
  assert.equal(await planCommand({ manifests: examples, config: join(dir, 'config.yaml') }, out), 0);
  assert.match(text(), /-A EDGE-MESH -d 10\.96\.0\.10\/32 -m comment --comment "ignore kube-system\/kube-dns service" -j RETURN/);
  assert.match(text(), /-A EDGE-MESH -d 10\.96\.0\.0\/16 -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP/);
});

test('plan: an invalid document is named, skipped, and the rest is still planned (exit 1)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-plan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(examples, dir, { recursive: true });
  await writeFile(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: bad }\nspec:\n  clusterIP: 10.96.99.99\n  ports: [{ port: 70000 }]\n');
  const { out, text } = capture();
  assert.equal(await planCommand({ manifests: dir }, out), 1);
  assert.match(text(), /error: .*bad\.yaml doc 1 Service default\/bad: spec\.ports\[0\]\.port: .*70000/);
  assert.match(text(), /default\/web +10\.96\.10\.10/);
});

test('plan: with proxy.portRange the rules show the ports a fresh start assigns, and what the range cannot hold', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeproxy-plan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.yaml'), 'proxy:\n  portRange: "45000-45001"\n');
  const { out, text } = capture();
  assert.equal(await planCommand({ manifests: examples, config: join(dir, 'config.yaml') }, out), 0);
  assert.match(text(), /listener ports from proxy\.portRange 45000-45001/);
  const toPorts = text().split('\n').filter((l) => l.startsWith('-A KUBE-PORTALS-HOST')).map((l) => /--comment "([^"]+)".*--to-ports (\d+)/.exec(l)!.slice(1).join('='));
  // Three TCP ports and one UDP port: TCP and UDP each number from 45000; the third TCP port gets none.
  assert.equal(toPorts.length, 3);
  assert.ok(toPorts.includes('default/echo-udp:p=45000'));
  assert.ok(toPorts.every((p) => /=4500[01]$/.test(p)));
  assert.match(text(), /# proxy\.portRange used up, left to kube-proxy: \S+\/TCP/);
});
