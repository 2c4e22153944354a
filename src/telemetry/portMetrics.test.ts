import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProxyPortStats } from '../proxy/manager.ts';
import { PORT_METRIC_NAMES, escapeLabelValue, portMetricsText } from './portMetrics.ts';

const tcp = (portName: string, accepted: number): ProxyPortStats => ({
  id: `${portName}/TCP`,
  portName,
  protocol: 'TCP',
  listenPort: 40000,
  backends: [],
  usableBackends: [],
  counters: { accepted, active: 0, failed: 0, bytesIn: 0, bytesOut: 0, dialErrors: 0, refused: 0, ejections: 0, idleClosed: 0 },
});

describe('portMetricsText', () => {
  it('escapes label values as the text format wants (backslash, quote, newline)', () => {
    assert.equal(escapeLabelValue('default/web:http'), 'default/web:http');
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    const text = [...portMetricsText([tcp('ns/we"ird:p', 3)])].join('');
    assert.ok(text.includes('edgeproxy_connections_accepted_total{service_port="ns/we\\"ird:p",protocol="TCP"} 3\n'));
  });

  it('no ports, no text: a family without samples is left out', () => {
    assert.deepEqual([...portMetricsText([])], []);
  });

  it('10,000 ports: chunks of about 64 KB that join into every family with one line per port', () => {
    const ports = Array.from({ length: 10_000 }, (_, i) => tcp(`bench/svc-${i}:http`, i));
    const chunks = [...portMetricsText(ports)];
    assert.ok(chunks.length > 50, `${chunks.length} chunks`);
    for (const c of chunks.slice(0, -1)) assert.ok(c.length >= 64 * 1024 && c.length < 64 * 1024 + 512, `chunk of ${c.length}`);
    const lines = chunks.join('').split('\n');
    assert.equal(lines.filter((l) => l.startsWith('edgeproxy_connections_accepted_total{')).length, 10_000);
    assert.ok(lines.includes('edgeproxy_connections_accepted_total{service_port="bench/svc-9999:http",protocol="TCP"} 9999'));
    // Every TCP and protocol-neutral family, none of the UDP ones.
    const families = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    assert.deepEqual(families, PORT_METRIC_NAMES.filter((n) => !n.startsWith('edgeproxy_udp_')));
  });
});
