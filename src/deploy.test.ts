// deploy/: the manifests parse, the DaemonSet has what the agent needs (and no more), the
// ConfigMap's config validates, and RBAC grants exactly what the Kubernetes source uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from './config/load.ts';
import { KUBERNETES_API_USAGE } from './sources/kubernetes/resources.ts';

const deployDir = join(import.meta.dirname, '..', 'deploy');
type Doc = Record<string, any>;

async function docs(file: string): Promise<Doc[]> {
  const parsed = parseAllDocuments(await readFile(join(deployDir, file), 'utf8'));
  for (const d of parsed) assert.deepEqual(d.errors, [], `${file}: YAML errors`);
  return parsed.map((d) => d.toJS() as Doc).filter(Boolean);
}

async function one(file: string, kind: string): Promise<Doc> {
  const found = (await docs(file)).filter((d) => d['kind'] === kind);
  assert.equal(found.length, 1, `${file}: one ${kind}`);
  return found[0]!;
}

test('DaemonSet: hostNetwork, NET_ADMIN + NET_RAW without privileged, probes, edge tolerations, config mounted', async () => {
  const ds = await one('daemonset.yaml', 'DaemonSet');
  const pod = ds['spec']['template']['spec'];
  assert.equal(pod['hostNetwork'], true);
  assert.equal(pod['serviceAccountName'], 'edgeproxy');
  const [c] = pod['containers'];
  const sc = c['securityContext'];
  assert.notEqual(sc['privileged'], true);
  assert.deepEqual([...sc['capabilities']['add']].sort(), ['NET_ADMIN', 'NET_RAW']);
  assert.deepEqual(sc['capabilities']['drop'], ['ALL']);
  assert.equal(c['livenessProbe']['httpGet']['path'], '/healthz');
  assert.equal(c['readinessProbe']['httpGet']['path'], '/readyz');
  assert.ok(pod['tolerations'].some((t: Doc) => t['key'] === 'node-role.kubernetes.io/edge' && t['effect'] === 'NoSchedule'));
  assert.ok(pod['terminationGracePeriodSeconds'] >= 10, 'time to remove the rules on SIGTERM');
  assert.equal(c['lifecycle']?.['preStop'], undefined, 'no preStop cleanup: the running agent would re-add the rules');

  // The probes reach the address the config binds.
  const cm = await one('configmap.yaml', 'ConfigMap');
  const config = parseConfig((await import('yaml')).parse(cm['data']['config.yaml']), 'configmap.yaml');
  const [host, port] = config.metricsBindAddress.split(':');
  for (const probe of [c['livenessProbe'], c['readinessProbe']]) {
    assert.equal(String(probe['httpGet']['port']), port);
    assert.ok(host === '0.0.0.0' || probe['httpGet']['host'] === host, `probe host ${probe['httpGet']['host']} reaches ${host}`);
  }
  // The config file the container reads is the ConfigMap's.
  const mount = c['volumeMounts'].find((m: Doc) => m['name'] === 'config');
  const arg = c['args'][c['args'].indexOf('--config') + 1];
  assert.equal(join(mount['mountPath'], 'config.yaml'), arg);
  assert.equal(pod['volumes'].find((v: Doc) => v['name'] === 'config')['configMap']['name'], cm['metadata']['name']);
  // The node's name reaches the agent (internalTrafficPolicy: Local).
  assert.equal(c['args'][c['args'].indexOf('--node-name') + 1], '$(NODE_NAME)');
  assert.equal(c['env'].find((e: Doc) => e['name'] === 'NODE_NAME')['valueFrom']['fieldRef']['fieldPath'], 'spec.nodeName');
});

test('ConfigMap: the config validates with our schema and turns the API source on', async () => {
  const cm = await one('configmap.yaml', 'ConfigMap');
  const config = parseConfig((await import('yaml')).parse(cm['data']['config.yaml']), 'configmap.yaml');
  assert.equal(config.kubernetes.enabled, true);
  assert.equal(config.kubernetes.kubeconfig, undefined, 'in-cluster service account');
});

test('RBAC grants exactly the verbs and resources the Kubernetes source uses', async () => {
  const all = await docs('rbac.yaml');
  const role = all.find((d) => d['kind'] === 'ClusterRole')!;
  const binding = all.find((d) => d['kind'] === 'ClusterRoleBinding')!;
  const sa = all.find((d) => d['kind'] === 'ServiceAccount')!;
  const granted = role['rules'].flatMap((r: Doc) =>
    r['apiGroups'].flatMap((g: string) => r['resources'].flatMap((res: string) => r['verbs'].map((v: string) => `${g}/${res}:${v}`))),
  );
  const used = KUBERNETES_API_USAGE.flatMap((r) => r.verbs.map((v) => `${r.group}/${r.resource}:${v}`));
  assert.deepEqual([...granted].sort(), [...used].sort());
  assert.ok(!role['rules'].some((r: Doc) => r['nonResourceURLs']), 'no non-resource URLs');
  assert.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role['metadata']['name'] });
  assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: sa['metadata']['name'], namespace: sa['metadata']['namespace'] }]);
  const ds = await one('daemonset.yaml', 'DaemonSet');
  assert.equal(ds['metadata']['namespace'], sa['metadata']['namespace']);
});

test('kustomization lists every manifest; the Dockerfile is on node:24-slim with iptables', async () => {
  const k = await one('kustomization.yaml', 'Kustomization');
  assert.deepEqual([...k['resources']].sort(), ['configmap.yaml', 'daemonset.yaml', 'rbac.yaml']);
  const dockerfile = await readFile(join(deployDir, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /^FROM node:24-slim$/m);
  assert.match(dockerfile, /apt-get install .*iptables/);
});
