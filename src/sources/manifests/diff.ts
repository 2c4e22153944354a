// Sending only what changed: compares the new view with what the sink last received.
import { isDeepStrictEqual } from 'node:util';
import type { DestinationRule, EndpointSlice, Service } from '../../model/types.ts';
import type { StateSink } from '../../state/types.ts';

export interface SentObjects {
  services: ReadonlyMap<string, Service>;
  slices: ReadonlyMap<string, EndpointSlice>;
  destinationRules: ReadonlyMap<string, DestinationRule>;
}

/** Calls the sink for every added, changed or removed object; returns the number of calls. */
export function sendChanges(sink: StateSink, before: SentObjects, after: SentObjects): number {
  let calls = 0;
  // Services before their slices on the way in, slices before services on the way out,
  // so the sink never holds a slice whose service it was just told about in the wrong order.
  for (const [key, svc] of after.services) {
    if (!isDeepStrictEqual(before.services.get(key), svc)) {
      sink.upsertService(svc);
      calls++;
    }
  }
  for (const [key, slice] of after.slices) {
    if (!isDeepStrictEqual(before.slices.get(key), slice)) {
      sink.upsertSlice(slice);
      calls++;
    }
  }
  for (const [key, rule] of after.destinationRules) {
    if (!isDeepStrictEqual(before.destinationRules.get(key), rule)) {
      sink.upsertDestinationRule(rule);
      calls++;
    }
  }
  for (const [key, rule] of before.destinationRules) {
    if (!after.destinationRules.has(key)) {
      sink.deleteDestinationRule(rule.namespace, rule.name);
      calls++;
    }
  }
  for (const [key, slice] of before.slices) {
    if (!after.slices.has(key)) {
      sink.deleteSlice(slice.namespace, slice.name);
      calls++;
    }
  }
  for (const [key, svc] of before.services) {
    if (!after.services.has(key)) {
      sink.deleteService(svc.namespace, svc.name);
      calls++;
    }
  }
  return calls;
}
