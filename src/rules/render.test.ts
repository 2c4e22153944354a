import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderRules } from './render.ts';
import { jumpRuleSpec, quoteString } from './syntax.ts';
import type { DesiredRules } from './types.ts';

// Given out of order on purpose: the renderer sorts by clusterIP (numerically), protocol, port.
const proxied: DesiredRules['proxied'] = [
  { portName: 'default/echo-udp:p', clusterIP: '10.96.30.30', protocol: 'UDP', port: 99, listenPort: 40125 },
  { portName: 'default/web:http', clusterIP: '10.96.10.10', protocol: 'TCP', port: 80, listenPort: 40123 },
  { portName: 'default/sticky:http', clusterIP: '10.96.10.12', protocol: 'TCP', port: 82, listenPort: 40124 },
  { portName: 'default/web:metrics', clusterIP: '10.96.10.10', protocol: 'TCP', port: 9090, listenPort: 40127 },
  { portName: 'default/mixed', clusterIP: '10.96.9.200', protocol: 'UDP', port: 53, listenPort: 40128 },
  { portName: 'default/mixed', clusterIP: '10.96.9.200', protocol: 'TCP', port: 53, listenPort: 40129 },
];

const ignored: DesiredRules['ignored'] = [
  { key: 'kube-system/kube-dns', ips: ['10.96.0.10'] },
  { key: 'default/kubernetes', ips: ['10.96.0.1'] },
  // headless: one RETURN per endpoint address
  { key: 'monitoring/node-exporter', ips: ['192.168.132.38', '192.168.132.19'] },
];

const base: DesiredRules = { layout: 'portals', family: 'ipv4', proxied, ignored };

const portalsRules = (chain: string) => [
  `-A ${chain} -d 10.96.9.200/32 -p tcp -m comment --comment "default/mixed" -m tcp --dport 53 -j REDIRECT --to-ports 40129`,
  `-A ${chain} -d 10.96.9.200/32 -p udp -m comment --comment "default/mixed" -m udp --dport 53 -j REDIRECT --to-ports 40128`,
  `-A ${chain} -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 40123`,
  `-A ${chain} -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:metrics" -m tcp --dport 9090 -j REDIRECT --to-ports 40127`,
  `-A ${chain} -d 10.96.10.12/32 -p tcp -m comment --comment "default/sticky:http" -m tcp --dport 82 -j REDIRECT --to-ports 40124`,
  `-A ${chain} -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40125`,
];

const edgeMeshReturns = [
  '-A EDGE-MESH -d 10.96.0.1/32 -m comment --comment "ignore default/kubernetes service" -j RETURN',
  '-A EDGE-MESH -d 10.96.0.10/32 -m comment --comment "ignore kube-system/kube-dns service" -j RETURN',
  '-A EDGE-MESH -d 192.168.132.19/32 -m comment --comment "ignore monitoring/node-exporter service" -j RETURN',
  '-A EDGE-MESH -d 192.168.132.38/32 -m comment --comment "ignore monitoring/node-exporter service" -j RETURN',
];

const edgeMeshServiceRules = [
  '-A EDGE-MESH-TCP -d 10.96.9.200/32 -p tcp -m comment --comment "default/mixed" -m tcp --dport 53 -j REDIRECT --to-ports 40129',
  '-A EDGE-MESH-TCP -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 40123',
  '-A EDGE-MESH-TCP -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:metrics" -m tcp --dport 9090 -j REDIRECT --to-ports 40127',
  '-A EDGE-MESH-TCP -d 10.96.10.12/32 -p tcp -m comment --comment "default/sticky:http" -m tcp --dport 82 -j REDIRECT --to-ports 40124',
  '-A EDGE-MESH-UDP -d 10.96.9.200/32 -p udp -m comment --comment "default/mixed" -m udp --dport 53 -j REDIRECT --to-ports 40128',
  '-A EDGE-MESH-UDP -d 10.96.30.30/32 -p udp -m comment --comment "default/echo-udp:p" -m udp --dport 99 -j REDIRECT --to-ports 40125',
];

const portalsJumps = [
  { chain: 'PREROUTING', target: 'KUBE-PORTALS-CONTAINER', comment: 'handle ClusterIPs; NOTE: this must be before the NodePort rules' },
  { chain: 'OUTPUT', target: 'KUBE-PORTALS-HOST', comment: 'handle ClusterIPs; NOTE: this must be before the NodePort rules' },
];
const edgeMeshJumps = [
  { chain: 'PREROUTING', target: 'EDGE-MESH', comment: 'edgemesh root chain' },
  { chain: 'OUTPUT', target: 'EDGE-MESH', comment: 'edgemesh root chain' },
];

