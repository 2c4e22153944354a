import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EndpointSlice, Service } from '../../model/types.ts';
import { formatManifestError, type ManifestError } from './errors.ts';
import { parseManifestText, type ParsedFile } from './parse.ts';

function services(r: ParsedFile): Service[] {
  return r.objects.flatMap((o) => (o.object.kind === 'Service' ? [o.object.value] : []));
}
function slices(r: ParsedFile): EndpointSlice[] {
  return r.objects.flatMap((o) => (o.object.kind === 'EndpointSlice' ? [o.object.value] : []));
}

/** A valid Service document with one field replaced (YAML flow text for the spec). */
function serviceDoc(spec: string, metadata = '{name: web, namespace: shop}'): string {
  return `apiVersion: v1\nkind: Service\nmetadata: ${metadata}\nspec: ${spec}\n`;
}

describe('parseManifestText: Service', () => {
  it('applies Kubernetes defaults', () => {
    const r = parseManifestText('a.yaml', serviceDoc('{clusterIP: 10.96.0.10, ports: [{port: 80}]}', '{name: web}'));
    assert.deepEqual(r.errors, []);
    assert.deepEqual(services(r), [
      {
        namespace: 'default',
        name: 'web',
        labels: {},
        type: 'ClusterIP',
        clusterIP: '10.96.0.10',
        clusterIPs: ['10.96.0.10'],
        ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80 }],
        sessionAffinity: 'None',
        sessionAffinityTimeoutSeconds: 10800,
        internalTrafficPolicy: 'Cluster',
      },
    ]);
  });

  it('reads every supported field', () => {
    const yaml = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
  labels: {app: api, edgeproxy.io/proxy: "true"}
spec:
  type: NodePort
  clusterIP: fd00::10
  clusterIPs: [fd00::10, 10.96.0.20]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  internalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: web, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
`;
    const r = parseManifestText('a.yaml', yaml);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(services(r), [
      {
        namespace: 'shop',
        name: 'api',
        labels: { app: 'api', 'edgeproxy.io/proxy': 'true' },
        type: 'NodePort',
        clusterIP: 'fd00::10',
        clusterIPs: ['fd00::10', '10.96.0.20'],
        ports: [
          { name: 'http', protocol: 'TCP', port: 80, targetPort: 'web', nodePort: 30080 },
          { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 },
        ],
        sessionAffinity: 'ClientIP',
        sessionAffinityTimeoutSeconds: 60,
        internalTrafficPolicy: 'Local',
      },
    ]);
  });

  it('keeps headless and IP-less services apart', () => {
    const headless = services(parseManifestText('a.yaml', serviceDoc('{clusterIP: None, ports: [{port: 80}]}')))[0];
    assert.equal(headless?.clusterIP, 'None');
    assert.deepEqual(headless?.clusterIPs, ['None']);
    const external = services(parseManifestText('a.yaml', serviceDoc('{type: ExternalName, clusterIP: ""}')))[0];
    assert.equal(external?.clusterIP, undefined);
    assert.equal('clusterIP' in (external ?? {}), false);
    assert.deepEqual(external?.clusterIPs, []);
    assert.deepEqual(external?.ports, []);
  });

  // Each case: spec (or metadata) with one bad field → the error names the field.
  const cases: Array<{ title: string; doc: string; field: string; message: RegExp }> = [
    { title: 'port too large', doc: serviceDoc('{ports: [{port: 70000}]}'), field: 'spec.ports[0].port', message: /^must be an integer from 1 to 65535 \(got 70000\)$/ },
    { title: 'port zero', doc: serviceDoc('{ports: [{port: 0}]}'), field: 'spec.ports[0].port', message: /1 to 65535 \(got 0\)/ },
    { title: 'port fraction', doc: serviceDoc('{ports: [{port: 80.5}]}'), field: 'spec.ports[0].port', message: /got 80.5/ },
    { title: 'port as string', doc: serviceDoc('{ports: [{port: "80"}]}'), field: 'spec.ports[0].port', message: /got "80"/ },
    { title: 'port missing', doc: serviceDoc('{ports: [{name: x}]}'), field: 'spec.ports[0].port', message: /^required$/ },
    { title: 'bad protocol', doc: serviceDoc('{ports: [{port: 80, protocol: HTTP}]}'), field: 'spec.ports[0].protocol', message: /^must be one of TCP, UDP, SCTP \(got "HTTP"\)$/ },
    { title: 'numeric-string targetPort', doc: serviceDoc('{ports: [{port: 80, targetPort: "8080"}]}'), field: 'spec.ports[0].targetPort', message: /IANA_SVC_NAME/ },
    { title: 'targetPort name too long', doc: serviceDoc('{ports: [{port: 80, targetPort: abcdefghijklmnop}]}'), field: 'spec.ports[0].targetPort', message: /port name/ },
    { title: 'targetPort out of range', doc: serviceDoc('{ports: [{port: 80, targetPort: 65536}]}'), field: 'spec.ports[0].targetPort', message: /got 65536/ },
    { title: 'unnamed port among several', doc: serviceDoc('{ports: [{name: a, port: 80}, {port: 81}]}'), field: 'spec.ports[1].name', message: /required when a Service has more than one port/ },
    { title: 'duplicate port names', doc: serviceDoc('{ports: [{name: a, port: 80}, {name: a, port: 81}]}'), field: 'spec.ports[1].name', message: /duplicate port name "a"/ },
    { title: 'port clash', doc: serviceDoc('{ports: [{name: a, port: 80}, {name: b, port: 80, targetPort: 81}]}'), field: 'spec.ports[1]', message: /port clash: 80\/TCP is already used by spec.ports\[0\]/ },
    { title: 'bad clusterIP', doc: serviceDoc('{clusterIP: 10.96.0.300}'), field: 'spec.clusterIP', message: /got "10.96.0.300"/ },
    { title: 'bad clusterIPs entry', doc: serviceDoc('{clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1, nope]}'), field: 'spec.clusterIPs[1]', message: /IPv4\/IPv6/ },
    { title: 'clusterIPs disagree', doc: serviceDoc('{clusterIP: 10.96.0.1, clusterIPs: [10.96.0.2]}'), field: 'spec.clusterIPs[0]', message: /must equal spec.clusterIP/ },
    { title: 'bad type', doc: serviceDoc('{type: Internal}'), field: 'spec.type', message: /must be one of ClusterIP, NodePort, LoadBalancer, ExternalName/ },
    { title: 'bad affinity', doc: serviceDoc('{sessionAffinity: Cookie}'), field: 'spec.sessionAffinity', message: /None, ClientIP/ },
    { title: 'affinity timeout too big', doc: serviceDoc('{sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}'), field: 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', message: /1 to 86400 \(got 86401\)/ },
    { title: 'bad internalTrafficPolicy', doc: serviceDoc('{internalTrafficPolicy: Node}'), field: 'spec.internalTrafficPolicy', message: /Cluster, Local/ },
    { title: 'ports not a list', doc: serviceDoc('{ports: 80}'), field: 'spec.ports', message: /^must be a list \(got 80\)$/ },
    { title: 'non-string label', doc: serviceDoc('{}', '{name: web, namespace: shop, labels: {version: 2}}'), field: 'metadata.labels.version', message: /^must be a string \(got 2\)$/ },
    { title: 'bad name', doc: serviceDoc('{}', '{name: Web_1, namespace: shop}'), field: 'metadata.name', message: /RFC 1123/ },
    { title: 'bad namespace', doc: serviceDoc('{}', '{name: web, namespace: Shop}'), field: 'metadata.namespace', message: /RFC 1123/ },
  ];
  for (const c of cases) {
    it(`rejects ${c.title}`, () => {
      // The bad document is the second one, after a valid Service that must still load.
      const text = serviceDoc('{ports: [{port: 80}]}', '{name: fine}') + '---\n' + c.doc;
      const r = parseManifestText('dir/bad.yaml', text);
      assert.deepEqual(services(r).map((s) => s.name), ['fine']);
      assert.equal(r.errors.length, 1, r.errors.map(formatManifestError).join('\n'));
      const e = r.errors[0] as ManifestError;
      assert.equal(e.file, 'dir/bad.yaml');
      assert.equal(e.documentIndex, 2);
      assert.equal(e.kind, 'Service');
      assert.equal(e.field, c.field);
      assert.match(e.message, c.message);
      if (c.title !== 'bad name') {
        assert.equal(`${e.namespace}/${e.name}`, c.title === 'bad namespace' ? 'Shop/web' : 'shop/web');
      }
      assert.deepEqual(r.invalid.map((i) => i.documentIndex), [2]);
    });
  }

  it('reports a missing name without an identity', () => {
    const r = parseManifestText('a.yaml', serviceDoc('{}', '{namespace: shop}'));
    assert.deepEqual(r.errors, [{ file: 'a.yaml', documentIndex: 1, kind: 'Service', field: 'metadata.name', message: 'required' }]);
    assert.deepEqual(r.invalid, [{ documentIndex: 1 }]);
  });

  it('formats an error on one line', () => {
    const r = parseManifestText('examples/bad.yaml', '{}\n---\n' + serviceDoc('{ports: [{port: 70000}]}', '{name: web}'));
    assert.deepEqual(r.errors.slice(1).map(formatManifestError), [
      'examples/bad.yaml doc 2 Service default/web: spec.ports[0].port: must be an integer from 1 to 65535 (got 70000)',
    ]);
  });
});

describe('parseManifestText: EndpointSlice', () => {
  it('applies condition defaults and reads ports', () => {
    const yaml = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080}
- {name: dns, port: 53, protocol: UDP}
endpoints:
- addresses: [10.0.0.1]
  nodeName: node-a
  targetRef: {kind: Pod, name: web-1}
- addresses: [10.0.0.2]
  conditions: {ready: false}
- addresses: [10.0.0.3]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [10.0.0.4]
  conditions: {}
`;
    const r = parseManifestText('s.yaml', yaml);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(slices(r), [
      {
        namespace: 'shop',
        name: 'web-abc12',
        serviceName: 'web',
        addressType: 'IPv4',
        ports: [
          { name: 'http', protocol: 'TCP', port: 8080 },
          { name: 'dns', protocol: 'UDP', port: 53 },
        ],
        endpoints: [
          { addresses: ['10.0.0.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a', targetName: 'web-1' },
          { addresses: ['10.0.0.2'], conditions: { ready: false, serving: false, terminating: false } },
          { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true } },
          { addresses: ['10.0.0.4'], conditions: { ready: true, serving: true, terminating: false } },
        ],
      },
    ]);
  });

  it('accepts the nulls kubectl prints for an empty slice', () => {
    const yaml = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-x, labels: {kubernetes.io/service-name: web}, creationTimestamp: null}
addressType: IPv6
endpoints: null
ports: null
`;
    const r = parseManifestText('s.yaml', yaml);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(slices(r), [{ namespace: 'default', name: 'web-x', serviceName: 'web', addressType: 'IPv6', ports: [], endpoints: [] }]);
  });

  const cases: Array<{ title: string; body: string; field: string; message: RegExp }> = [
    { title: 'missing service-name label', body: 'metadata: {name: s1}\naddressType: IPv4\n', field: 'metadata.labels["kubernetes.io/service-name"]', message: /required/ },
    { title: 'IPv6 address in an IPv4 slice', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: ["fd00::1"]}]\n', field: 'endpoints[0].addresses[0]', message: /valid IPv4 address/ },
    { title: 'garbage address', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv6\nendpoints: [{addresses: [10.0.0.1]}]\n', field: 'endpoints[0].addresses[0]', message: /valid IPv6 address/ },
    { title: 'no addresses', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: []}]\n', field: 'endpoints[0].addresses', message: /at least one address/ },
    { title: 'bad addressType', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IP\n', field: 'addressType', message: /IPv4, IPv6, FQDN/ },
    { title: 'bad port', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: -1}]\n', field: 'ports[0].port', message: /got -1/ },
    { title: 'bad ready', body: 'metadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: "yes"}}]\n', field: 'endpoints[0].conditions.ready', message: /must be a boolean/ },
  ];
  for (const c of cases) {
    it(`rejects ${c.title}`, () => {
      const r = parseManifestText('s.yaml', `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n${c.body}`);
      assert.equal(r.errors.length, 1, r.errors.map(formatManifestError).join('\n'));
      assert.deepEqual(
        { ...r.errors[0], message: undefined },
        { file: 's.yaml', documentIndex: 1, kind: 'EndpointSlice', namespace: 'default', name: 's1', field: c.field, message: undefined },
      );
      assert.match(r.errors[0]?.message ?? '', c.message);
      assert.deepEqual(r.objects, []);
    });
  }

  it('rejects an older apiVersion instead of ignoring it', () => {
    const r = parseManifestText('s.yaml', 'apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s1}\naddressType: IPv4\n');
    assert.equal(r.errors[0]?.field, 'apiVersion');
    assert.match(r.errors[0]?.message ?? '', /unsupported apiVersion "discovery.k8s.io\/v1beta1".*discovery.k8s.io\/v1/);
  });
});

describe('parseManifestText: legacy Endpoints', () => {
  it('turns each subset into a slice', () => {
    const yaml = `apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: shop}
