// Summing TCP counters over the listeners (threads) of one port.
import type { TcpProxyCounters } from '../tcpPort.ts';

export function zeroCounters(): TcpProxyCounters {
  return { accepted: 0, active: 0, failed: 0, bytesIn: 0, bytesOut: 0, dialErrors: 0, refused: 0, ejections: 0, idleClosed: 0 };
}

/** a + b, field by field (a new object); an undefined side counts as zero. */
export function addCounters(a: TcpProxyCounters | undefined, b: TcpProxyCounters | undefined): TcpProxyCounters {
  const out = zeroCounters();
  for (const k of Object.keys(out) as (keyof TcpProxyCounters)[]) out[k] = (a?.[k] ?? 0) + (b?.[k] ?? 0);
  return out;
}
