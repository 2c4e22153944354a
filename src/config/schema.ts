// The config file's schema: every field, its default, and the errors that name a bad field.
// Field names and meanings follow kube-proxy and EdgeMesh where they exist.
import { z } from 'zod';
import { isIPv4 } from 'node:net';
import { parseDuration } from './duration.ts';
import { parsePortRange } from '../proxy/portAllocator.ts';

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `not a duration like "500ms", "5s" or "1m" (got "${text}")` });
        return z.NEVER;
      }
      return ms;
    });

const cidrV4 = z.string().refine((text) => {
  const [ip, bits, extra] = text.split('/');
  return extra === undefined && ip !== undefined && isIPv4(ip) && bits !== undefined && /^\d+$/.test(bits) && Number(bits) <= 32;
}, 'must be an IPv4 CIDR such as 10.96.0.0/16');

export const configSchema = z.strictObject({
  /** Where services come from. */
  manifests: z.string().min(1).optional(),
  /** The Kubernetes API as a source (besides or instead of the manifest directory). */
  kubernetes: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** kubeconfig file; unset: --kubeconfig, then $KUBECONFIG, then the pod's service account. */
      kubeconfig: z.string().min(1).optional(),
      /** Server-side timeout of each watch request (the watch is then resumed). */
      watchTimeout: duration('5m'),
      /** Restart a watch that showed no list, event or bookmark for this long; "0" = never. */
      watchdog: duration('2m'),
      /** Periodic full relist as a safety net; "0" = never. */
      resyncPeriod: duration('0'),
      /** Ask the API server (GET /apis) again whether the DestinationRule CRD is served; "0" = only at start. */
      discoveryPeriod: duration('5m'),
    })
    .prefault({}),
  /** Rule layout: "portals" (KUBE-PORTALS-CONTAINER/HOST) or "edge-mesh" (EDGE-MESH root chain). */
  layout: z.enum(['portals', 'edge-mesh']).default('portals'),
  /** Service CIDR; restricts the edge-mesh layout's protocol jumps. */
  serviceCIDR: cidrV4.optional(),
  serviceFilterMode: z.enum(['FilterIfLabelExists', 'FilterIfLabelDoesNotExists']).default('FilterIfLabelExists'),
  ignoreServices: z
    .array(z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be "namespace/name"'))
    .default([]),
  /** This node's name: endpoints on it count as local (internalTrafficPolicy: Local). */
  nodeName: z.string().default(''),
  iptables: z
    .strictObject({
      /** Full resync (and chain order check) at least this often. */
      syncPeriod: duration('5s'),
      /** No two syncs closer than this; changes in between are coalesced. */
      minSyncPeriod: duration('1s'),
      /** Whole-table read and plan at least this often; syncs in between are incremental. 0: every sync. */
      fullSyncPeriod: duration('1m'),
      /** iptables backend: "auto" (the node's: where kube-proxy's or kubelet's chains are), "nft", "legacy", or "system" (`iptables` as installed). */
      backend: z.enum(['auto', 'nft', 'legacy', 'system']).default('auto'),
    })
    .prefault({}),
  proxy: z
    .strictObject({
      /** Address the per-service listeners bind; REDIRECT needs them on the node's addresses. */
      bindAddress: z.string().refine((ip) => isIPv4(ip), 'must be an IPv4 address').default('0.0.0.0'),
      /** Per-attempt dial timeout to an endpoint. */
      connectTimeout: duration('2s'),
      /** Default balancing policy; a service's DestinationRule or sessionAffinity overrides it. */
      loadBalancer: z.enum(['ROUND_ROBIN', 'RANDOM', 'CONSISTENT_HASH']).default('ROUND_ROBIN'),
      /** Dial attempts per client connection (each to a different endpoint when there are several). */
      maxDialAttempts: z.number().int().min(1).max(16).default(3),
      /** Pause between two dial attempts. */
      dialBackoff: duration('50ms'),
      /** An endpoint whose dial failed is skipped for this long, doubling on repeated failures... */
      ejectionTime: duration('5s'),
      /** ...up to this long. */
      maxEjectionTime: duration('1m'),
      /** Close a TCP connection idle in both directions for this long; "0" = never. */
      tcpIdleTimeout: duration('0'),
      /** Open connections to an endpoint that was removed are closed after this long; "0" = left to end on their own. */
      removedEndpointGracePeriod: duration('0'),
      /** On SIGTERM, after our rules are gone, open TCP connections get this long to end before they are reset. */
      shutdownGracePeriod: duration('10s'),
      /** Concurrent connections per service port, and over all ports; new clients beyond are refused. */
      maxConnectionsPerPort: z.number().int().min(1).default(16384),
      maxConnections: z.number().int().min(1).default(65536),
      /**
       * Threads accepting TCP connections (SO_REUSEPORT), the main one included; "auto" = one per
       * CPU. Default 1: each extra thread costs one fd and its share of memory per TCP port.
       */
      workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default(1),
      /** Listener ports "FROM-TO" (like kube-proxy's --proxy-port-range); "" = kernel-chosen. */
      portRange: z
        .string()
        .default('')
        .transform((text, ctx) => {
          const range = parsePortRange(text);
          if (range === undefined || !('error' in range)) return range;
          ctx.addIssue({ code: 'custom', message: range.error });
          return z.NEVER;
        }),
    })
    .prefault({}),
  udp: z
    .strictObject({
      /** A UDP flow (client address → endpoint) with no packet for this long is forgotten. */
      idleTimeout: duration('30s'),
      /** Flows per UDP service port; the oldest is evicted when full. Each flow holds one socket. */
      maxFlowsPerPort: z.number().int().min(1).default(4096),
    })
    .prefault({}),
  /** host:port for /metrics, /healthz and /readyz; "" turns the endpoint off. */
  metricsBindAddress: z
    .string()
    .refine((v) => v === '' || /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(v), 'must be "host:port" with an IPv4 host, or ""')
    .default('127.0.0.1:10260'),
  /** One series per service port in /metrics; false: the per-port families summed per protocol. */
  metricsPerServicePort: z.boolean().default(true),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
