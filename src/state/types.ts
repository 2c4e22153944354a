import type { DestinationRule, EndpointSlice, Service } from '../model/types.ts';

/** What a source feeds: the store implements it; sources never see each other. */
export interface StateSink {
  upsertService(svc: Service): void;
  deleteService(namespace: string, name: string): void;
  upsertSlice(slice: EndpointSlice): void;
  deleteSlice(namespace: string, name: string): void;
  upsertDestinationRule(rule: DestinationRule): void;
  deleteDestinationRule(namespace: string, name: string): void;
}
