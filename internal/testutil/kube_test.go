package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestKubeAPIServer starts the test API server and checks what the
// Kubernetes backend relies on: resourceVersion CAS (409 on a stale
// update, spec/dcs-layout.md §8) and a restart that keeps the data.
func TestKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	k := StartKubeAPIServer(t)
	client, err := kubernetes.NewForConfig(k.RESTConfig())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cms := client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe",
		Annotations: map[string]string{"leader": "a"}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	stale := cm.DeepCopy()
	cm.Annotations["leader"] = "b"
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	stale.Annotations["leader"] = "c"
	_, err = cms.Update(ctx, stale, metav1.UpdateOptions{})
	require.True(t, apierrors.IsConflict(err), "a stale resourceVersion gets 409: %v", err)

	k.Stop()
	require.NoError(t, k.Start())
	got, err := cms.Get(ctx, "probe", metav1.GetOptions{})
	require.NoError(t, err, "log:\n%s", k.LogTail())
	require.Equal(t, "b", got.Annotations["leader"], "the data survives an API server restart")
}
