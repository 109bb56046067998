package hapostgres_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/hapostgres"
	"github.com/pgwarden/pgwarden/internal/testutil"
	"github.com/pgwarden/pgwarden/postgres"
)

// A node looks at its data directory before it has one (while it waits to
// clone). Once the data directory exists, pg_rewind must be reported as
// possible: a cached "no" from the empty directory once left a replica that
// had to be rewound after a failover following the new primary without ever
// streaming (spec ha-loop §6.2, can_rewind).
func TestRewindPossibleOnceDataExists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testutil.PGConfig(t, "rewindcheck", "node1")
	cfg.Bootstrap.Method = "template"
	cfg.Bootstrap.Methods = map[string]postgres.BootstrapMethod{"template": testutil.PGTemplateBootstrap(t)}
	m := testutil.PGManager(t, cfg)
	a := hapostgres.New(m, hapostgres.Options{Name: cfg.Name, UseRewind: true})

	st, err := a.State(ctx)
	if err != nil {
		t.Fatalf("state of an empty data directory: %v", err)
	}
	if st.DataDir != ha.DataEmpty || st.CanRewind {
		t.Fatalf("empty data directory: DataDir=%v CanRewind=%v, want empty and false", st.DataDir, st.CanRewind)
	}

	if err := m.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	st, err = a.State(ctx)
	if err != nil {
		t.Fatalf("state after bootstrap: %v", err)
	}
	if st.DataDir != ha.DataPresent || !st.Running || !st.CanRewind {
		t.Fatalf("data directory with checksums, running: DataDir=%v Running=%v CanRewind=%v, want present, true, true",
			st.DataDir, st.Running, st.CanRewind)
	}

	// With use_pg_rewind off the answer is no, whatever the data directory.
	off := hapostgres.New(m, hapostgres.Options{Name: cfg.Name})
	if st, err := off.State(ctx); err != nil || st.CanRewind {
		t.Fatalf("use_pg_rewind off: CanRewind=%v err=%v, want false", st.CanRewind, err)
	}
}

// spec/ha-loop.md §14 (standby cluster): the leader of a standby cluster
// follows the remote primary through standby_cluster.primary_slot_name, or
// without a slot when none is named; other members are followed through
// their own slot, and nothing is followed before a start.
func TestUpstreamOfStandby(t *testing.T) {
	m, err := postgres.New(postgres.Config{Name: "n1", Scope: "t", DataDir: filepath.Join(t.TempDir(), "data"), Port: 15999,
		Superuser: postgres.User{Username: "postgres"}, Replication: postgres.User{Username: "rep"}})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	a := hapostgres.New(m, hapostgres.Options{Name: "n1"})
	require.Empty(t, a.Upstream())
	remote := &dcs.Member{Name: ha.RemoteName, ConnURL: "postgres://10.0.0.9:5432/postgres"}
	peer := &dcs.Member{Name: "n2", ConnURL: "postgres://10.0.0.2:5433/postgres"}

	up, err := a.UpstreamOf(nil)
	require.NoError(t, err)
	require.Nil(t, up)

	a.SetStandby(&config.StandbyCluster{Host: "10.0.0.9", Port: "5432", PrimarySlotName: "standby"})
	up, err = a.UpstreamOf(remote)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.9:5432", up.Address())
	require.Equal(t, "standby", up.Slot)
	require.False(t, up.NoSlot)
	up, err = a.UpstreamOf(peer)
	require.NoError(t, err)
	require.Equal(t, postgres.Upstream{Name: "n2", Host: "10.0.0.2", Port: 5433, Database: "postgres"}, *up)

	a.SetStandby(&config.StandbyCluster{Host: "10.0.0.9", Port: "5432"})
	up, err = a.UpstreamOf(remote)
	require.NoError(t, err)
	require.Empty(t, up.Slot)
	require.True(t, up.NoSlot)

	// No longer a standby cluster: the remote member is an ordinary one.
	a.SetStandby(nil)
	up, err = a.UpstreamOf(remote)
	require.NoError(t, err)
	require.False(t, up.NoSlot)

	_, err = a.UpstreamOf(&dcs.Member{Name: "bad", ConnURL: "::"})
	require.Error(t, err)
}