const cases: Array<{ name: string; desired: DesiredRules; expected: ReturnType<typeof renderRules> }> = [
  {
    name: 'portals: proxied ports in both chains, ignored services get nothing',
    desired: base,
    expected: {
      chains: ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST'],
      jumps: portalsJumps as ReturnType<typeof renderRules>['jumps'],
      rules: [...portalsRules('KUBE-PORTALS-CONTAINER'), ...portalsRules('KUBE-PORTALS-HOST')],
    },
  },
  {
    name: 'portals: nothing proxied still creates both chains',
    desired: { ...base, proxied: [], ignored: [] },
    expected: {
      chains: ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST'],
      jumps: portalsJumps as ReturnType<typeof renderRules>['jumps'],
      rules: [],
    },
  },
  {
    name: 'edge-mesh with serviceCIDR',
    desired: { ...base, layout: 'edge-mesh', serviceCIDR: '10.96.0.0/16' },
    expected: {
      chains: ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'],
      jumps: edgeMeshJumps as ReturnType<typeof renderRules>['jumps'],
      rules: [
        ...edgeMeshReturns,
        '-A EDGE-MESH -d 10.96.0.0/16 -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP',
        '-A EDGE-MESH -d 10.96.0.0/16 -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP',
        ...edgeMeshServiceRules,
      ],
    },
  },
  {
    name: 'edge-mesh without serviceCIDR omits -d on the protocol jumps',
    desired: { ...base, layout: 'edge-mesh' },
    expected: {
      chains: ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'],
      jumps: edgeMeshJumps as ReturnType<typeof renderRules>['jumps'],
      rules: [
        ...edgeMeshReturns,
        '-A EDGE-MESH -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP',
        '-A EDGE-MESH -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP',
        ...edgeMeshServiceRules,
      ],
    },
  },
  {
    name: 'edge-mesh: CIDR host bits cleared as iptables-save prints them; non-IPv4 and SCTP skipped',
    desired: {
      layout: 'edge-mesh',
      family: 'ipv4',
      serviceCIDR: '10.96.7.1/16',
      proxied: [
        { portName: 'default/v6', clusterIP: 'fd00::10', protocol: 'TCP', port: 80, listenPort: 40200 },
        { portName: 'default/sctp:s', clusterIP: '10.96.5.5', protocol: 'SCTP', port: 9, listenPort: 40201 },
      ],
      ignored: [
        { key: 'default/dual', ips: ['10.96.0.20', 'fd00::20'] },
        { key: 'default/dual', ips: ['10.96.0.20'] },
      ],
    },
    expected: {
      chains: ['EDGE-MESH', 'EDGE-MESH-TCP', 'EDGE-MESH-UDP'],
      jumps: edgeMeshJumps as ReturnType<typeof renderRules>['jumps'],
      rules: [
        '-A EDGE-MESH -d 10.96.0.20/32 -m comment --comment "ignore default/dual service" -j RETURN',
        '-A EDGE-MESH -d 10.96.0.0/16 -p tcp -m comment --comment "tcp service proxy" -j EDGE-MESH-TCP',
        '-A EDGE-MESH -d 10.96.0.0/16 -p udp -m comment --comment "udp service proxy" -j EDGE-MESH-UDP',
      ],
    },
  },
];

for (const c of cases) {
  test(`renderRules: ${c.name}`, () => {
    const { byChain, ...rendered } = renderRules(c.desired);
    assert.deepEqual(rendered, c.expected);
    // The per-chain grouping, where given, holds exactly the rules, chain by chain.
    if (byChain !== undefined) assert.deepEqual(rendered.chains.flatMap((chain) => byChain.get(chain) ?? []), rendered.rules);
  });
}

test('renderRules: output does not depend on input order', () => {
  const reversed: DesiredRules = { ...base, layout: 'edge-mesh', proxied: [...proxied].reverse(), ignored: [...ignored].reverse() };
  assert.deepEqual(renderRules(reversed), renderRules({ ...base, layout: 'edge-mesh' }));
});

test('renderRules: rejects a malformed serviceCIDR', () => {
  assert.throws(() => renderRules({ ...base, layout: 'edge-mesh', serviceCIDR: '10.96.0.0/40' }), /invalid IPv4 service CIDR/);
});

test('quoteString follows xtables_save_string', () => {
  const table: Array<[string, string]> = [
    ['plain_Word-1', 'plain_Word-1'],
    ['default/web:http', '"default/web:http"'],
    ['tcp service proxy', '"tcp service proxy"'],
    [`a'b"c\\d`, `"a\\'b\\"c\\\\d"`],
  ];
  for (const [input, want] of table) assert.equal(quoteString(input), want);
});

test('jumpRuleSpec', () => {
  assert.equal(
    jumpRuleSpec({ chain: 'OUTPUT', target: 'EDGE-MESH', comment: 'edgemesh root chain' }),
    '-m comment --comment "edgemesh root chain" -j EDGE-MESH',
  );
});
