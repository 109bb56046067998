package etcd_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

func TestSmoke(t *testing.T) {
	skipShort(t)
	for name, start := range map[string]func(t *testing.T) []string{
		"embedded": func(t *testing.T) []string { return []string{testutil.StartEmbeddedEtcd(t).Endpoint()} },
		"debian34": func(t *testing.T) []string { return []string{testutil.StartEtcdProcess(t).Endpoint()} },
	} {
		t.Run(name, func(t *testing.T) {
			eps := start(t)
			a := openStore(t, eps, "batman", "a")
			b := openStore(t, eps, "batman", "b")
			ctx := t.Context()
			require.NoError(t, a.Initialize(ctx, "", true))
			require.ErrorIs(t, b.Initialize(ctx, "", true), dcs.ErrConflict)
			require.NoError(t, a.AcquireLeader(ctx))
			require.ErrorIs(t, b.AcquireLeader(ctx), dcs.ErrConflict)
			require.NoError(t, a.TouchMember(ctx, &dcs.Member{Name: "a", State: "running", Role: "primary"}))
			require.NoError(t, a.UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 100}}))
			testutil.SucceedsSoon(t, func() error {
				c, err := b.Cluster(ctx)
				require.NoError(t, err)
				if c.Leader == nil || c.Leader.Name != "a" || c.Leader.Member == nil || c.Leader.Member.Role != "primary" || c.Status.LastLSN != 100 {
					return errorf("b does not see a as leader yet: %+v", c.Leader)
				}
				return nil
			})
			start := time.Now()
			require.NoError(t, a.ReleaseLeader(ctx, nil))
			select {
			case <-b.Changes():
			case <-time.After(5 * time.Second):
				t.Fatal("b not woken")
			}
			t.Logf("woken after %s", time.Since(start))
		})
	}
}
