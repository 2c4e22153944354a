// The one store of services and endpoint slices. Sources write into it; the agent reads
// immutable snapshots and is told (coalesced by the sync loop) that something changed.
import type { DestinationRule, EndpointSlice, Service, ServiceKey } from '../model/types.ts';
import { serviceKey } from '../model/types.ts';
import type { StateSink } from './types.ts';

export interface StateSnapshot {
  services: ReadonlyMap<ServiceKey, Service>;
  /** Slices grouped by the Service they belong to ("namespace/serviceName"). */
  slicesByService: ReadonlyMap<ServiceKey, readonly EndpointSlice[]>;
  /** Istio DestinationRules by "namespace/name" (the rule's own identity, not its host). */
  destinationRules: ReadonlyMap<string, DestinationRule>;
}

export type ChangeListener = () => void;

export class StateStore implements StateSink {
  #services = new Map<ServiceKey, Service>();
  /** Keyed by "namespace/sliceName". */
  #slices = new Map<string, EndpointSlice>();
  #destinationRules = new Map<string, DestinationRule>();
  #listeners = new Set<ChangeListener>();
  /** The last snapshot, handed out again until something changes (a resync changes nothing). */
  #snapshot: StateSnapshot | undefined;

  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  upsertService(svc: Service): void {
    this.#services.set(serviceKey(svc.namespace, svc.name), svc);
    this.#emit();
  }

  deleteService(namespace: string, name: string): void {
    if (this.#services.delete(serviceKey(namespace, name))) this.#emit();
  }

  upsertSlice(slice: EndpointSlice): void {
    this.#slices.set(`${slice.namespace}/${slice.name}`, slice);
    this.#emit();
  }

  deleteSlice(namespace: string, name: string): void {
    if (this.#slices.delete(`${namespace}/${name}`)) this.#emit();
  }

  upsertDestinationRule(rule: DestinationRule): void {
    this.#destinationRules.set(`${rule.namespace}/${rule.name}`, rule);
    this.#emit();
  }

  deleteDestinationRule(namespace: string, name: string): void {
    if (this.#destinationRules.delete(`${namespace}/${name}`)) this.#emit();
  }

  /**
   * The current state. Snapshots are never modified, and the same snapshot is returned until
   * the next change, so an unchanged store costs no copy. The objects inside are the ones the
   * sources gave, unchanged objects keep their identity from one snapshot to the next.
   */
  snapshot(): StateSnapshot {
    if (this.#snapshot !== undefined) return this.#snapshot;
    const slicesByService = new Map<ServiceKey, EndpointSlice[]>();
    for (const slice of this.#slices.values()) {
      const key = serviceKey(slice.namespace, slice.serviceName);
      const list = slicesByService.get(key);
      if (list) list.push(slice);
      else slicesByService.set(key, [slice]);
    }
    this.#snapshot = { services: new Map(this.#services), slicesByService, destinationRules: new Map(this.#destinationRules) };
    return this.#snapshot;
  }

  #emit(): void {
    this.#snapshot = undefined;
    for (const listener of this.#listeners) listener();
  }
}
