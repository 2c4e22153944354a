import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, SERVICE_PROXY_NAME_LABEL, type FilterConfig } from './filter.ts';
import { makeService } from '../model/fixtures.ts';
import type { Service } from '../model/types.ts';

const exists: FilterConfig = { serviceFilterMode: 'FilterIfLabelExists', ignoreServices: [] };
const doesNotExist: FilterConfig = { serviceFilterMode: 'FilterIfLabelDoesNotExists', ignoreServices: [] };
const withList: FilterConfig = { serviceFilterMode: 'FilterIfLabelExists', ignoreServices: ['shop/cart'] };

const kubeDns = makeService({ namespace: 'kube-system', name: 'coredns', labels: { 'k8s-app': 'kube-dns' }, clusterIP: '10.96.0.10' });
const kubernetes = makeService({ name: 'kubernetes', clusterIP: '10.96.0.1' });
const web = makeService({ name: 'web' });
const labelled = makeService({ name: 'grafana', labels: { [SERVICE_PROXY_NAME_LABEL]: '' } });
const noproxy = makeService({ name: 'prom', labels: { noproxy: 'edgemesh' } });
const headless = makeService({ name: 'db', clusterIP: 'None' });
const headlessLabelled = makeService({ name: 'node-exporter', clusterIP: 'None', labels: { noproxy: 'edgemesh' } });
const external = makeService({ name: 'ext', type: 'ExternalName', clusterIP: undefined });
const noIP = makeService({ name: 'pending', clusterIP: '' });
const cart = makeService({ namespace: 'shop', name: 'cart' });
const dnsLookalike = makeService({ namespace: 'default', name: 'my-dns', labels: { 'k8s-app': 'kube-dns' } });

const cases: Array<[string, Service, FilterConfig, boolean, boolean, RegExp]> = [
  // name, service, config, proxied, filtered, reason
  ['plain service is proxied', web, exists, true, false, /no filter matches/],
  ['kube-dns ignored by default', kubeDns, exists, false, true, /cluster DNS/],
  ['kube-dns ignored in the other mode too', kubeDns, doesNotExist, false, true, /cluster DNS/],
  ['k8s-app=kube-dns outside kube-system is not special', dnsLookalike, exists, true, false, /no filter matches/],
  ['default/kubernetes ignored', kubernetes, exists, false, true, /default\/kubernetes/],
  ['label present, FilterIfLabelExists', labelled, exists, false, true, /present \(serviceFilterMode FilterIfLabelExists\)/],
  ['label present, FilterIfLabelDoesNotExists', labelled, doesNotExist, true, false, /present \(serviceFilterMode FilterIfLabelDoesNotExists\)/],
  ['label absent, FilterIfLabelDoesNotExists', web, doesNotExist, false, true, /absent/],
  ['legacy noproxy=edgemesh', noproxy, exists, false, true, /noproxy=edgemesh/],
  ['ignoreServices list', cart, withList, false, true, /ignoreServices/],
  ['headless is not proxied, not filtered', headless, exists, false, false, /headless/],
  ['headless with filter label is filtered', headlessLabelled, exists, false, true, /noproxy=edgemesh \(headless\)/],
  ['ExternalName', external, exists, false, false, /ExternalName/],
  ['no ClusterIP', noIP, exists, false, false, /no ClusterIP/],
];

for (const [name, svc, config, proxied, filtered, reason] of cases) {
  test(name, () => {
    const d = decide(svc, config);
    assert.equal(d.proxied, proxied);
    if (!d.proxied) assert.equal(d.filtered, filtered);
    assert.match(d.reason, reason);
  });
}
