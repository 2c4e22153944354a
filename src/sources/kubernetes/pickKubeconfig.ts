// Which kubeconfig file to use. Its own module so that `run` can decide without loading
// @kubernetes/client-node, which it imports only when the Kubernetes source is on (the client
// and its generated API code take tens of MB of heap in an agent that reads manifests only).

/** Which kubeconfig to use: the flag, then the config file's kubernetes.kubeconfig, then $KUBECONFIG (first entry). */
export function pickKubeconfig(flag: string | undefined, configured: string | undefined, envValue: string | undefined): string | undefined {
  const fromEnv = envValue?.split(':').find((p) => p.length > 0);
  return flag || configured || fromEnv || undefined;
}
