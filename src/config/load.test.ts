import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from './load.ts';

test('defaults', () => {
  const c = parseConfig({}, 'x');
  assert.equal(c.layout, 'portals');
  assert.equal(c.serviceFilterMode, 'FilterIfLabelExists');
  assert.deepEqual(c.ignoreServices, []);
  assert.equal(c.iptables.syncPeriod, 5000);
  assert.equal(c.iptables.minSyncPeriod, 1000);
  assert.equal(c.proxy.connectTimeout, 2000);
  assert.equal(c.proxy.bindAddress, '0.0.0.0');
  assert.equal(c.log.level, 'info');
});

test('durations and nested fields parse', () => {
  const c = parseConfig({ iptables: { syncPeriod: '1m30s', minSyncPeriod: '250ms' }, layout: 'edge-mesh', serviceCIDR: '10.96.0.0/16' }, 'x');
  assert.equal(c.iptables.syncPeriod, 90_000);
  assert.equal(c.iptables.minSyncPeriod, 250);
  assert.equal(c.layout, 'edge-mesh');
  assert.equal(c.serviceCIDR, '10.96.0.0/16');
});

test('proxy.portRange: absent or "" = kernel-chosen, "FROM-TO" parsed', () => {
  assert.equal(parseConfig({}, 'x').proxy.portRange, undefined);
  assert.equal(parseConfig({ proxy: { portRange: '' } }, 'x').proxy.portRange, undefined);
  assert.deepEqual(parseConfig({ proxy: { portRange: '40000-49999' } }, 'x').proxy.portRange, { from: 40000, to: 49999 });
});

const bad: Array<[string, unknown, RegExp]> = [
  ['unknown top-level field', { layuot: 'portals' }, /cfg\.yaml: invalid config:\n {2}layuot: unknown field/],
  ['unknown nested field', { iptables: { syncPeriodd: '1s' } }, /iptables\.syncPeriodd: unknown field/],
  ['bad enum', { layout: 'nft' }, /layout: /],
  ['bad duration', { iptables: { syncPeriod: 'soon' } }, /iptables\.syncPeriod: not a duration/],
  ['bad CIDR', { serviceCIDR: '10.96.0.0' }, /serviceCIDR: must be an IPv4 CIDR/],
  ['bad ignore entry', { ignoreServices: ['web'] }, /ignoreServices\.0: must be "namespace\/name"/],
  ['bad bind address', { proxy: { bindAddress: 'localhost' } }, /proxy\.bindAddress: must be an IPv4 address/],
  ['port range below 1024', { proxy: { portRange: '80-90' } }, /proxy\.portRange: must satisfy 1024 ≤ FROM ≤ TO ≤ 65535/],
  ['port range not FROM-TO', { proxy: { portRange: '40000' } }, /proxy\.portRange: must be "FROM-TO"/],
];
for (const [name, value, pattern] of bad) {
  test(`rejects ${name}`, () => {
    assert.throws(() => parseConfig(value, 'cfg.yaml'), pattern);
  });
}
