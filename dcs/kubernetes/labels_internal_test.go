package kubernetes

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestRoleLabelValues checks the role label values a member puts on its
// pod (spec/dcs-layout.md §8 "Pod labels"), on client-go's fake
// clientset: the labels do not depend on resourceVersions.
func TestRoleLabelValues(t *testing.T) {
	cases := []struct {
		name        string
		role, state string
		leader      bool
		want        map[string]string // role, tmp-role, boot; "" = absent
	}{
		{"leader", "primary", "running", true, map[string]string{"role": "master", "tmp-role": "primary"}},
		{"standby leader", "standby_leader", "running", true, map[string]string{"role": "standby-leader", "tmp-role": "primary"}},
		{"running replica", "replica", "running", false, map[string]string{"role": "follower", "tmp-role": "replica"}},
		{"other running role", "uninitialized", "running", false, map[string]string{"role": "uninitialized", "tmp-role": "uninitialized"}},
		{"primary without the lock", "primary", "running", false, map[string]string{}},
		{"stopped replica", "replica", "stopped", false, map[string]string{}},
		{"creating replica", "replica", "creating replica", false, map[string]string{"boot": "yes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			labels := map[string]string{"app": "t", "cluster-name": "batman"}
			client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pg0", Namespace: "default", Labels: labels}})
			st, err := New(Config{Scope: "batman", Name: "pg0", Labels: map[string]string{"app": "t"}, Client: client,
				LeaderLabelValue: "master", FollowerLabelValue: "follower", StandbyLeaderLabelValue: "standby-leader",
				TmpRoleLabel: "tmp-role", BootstrapLabels: map[string]string{"boot": "yes"}, Logger: testutil.Logger(t)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.leader {
				require.NoError(t, st.AcquireLeader(ctx))
			}
			m := &dcs.Member{Name: "pg0", Role: tc.role, State: tc.state}
			require.NoError(t, st.TouchMember(ctx, m))
			p, err := client.CoreV1().Pods("default").Get(ctx, "pg0", metav1.GetOptions{})
			require.NoError(t, err)
			for _, k := range []string{"role", "tmp-role", "boot"} {
				if v := tc.want[k]; v == "" {
					require.NotContains(t, p.Labels, k)
				} else {
					require.Equal(t, v, p.Labels[k], "label %s", k)
				}
			}
			require.JSONEq(t, string(dcs.EncodeMember(m)), p.Annotations["status"], "§8: the member JSON is the status annotation")
			require.Contains(t, p.Annotations, "pgwarden.io/lease")
		})
	}
}
