// Public surface of the manifest-directory source.
export { ManifestDirectorySource, type ManifestDirectorySourceOptions } from './directory.ts';
export { formatManifestError, type ManifestError } from './errors.ts';
export { defaultKindHandlers, type KindHandler, type ModelObject } from './kinds.ts';
export { loadManifestDirectory } from './load.ts';
export { parseManifestText, type ParsedFile } from './parse.ts';
