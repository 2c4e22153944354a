import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { translateEdgeMeshConfig } from './edgemesh.ts';
import { parseConfig } from './load.ts';

// The shape of EdgeMesh's edgemesh-agent ConfigMap (edgemesh-agent.yaml), trimmed.
const EDGEMESH_AGENT = `
apiVersion: agent.edgemesh.config.kubeedge.io/v1alpha1
kind: EdgeMeshAgent
kubeAPIConfig:
  kubeConfig: /etc/kubernetes/edgemesh.kubeconfig
  qps: 50
  burst: 100
commonConfig:
  bridgeDeviceName: edgemesh0
  bridgeDeviceIP: 169.254.96.16
modules:
  edgeDNS:
    enable: true
    listenPort: 53
  edgeProxy:
    enable: true
    serviceFilterMode: FilterIfLabelDoesNotExists
    subNet: 10.96.0.0/12
    listenPort: 40001
  edgeTunnel:
    enable: true
`;

test('an EdgeMesh agent config maps onto ours and validates; unsupported keys warn', () => {
  const warnings: string[] = [];
  const config = parseConfig(parse(EDGEMESH_AGENT), 'edgemesh.yaml', warnings);
  assert.equal(config.serviceFilterMode, 'FilterIfLabelDoesNotExists');
  assert.equal(config.serviceCIDR, '10.96.0.0/12');
  assert.equal(config.kubernetes.enabled, true);
  assert.equal(config.kubernetes.kubeconfig, '/etc/kubernetes/edgemesh.kubeconfig');
  const ignored = warnings.map((w) => w.match(/EdgeMesh key (\S+) ignored/)?.[1]).filter(Boolean).sort();
  assert.deepEqual(ignored, [
    'commonConfig.bridgeDeviceIP',
    'commonConfig.bridgeDeviceName',
    'kubeAPIConfig.burst',
    'kubeAPIConfig.qps',
    'modules.edgeDNS',
    'modules.edgeProxy.listenPort',
    'modules.edgeTunnel',
  ]);
  assert.ok(warnings.every((w) => w.startsWith('edgemesh.yaml: ')));
});

test('table: EdgeMesh keys → our keys', () => {
  const cases: Array<[string, unknown, unknown]> = [
    ['in-cluster (empty master)', { kubeAPIConfig: { master: '' } }, { kubernetes: { enabled: true } }],
    ['filter mode', { modules: { edgeProxy: { serviceFilterMode: 'FilterIfLabelExists' } } }, { serviceFilterMode: 'FilterIfLabelExists' }],
    ['our keys win over translated ones', { modules: { edgeProxy: { subNet: '10.96.0.0/12' } }, serviceCIDR: '10.96.0.0/16' }, { serviceCIDR: '10.96.0.0/16' }],
    ['our kubernetes section merges', { kubeAPIConfig: { kubeConfig: '/k' }, kubernetes: { watchdog: '1m' } }, { kubernetes: { enabled: true, kubeconfig: '/k', watchdog: '1m' } }],
    ['disabled modules are silent', { modules: { edgeDNS: { enable: false } } }, {}],
  ];
  for (const [name, input, want] of cases) assert.deepEqual(translateEdgeMeshConfig(input).config, want, name);
});

test('a document of ours is untouched; edgeProxy.enable: false warns', () => {
  const ours = { layout: 'edge-mesh', kubernetes: { enabled: true } };
  assert.equal(translateEdgeMeshConfig(ours).config, ours);
  assert.deepEqual(translateEdgeMeshConfig(ours).warnings, []);
  assert.match(translateEdgeMeshConfig({ modules: { edgeProxy: { enable: false } } }).warnings[0]!, /enable is false/);
});

test('a bad value in a translated key is reported under our key name', () => {
  assert.throws(() => parseConfig({ modules: { edgeProxy: { serviceFilterMode: 'Sometimes' } } }, 'x.yaml'), /serviceFilterMode: /);
});
