package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// kubeLabels are the kubernetes.labels of the test clusters.
const kubeLabels = "{application: pgwarden-e2e}"

// writeKubeconfig writes a kubeconfig for the test API server, as a user
// outside the cluster has one, and returns its path.
func writeKubeconfig(t *testing.T, k *testutil.KubeAPIServer) string {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: k.Host(), CertificateAuthorityData: k.CACert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: k.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// kubePod creates the pod that stands for member name (no kubelet runs,
// so the test sets its IP itself; Endpoints refuse loopback addresses and
// 10/8 is never dialled).
func kubePod(t *testing.T, admin k8s.Interface, ns, scope, name, ip string) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	p, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"application": "pgwarden-e2e", "cluster-name": scope}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:15"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	_, err = admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// Issue 7: the daemon runs on the Kubernetes DCS (spec/dcs-layout.md §8)
// outside a pod, with credentials from $KUBECONFIG as client-go finds
// them. A one-node cluster bootstraps in ConfigMaps and in Endpoints mode;
// a user sees the leader in "ctl list", the role label on the pod and the
// leader record in the leader ConfigMap or Endpoints.
func TestDaemonOnKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	k := testutil.StartKubeAPIServer(t)
	admin, err := k8s.NewForConfig(k.RESTConfig())
	require.NoError(t, err)
	t.Setenv("KUBECONFIG", writeKubeconfig(t, k))
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod

	for i, mode := range []string{"configmaps", "endpoints"} {
		t.Run(mode, func(t *testing.T) {
			ns, scope, ip := "pgwarden-"+mode, "e2e", fmt.Sprintf("10.77.0.%d", i+1)
			endpoints := mode == "endpoints"
			kubePod(t, admin, ns, scope, "node0", ip)
			c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{
				Scope: scope, Nodes: 1, TTL: 10, LoopWait: 1, RetryTimeout: 4,
				DCSYAML: func(int) string {
					return fmt.Sprintf("kubernetes:\n  namespace: %s\n  labels: %s\n  use_endpoints: %t\n  ports: [{name: postgresql, port: 5432}]\n",
						ns, kubeLabels, endpoints)
				},
			})
			ctx := t.Context()
			t.Cleanup(func() {
				if t.Failed() {
					dumpKube(t, admin, ns, k)
				}
			})
			n := c.Nodes[0]
			waitRunningPrimary(ctx, t, n, 2*time.Minute)

			out, err := c.Ctl(ctx, "list")
			require.NoError(t, err, out)
			require.Contains(t, out, "+ Cluster: e2e (")
			require.Regexp(t, `\| node0 +\| [0-9.:]+ +\| Leader +\| running `, out)

			testutil.SucceedsSoon(t, func() error {
				p, err := admin.CoreV1().Pods(ns).Get(ctx, "node0", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if p.Labels["role"] != "primary" {
					return fmt.Errorf("pod role label %q", p.Labels["role"])
				}
				if !strings.Contains(p.Annotations["status"], `"role":"primary"`) {
					return fmt.Errorf("pod status annotation %s", p.Annotations["status"])
				}
				return nil
			})
			if endpoints {
				ep, err := admin.CoreV1().Endpoints(ns).Get(ctx, scope, metav1.GetOptions{})
				require.NoError(t, err)
				require.Equal(t, "node0", ep.Annotations["leader"])
				require.Len(t, ep.Subsets, 1)
				require.Equal(t, ip, ep.Subsets[0].Addresses[0].IP, "the leader Endpoints points at the leader pod")
				require.Equal(t, int32(5432), ep.Subsets[0].Ports[0].Port)
			} else {
				cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, scope+"-leader", metav1.GetOptions{})
				require.NoError(t, err)
				require.Equal(t, "node0", cm.Annotations["leader"])
				cfg, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, scope+"-config", metav1.GetOptions{})
				require.NoError(t, err)
				require.Contains(t, cfg.Annotations["config"], `"ttl":10`)
			}
		})
	}
}

// dumpKube logs the cluster's objects and the API server log.
func dumpKube(t *testing.T, admin k8s.Interface, ns string, k *testutil.KubeAPIServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cms, err := admin.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, cm := range cms.Items {
			t.Logf("configmap %s: %v", cm.Name, cm.Annotations)
		}
	}
	if eps, err := admin.CoreV1().Endpoints(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ep := range eps.Items {
			t.Logf("endpoints %s: %v %v", ep.Name, ep.Annotations, ep.Subsets)
		}
	}
	if pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			t.Logf("pod %s: labels %v annotations %v", p.Name, p.Labels, p.Annotations)
		}
	}
	t.Logf("kube-apiserver log tail:\n%s", k.LogTail())
}
