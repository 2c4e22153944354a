import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProxyPortStats } from '../proxy/manager.ts';
import { createMetrics, type AgentMetrics } from './metrics.ts';

/** One scrape's whole text. */
async function scrapeText(m: AgentMetrics): Promise<string> {
  let text = '';
  for await (const chunk of m.scrape()) text += chunk;
  return text;
}

const backend = { ip: '10.244.1.2', port: 8080, ready: true, serving: true, terminating: false };

function tcpPort(portName: string, accepted: number): ProxyPortStats {
  return {
    id: `${portName}/TCP`,
    portName,
    protocol: 'TCP',
    listenPort: 40000,
    backends: [backend],
    usableBackends: [backend],
    counters: { accepted, active: 1, failed: 2, bytesIn: 10, bytesOut: 20, dialErrors: 3, refused: 4, ejections: 5, idleClosed: 6 },
  };
}

const udpPort: ProxyPortStats = {
  id: 'kube-system/dns:dns/UDP',
  portName: 'kube-system/dns:dns',
  protocol: 'UDP',
  listenPort: 40001,
  backends: [],
  usableBackends: [],
  counters: {
    flowsActive: 1,
    flowsCreated: 2,
    flowsExpired: 3,
    evictions: 4,
    flowsRerouted: 5,
    datagramsIn: 6,
    datagramsOut: 7,
    bytesIn: 8,
    bytesOut: 9,
    drops: 10,
    upstreamErrors: 11,
    sendErrors: 12,
  },
};

describe('createMetrics: per-port metrics', () => {
  it('renders one sample per port, with the stats read once per scrape', async () => {
    let calls = 0;
    let ports: ProxyPortStats[] = [tcpPort('default/web:http', 7), udpPort];
    const m = createMetrics(() => {
      calls++;
      return ports;
    });
    const text = await scrapeText(m);
    assert.equal(calls, 1);
    const lines = text.split('\n');
    for (const want of [
      '# TYPE edgeproxy_connections_accepted_total counter',
      'edgeproxy_connections_accepted_total{service_port="default/web:http",protocol="TCP"} 7',
      '# TYPE edgeproxy_connections_active gauge',
      'edgeproxy_connections_active{service_port="default/web:http",protocol="TCP"} 1',
      'edgeproxy_connections_refused_total{service_port="default/web:http",protocol="TCP",reason="limit"} 4',
      'edgeproxy_bytes_in_total{service_port="kube-system/dns:dns",protocol="UDP"} 8',
      'edgeproxy_usable_backends{service_port="default/web:http",protocol="TCP"} 1',
      'edgeproxy_udp_datagrams_total{service_port="kube-system/dns:dns",protocol="UDP",direction="out"} 7',
      'edgeproxy_udp_datagrams_dropped_total{service_port="kube-system/dns:dns",protocol="UDP",reason="send_failed"} 12',
    ]) {
      assert.ok(lines.includes(want), `missing: ${want}`);
    }
    // TCP-only metrics carry no UDP port, and the other way round.
    assert.ok(!text.includes('edgeproxy_connections_accepted_total{service_port="kube-system/dns:dns"'));
    assert.ok(!text.includes('edgeproxy_udp_flows_active{service_port="default/web:http"'));

    // The next scrape reads afresh; a removed port leaves no sample behind.
    ports = [tcpPort('default/web:http', 9)];
    const again = await scrapeText(m);
    assert.equal(calls, 2);
    assert.ok(again.includes('edgeproxy_connections_accepted_total{service_port="default/web:http",protocol="TCP"} 9'));
    assert.ok(!again.includes('kube-system/dns:dns'));
  });
});

describe('createMetrics: metricsPerServicePort false', () => {
  it('writes the per-port families summed per protocol, with the stats read once per scrape', async () => {
    let calls = 0;
    const m = createMetrics(
      () => {
        calls++;
        return [tcpPort('default/a:http', 1), tcpPort('default/b:http', 2), udpPort];
      },
      { perServicePort: false },
    );
    const text = await scrapeText(m);
    assert.equal(calls, 1);
    const lines = text.split('\n');
    for (const want of [
      'edgeproxy_connections_accepted_total{protocol="TCP"} 3',
      'edgeproxy_connections_refused_total{protocol="TCP",reason="limit"} 8',
      'edgeproxy_bytes_in_total{protocol="UDP"} 8',
      'edgeproxy_udp_datagrams_total{protocol="UDP",direction="out"} 7',
    ]) {
      assert.ok(lines.includes(want), `missing: ${want}`);
    }
    assert.ok(!text.includes('service_port='));
    const types = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    assert.equal(new Set(types).size, types.length, 'no family twice');
  });
});

describe('createMetrics: service port counts, in either mode', () => {
  for (const perServicePort of [true, false]) {
    it(`edgeproxy_service_ports and _without_usable_backends per protocol (perServicePort ${perServicePort})`, async () => {
      const lines = (await scrapeText(createMetrics(() => [tcpPort('default/a:http', 1), tcpPort('default/b:http', 2), udpPort], { perServicePort }))).split('\n');
      for (const want of [
        '# TYPE edgeproxy_service_ports gauge',
        'edgeproxy_service_ports{protocol="TCP"} 2',
        'edgeproxy_service_ports{protocol="UDP"} 1',
        'edgeproxy_service_ports_without_usable_backends{protocol="TCP"} 0',
        'edgeproxy_service_ports_without_usable_backends{protocol="UDP"} 1',
      ]) {
        assert.ok(lines.includes(want), `missing: ${want}`);
      }
    });
  }
});

describe('createMetrics: worker restarts', () => {
  it('edgeproxy_worker_restarts_total reads the proxy at scrape time (0 without workers)', async () => {
    let restarts = 0;
    const m = createMetrics(() => [], { workerRestarts: () => restarts });
    assert.ok((await scrapeText(m)).split('\n').includes('edgeproxy_worker_restarts_total 0'));
    restarts = 2;
    const lines = (await scrapeText(m)).split('\n');
    assert.ok(lines.includes('# TYPE edgeproxy_worker_restarts_total counter'));
    assert.ok(lines.includes('edgeproxy_worker_restarts_total 2'));
    assert.ok((await scrapeText(createMetrics(() => []))).includes('edgeproxy_worker_restarts_total 0'));
  });
});

describe('createMetrics: the agent metrics come first, then the per-port families', () => {
  it('one HELP and TYPE per family, and each family once', async () => {
    const m = createMetrics(() => [tcpPort('default/a:http', 1), tcpPort('default/b:http', 2), udpPort]);
    m.syncErrors.inc();
    const lines = (await scrapeText(m)).split('\n');
    assert.ok(lines.indexOf('edgeproxy_sync_errors_total 1') < lines.indexOf('# TYPE edgeproxy_connections_accepted_total counter'));
    const types = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    assert.equal(new Set(types).size, types.length, 'no family twice');
    const accepted = lines.filter((l) => l.startsWith('edgeproxy_connections_accepted_total{'));
    assert.deepEqual(accepted, [
      'edgeproxy_connections_accepted_total{service_port="default/a:http",protocol="TCP"} 1',
      'edgeproxy_connections_accepted_total{service_port="default/b:http",protocol="TCP"} 2',
    ]);
  });
});
