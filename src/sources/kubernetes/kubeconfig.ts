// Credentials: a kubeconfig file when one is given (flag, config or KUBECONFIG — resolved by the
// CLI), else the pod's service account (in-cluster).
import { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (file) {
    kc.loadFromFile(file);
    if (!kc.getCurrentCluster()) throw new Error(`${file}: no current cluster (set current-context)`);
  } else {
    // Reads /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt} and KUBERNETES_SERVICE_HOST/PORT.
    if (!process.env['KUBERNETES_SERVICE_HOST']) {
      throw new Error('no kubeconfig given and not running in a pod (KUBERNETES_SERVICE_HOST unset): pass --kubeconfig FILE or set KUBECONFIG');
    }
    kc.loadFromCluster();
  }
  return kc;
}

export { pickKubeconfig } from './pickKubeconfig.ts';
