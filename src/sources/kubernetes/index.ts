// Public surface of the Kubernetes API source.
export { KubernetesSource, objectHandlers, type KubernetesSourceOptions } from './source.ts';
export { loadKubeConfig, pickKubeconfig } from './kubeconfig.ts';
export { KUBERNETES_API_USAGE, collectionPath, sourceName, type ApiResource } from './resources.ts';
export type { WatchStatus, RestartReason } from './watcher.ts';
