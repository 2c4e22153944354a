// One-shot load of a manifest directory (the `plan` command), through the same scanner the watcher uses.
import type { DestinationRule, EndpointSlice, Service } from '../../model/types.ts';
import type { ManifestError } from './errors.ts';
import { ManifestScanner } from './scan.ts';

export async function loadManifestDirectory(
  dir: string,
): Promise<{ services: Service[]; slices: EndpointSlice[]; destinationRules: DestinationRule[]; errors: ManifestError[] }> {
  const view = await new ManifestScanner(dir).scan();
  return {
    services: [...view.services.values()],
    slices: [...view.slices.values()],
    destinationRules: [...view.destinationRules.values()],
    errors: view.errors,
  };
}
