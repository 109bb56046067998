package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs/etcd"
)

// TestEtcdServers starts each kind of test etcd, writes through a client
// and checks that everything stops.
func TestEtcdServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd servers; not in -short")
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (endpoints []string, stop func())
	}{
		{"debian process", func(t *testing.T) ([]string, func()) {
			p := StartEtcdProcess(t)
			return []string{p.Endpoint()}, p.Stop
		}},
		{"embedded single", func(t *testing.T) ([]string, func()) {
			e := StartEmbeddedEtcd(t)
			return []string{e.Endpoint()}, e.Stop
		}},
		{"embedded three", func(t *testing.T) ([]string, func()) {
			c := StartEmbeddedEtcdCluster(t, 3)
			return c.Endpoints(), func() {
				for _, m := range c.Members {
					m.Stop()
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps, stop := tc.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := etcd.NewClient(ctx, etcd.Config{Endpoints: eps, Logger: quietLogger(t)})
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Put(ctx, "/testutil", "ok")
			require.NoError(t, err)
			stop()
			stop() // idempotent
			sctx, scancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer scancel()
			_, err = c.Get(sctx, "/testutil")
			require.Error(t, err, "the servers are stopped")
		})
	}
}
