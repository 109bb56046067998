package etcd_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestEmbeddedRestartAndAddMember checks the embedded mode of ISSUE 4: a
// member that restarts rejoins with its data and catches up, and a new
// member can be added to a running cluster.
func TestEmbeddedRestartAndAddMember(t *testing.T) {
	skipShort(t)
	c := testutil.StartEmbeddedEtcdCluster(t, 3)
	raw := rawClient(t, c.Endpoints())
	ctx := t.Context()
	_, err := raw.Put(ctx, "/k1", "v1")
	require.NoError(t, err)

	m := c.Members[2]
	m.Stop()
	_, err = raw.Put(ctx, "/k2", "v2")
	require.NoError(t, err, "two of three members keep a quorum")
	m.Restart(t)
	local := rawClient(t, []string{m.Endpoint()})
	testutil.SucceedsSoon(t, func() error {
		r, err := local.Get(ctx, "/k", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if r.Count != 2 {
			return errorf("restarted member %s has %d of 2 keys", m.Name, r.Count)
		}
		return nil
	})

	added := c.AddMember(t)
	list, err := raw.MemberList(ctx)
	require.NoError(t, err)
	require.Len(t, list.Members, 4)
	addedClient := rawClient(t, []string{added.Endpoint()})
	testutil.SucceedsSoon(t, func() error {
		r, err := addedClient.Get(ctx, "/k", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if r.Count != 2 {
			return errorf("added member has %d of 2 keys", r.Count)
		}
		return nil
	})
}

// TestRaftSectionCluster starts three embedded members from Patroni raft
// sections (spec/config.md "raft") and runs a Store on them.
func TestRaftSectionCluster(t *testing.T) {
	skipShort(t)
	addrs := raftPorts(t, 3)
	var servers []etcd.ServerConfig
	var sections []etcd.RaftSection
	for i, a := range addrs {
		var partners []any
		for j, b := range addrs {
			if j != i {
				partners = append(partners, b)
			}
		}
		s, err := etcd.ParseRaftSection(map[string]any{"self_addr": a, "partner_addrs": partners, "data_dir": t.TempDir()})
		require.NoError(t, err)
		sc, err := s.ServerConfig("batman")
		require.NoError(t, err)
		sc.Logger = quietLogger(t)
		servers = append(servers, sc)
		sections = append(sections, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, sc := range servers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			srv, err := etcd.StartServer(ctx, sc)
			errs[i] = err
			if err == nil {
				t.Cleanup(func() { _ = srv.Close() })
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	st := openStore(t, sections[1].Endpoints(), "batman", "pg1")
	require.NoError(t, st.TouchMember(t.Context(), member("pg1", 1)))
	require.NoError(t, st.AcquireLeader(t.Context()))
}

// raftPorts returns n loopback addresses whose port p and p+offset are both
// free (and reserved for this test process).
func raftPorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for _, p := range testutil.FreePortPairs(t, n, etcd.RaftClientPortOffset) {
		out = append(out, "127.0.0.1:"+strconv.Itoa(p))
	}
	return out
}
