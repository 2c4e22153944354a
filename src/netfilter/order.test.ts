import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkJumpOrder } from './order.ts';
import { parseNatSave } from './save.ts';
import type { JumpRule } from '../rules/types.ts';

const jumps: JumpRule[] = [
  { chain: 'PREROUTING', target: 'KUBE-PORTALS-CONTAINER', comment: 'c' },
  { chain: 'OUTPUT', target: 'KUBE-PORTALS-HOST', comment: 'c' },
];
const nat = (lines: string[]) => parseNatSave(['*nat', ...lines, 'COMMIT'].join('\n'));
const ks = (chain: string) => `-A ${chain} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`;
const ours = (chain: string, target: string) => `-A ${chain} -m comment --comment c -j ${target}`;

test('checkJumpOrder: ours first in both chains', () => {
  const r = checkJumpOrder(
    nat([ours('PREROUTING', 'KUBE-PORTALS-CONTAINER'), ks('PREROUTING'), ours('OUTPUT', 'KUBE-PORTALS-HOST'), ks('OUTPUT')]),
    jumps,
  );
  assert.deepEqual(r, [
    { chain: 'PREROUTING', target: 'KUBE-PORTALS-CONTAINER', positions: [1], expectedPosition: 1, kubeServicesPosition: 2, first: true },
    { chain: 'OUTPUT', target: 'KUBE-PORTALS-HOST', positions: [1], expectedPosition: 1, kubeServicesPosition: 2, first: true },
  ]);
});

test('checkJumpOrder: wrong orders explained', () => {
  const r = checkJumpOrder(nat([ks('PREROUTING'), ks('OUTPUT'), ours('OUTPUT', 'KUBE-PORTALS-HOST')]), jumps);
  assert.deepEqual(
    r.map((o) => [o.positions, o.kubeServicesPosition, o.first, o.message]),
    [
      [
        [],
        1,
        false,
        'PREROUTING: no jump to KUBE-PORTALS-CONTAINER (KUBE-SERVICES is at position 1): proxied services are not intercepted and go to kube-proxy. edgeproxy repairs this on its next sync.',
      ],
      [
        [2],
        1,
        false,
        "OUTPUT: KUBE-SERVICES (position 1) is before KUBE-PORTALS-HOST (position 2): kube-proxy will DNAT proxied services first; clients may see 'No route to host'. edgeproxy repairs this on its next sync.",
      ],
    ],
  );
});

test('checkJumpOrder: duplicates and other rules in front', () => {
  const r = checkJumpOrder(
    nat([
      '-A PREROUTING -j OTHER',
      ours('PREROUTING', 'KUBE-PORTALS-CONTAINER'),
      ks('PREROUTING'),
      ours('OUTPUT', 'KUBE-PORTALS-HOST'),
      ks('OUTPUT'),
      ours('OUTPUT', 'KUBE-PORTALS-HOST'),
    ]),
    jumps,
  );
  assert.equal(
    r[0]?.message,
    'PREROUTING: KUBE-PORTALS-CONTAINER is at position 2, expected 1: the rules before it see proxied traffic first. edgeproxy repairs this on its next sync.',
  );
  assert.equal(
    r[1]?.message,
    'OUTPUT: KUBE-PORTALS-HOST is jumped to 2 times (positions 1, 3). edgeproxy repairs this on its next sync.',
  );
});

test('checkJumpOrder: no KUBE-SERVICES (kube-proxy absent)', () => {
  const r = checkJumpOrder(nat([ours('PREROUTING', 'KUBE-PORTALS-CONTAINER')]), jumps);
  assert.equal(r[0]?.first, true);
  assert.equal(r[0]?.kubeServicesPosition, undefined);
  assert.equal(r[1]?.message, 'OUTPUT: no jump to KUBE-PORTALS-HOST: proxied services are not intercepted and go to kube-proxy. edgeproxy repairs this on its next sync.');
});