subsets:
- addresses:
  - {ip: 10.0.0.1, nodeName: node-a, targetRef: {kind: Pod, name: web-1}}
  notReadyAddresses:
  - {ip: 10.0.0.2}
  ports: [{name: http, port: 8080}]
- addresses: [{ip: "fd00::5"}]
  ports: [{name: dns, port: 53, protocol: UDP}]
`;
    const r = parseManifestText('e.yaml', yaml);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(slices(r), [
      {
        namespace: 'shop',
        name: 'web',
        serviceName: 'web',
        addressType: 'IPv4',
        ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
        endpoints: [
          { addresses: ['10.0.0.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a', targetName: 'web-1' },
          { addresses: ['10.0.0.2'], conditions: { ready: false, serving: false, terminating: false } },
        ],
      },
      {
        namespace: 'shop',
        name: 'web#1',
        serviceName: 'web',
        addressType: 'IPv6',
        ports: [{ name: 'dns', protocol: 'UDP', port: 53 }],
        endpoints: [{ addresses: ['fd00::5'], conditions: { ready: true, serving: true, terminating: false } }],
      },
    ]);
    assert.ok(r.objects.every((o) => o.source.kind === 'Endpoints' && o.source.name === 'web'));
  });

  it('yields no slices without subsets', () => {
    const r = parseManifestText('e.yaml', 'apiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\n');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.objects, []);
  });

  it('rejects bad addresses and mixed families', () => {
    const r = parseManifestText(
      'e.yaml',
      'apiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\nsubsets:\n- addresses: [{ip: 10.0.0.x}]\n- addresses: [{ip: 10.0.0.1}, {ip: "fd00::1"}]\n',
    );
    assert.deepEqual(
      r.errors.map((e) => [e.kind, e.name, e.field]),
      [
        ['Endpoints', 'web', 'subsets[0].addresses[0].ip'],
        ['Endpoints', 'web', 'subsets[1]'],
      ],
    );
    assert.match(r.errors[1]?.message ?? '', /mixes IPv4 and IPv6/);
  });
});

describe('parseManifestText: documents and lists', () => {
  it('unrolls kind: List and typed lists, naming item fields', () => {
    const yaml = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{port: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: ignored}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
  spec: {ports: [{port: 0}]}
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: c, namespace: other}
  spec: {ports: [{port: 81}]}
`;
    const r = parseManifestText('l.yaml', yaml);
    assert.deepEqual(services(r).map((s) => `${s.namespace}/${s.name}`), ['default/a', 'other/c']);
    assert.deepEqual(r.objects.map((o) => o.documentIndex), [1, 2]);
    assert.deepEqual(r.errors.map(formatManifestError), ['l.yaml doc 1 Service default/b: items[2].spec.ports[0].port: must be an integer from 1 to 65535 (got 0)']);
  });

  it('ignores other kinds and empty documents, keeps counting documents', () => {
    const yaml = `---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
---
---
apiVersion: v1
kind: Service
metadata: {name: web}
`;
    const r = parseManifestText('m.yaml', yaml);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.objects.map((o) => [o.documentIndex, o.object.value.name]), [[4, 'web']]);
  });

  it('reports documents that are not Kubernetes objects', () => {
    const r = parseManifestText('m.yaml', '- a\n- b\n---\nfoo: bar\n');
    assert.deepEqual(r.errors.map(formatManifestError), [
      'm.yaml doc 1: expected a Kubernetes object (a mapping with apiVersion and kind)',
      'm.yaml doc 2: kind: required (not a Kubernetes object?)',
    ]);
  });

  it('reads JSON through the same parser', () => {
    const json = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'j' }, spec: { ports: [{ port: 443, name: 'https' }] } }] });
    const r = parseManifestText('j.json', json);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(services(r)[0]?.ports, [{ name: 'https', protocol: 'TCP', port: 443, targetPort: 443 }]);
  });

  it('reads a JSON document exactly as the YAML parser does (JSON.parse fast path)', () => {
    const doc = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'j', namespace: 'shop', labels: { a: 'b' } }, spec: { clusterIP: '10.96.0.9', ports: [{ port: 443, name: 'https', targetPort: 8443 }] } },
        { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'j-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'j' } }, addressType: 'IPv4', ports: [{ name: 'https', port: 8443 }], endpoints: [{ addresses: ['10.244.1.2'], conditions: { ready: true } }] },
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'bad' }, spec: { ports: [{ port: 70000 }] } },
      ],
    };
    const json = JSON.stringify(doc, null, 2);
    // A leading comment is not JSON, so this copy goes through the YAML parser.
    assert.deepEqual(parseManifestText('j.json', json), parseManifestText('j.json', `# yaml\n${json}`));
    assert.equal(services(parseManifestText('j.json', json)).length, 1);
    assert.equal(slices(parseManifestText('j.json', json)).length, 1);
    assert.deepEqual(parseManifestText('n.json', 'null'), parseManifestText('n.json', '# yaml\nnull'));
  });

  it('sends text that JSON.parse refuses through YAML, with its line numbers', () => {
    const r = parseManifestText('b.json', '{"apiVersion": "v1",\n "kind": "Service",\n "metadata": {"name": [}\n}');
    assert.equal(r.syntaxError, true);
    assert.match(r.errors[0]?.message ?? '', /line 3/);
    // YAML flow style starting with "{" is not JSON but is still read.
    assert.equal(services(parseManifestText('f.yaml', '{apiVersion: v1, kind: Service, metadata: {name: f}, spec: {ports: [{port: 80}]}}')).length, 1);
  });

  it('treats a YAML syntax error as fatal for the whole file, naming the line', () => {
    const text = serviceDoc('{ports: [{port: 80}]}', '{name: fine}') + '---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n';
    const r = parseManifestText('y.yaml', text);
    assert.equal(r.syntaxError, true);
    assert.deepEqual(r.objects, []);
    assert.ok(r.errors.length >= 1);
    assert.equal(r.errors[0]?.file, 'y.yaml');
    assert.equal(r.errors[0]?.documentIndex, 2);
    assert.equal(typeof r.errors[0]?.line, 'number');
    assert.match(formatManifestError(r.errors[0] as ManifestError), /^y\.yaml doc 2: YAML syntax error at line \d+, column \d+: /);
  });

  it('treats duplicate mapping keys as a syntax error', () => {
    const r = parseManifestText('d.yaml', 'apiVersion: v1\nkind: Service\nkind: Service\nmetadata: {name: x}\n');
    assert.equal(r.syntaxError, true);
    assert.match(r.errors[0]?.message ?? '', /line 3/);
  });
});
