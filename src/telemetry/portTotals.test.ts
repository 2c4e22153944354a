import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProxyPortStats } from '../proxy/manager.ts';
import { PORT_METRIC_NAMES, portSamples } from './portMetrics.ts';
import { PortTotals } from './portTotals.ts';

const backend = { ip: '10.244.1.2', port: 8080, ready: true, serving: true, terminating: false };

const tcp = (portName: string, accepted: number, active = 1): ProxyPortStats => ({
  id: `${portName}/TCP`,
  portName,
  protocol: 'TCP',
  listenPort: 40000,
  backends: [backend],
  usableBackends: [backend],
  counters: { accepted, active, failed: 0, bytesIn: 10 * accepted, bytesOut: 0, dialErrors: 0, refused: 1, ejections: 0, idleClosed: 0 },
});

const udp = (portName: string, datagramsIn: number): ProxyPortStats => ({
  id: `${portName}/UDP`,
  portName,
  protocol: 'UDP',
  listenPort: 40001,
  backends: [],
  usableBackends: [],
  counters: {
    flowsActive: 2,
    flowsCreated: 0,
    flowsExpired: 0,
    evictions: 0,
    flowsRerouted: 0,
    datagramsIn,
    datagramsOut: 0,
    bytesIn: 5,
    bytesOut: 0,
    drops: 0,
    upstreamErrors: 0,
    sendErrors: 0,
  },
});

/** sample line prefix → value */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe('PortTotals (metricsPerServicePort: false)', () => {
  it('sums each family per protocol, with no service_port label, families in the per-port order', () => {
    const text = new PortTotals().text([tcp('a/x:http', 3), tcp('a/y:http', 4), udp('kube-system/dns:dns', 7)]);
    const got = samples(text);
    assert.equal(got.get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 7);
    assert.equal(got.get('edgeproxy_connections_active{protocol="TCP"}'), 2);
    assert.equal(got.get('edgeproxy_connections_refused_total{protocol="TCP",reason="limit"}'), 2);
    assert.equal(got.get('edgeproxy_bytes_in_total{protocol="TCP"}'), 70);
    assert.equal(got.get('edgeproxy_bytes_in_total{protocol="UDP"}'), 5);
    assert.equal(got.get('edgeproxy_usable_backends{protocol="TCP"}'), 2);
    assert.equal(got.get('edgeproxy_udp_datagrams_total{protocol="UDP",direction="in"}'), 7);
    assert.ok(!text.includes('service_port'));
    // TCP-only families have no UDP sample, and the other way round.
    assert.ok(!got.has('edgeproxy_connections_accepted_total{protocol="UDP"}'));
    assert.ok(!got.has('edgeproxy_udp_flows_active{protocol="TCP"}'));
    const families = text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    assert.deepEqual(families, PORT_METRIC_NAMES);
    // One series per sample a port of each protocol has, however many ports.
    assert.equal(got.size, portSamples('TCP').length + portSamples('UDP').length);
  });

  it('no ports ever: no text', () => {
    assert.equal(new PortTotals().text([]), '');
  });

  it('a removed port keeps its counts in the counters, so they never go down; gauges drop it', () => {
    const totals = new PortTotals();
    totals.text([tcp('a/x:http', 3), tcp('a/y:http', 4)]);
    const after = samples(totals.text([tcp('a/y:http', 5)]));
    assert.equal(after.get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 8);
    assert.equal(after.get('edgeproxy_connections_active{protocol="TCP"}'), 1);
    // Every TCP port gone: the counters stay, the gauges go.
    const none = samples(totals.text([]));
    assert.equal(none.get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 8);
    assert.equal(none.get('edgeproxy_bytes_in_total{protocol="TCP"}'), 80);
    assert.ok(!none.has('edgeproxy_connections_active{protocol="TCP"}'));
    assert.ok(!none.has('edgeproxy_usable_backends{protocol="TCP"}'));
    // Counted once: later scrapes do not add it again.
    assert.equal(samples(totals.text([])).get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 8);
  });

  it('a new listener for the same port (counters back to 0) keeps the old one\'s counts', () => {
    const totals = new PortTotals();
    totals.text([tcp('a/x:http', 10)]);
    const after = samples(totals.text([tcp('a/x:http', 2)]));
    assert.equal(after.get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 12);
    assert.equal(samples(totals.text([tcp('a/x:http', 3)])).get('edgeproxy_connections_accepted_total{protocol="TCP"}'), 13);
  });

  it('10,000 ports: a few dozen lines instead of one per port and family', () => {
    const ports = Array.from({ length: 10_000 }, (_, i) => tcp(`bench/svc-${i}:http`, i));
    const text = new PortTotals().text(ports);
    assert.ok(text.split('\n').length < 60, `${text.split('\n').length} lines`);
    assert.equal(samples(text).get('edgeproxy_connections_accepted_total{protocol="TCP"}'), (9999 * 10_000) / 2);
  });
});
