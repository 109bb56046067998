package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/internal/testutil"
	"github.com/pgwarden/pgwarden/postgres"
)

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; not run with -short")
	}
}

// node is one test member.
type node struct {
	name string
	cfg  postgres.Config
	m    *postgres.Manager
}

func (n *node) upstream() postgres.Upstream {
	return postgres.Upstream{Name: n.name, Host: "127.0.0.1", Port: n.cfg.Port}
}

func newNode(t testing.TB, name string, tweak func(*postgres.Config)) *node {
	t.Helper()
	cfg := testutil.PGConfig(t, "batman", name)
	if tweak != nil {
		tweak(&cfg)
	}
	return &node{name: name, cfg: cfg, m: testutil.PGManager(t, cfg)}
}

// conn opens a superuser connection to the node.
func (n *node) conn(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable",
		n.cfg.Port, testutil.PGSuperuser, testutil.PGSuperPassword))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (n *node) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	c := n.conn(t)
	_, err := c.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
	c.Close(t.Context())
}

// rowCount returns count(*) of table t1 with value v, or an error.
func (n *node) hasRow(ctx context.Context, v string) error {
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable",
		n.cfg.Port, testutil.PGSuperuser, testutil.PGSuperPassword))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var k int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t1 WHERE v = $1", v).Scan(&k); err != nil {
		return err
	}
	if k != 1 {
		return fmt.Errorf("%s: row %q not there yet", n.name, v)
	}
	return nil
}

// bootstrapPrimary creates and starts a primary with initdb and post-bootstrap.
func bootstrapPrimary(t testing.TB, name string, tweak func(*postgres.Config)) *node {
	t.Helper()
	n := newNode(t, name, tweak)
	ctx := t.Context()
	require.NoError(t, n.m.Bootstrap(ctx))
	require.NoError(t, n.m.PostBootstrap(ctx))
	_, err := n.m.EnsureSlots(ctx, nil)
	require.NoError(t, err)
	return n
}

// cloneReplica creates a replica of primary with basebackup and starts it.
func cloneReplica(t testing.TB, primary *node, name string, tweak func(*postgres.Config)) *node {
	t.Helper()
	n := newNode(t, name, tweak)
	ctx := t.Context()
	_, err := primary.m.EnsureSlots(ctx, []postgres.Slot{{Name: postgres.SlotName(name)}})
	require.NoError(t, err)
	up := primary.upstream()
	require.NoError(t, n.m.CreateReplica(ctx, &up))
	require.NoError(t, n.m.Start(ctx, postgres.StartOptions{Role: postgres.RoleReplica, Upstream: &up}))
	return n
}

func waitStreaming(t testing.TB, primary *node, replica string) {
	t.Helper()
	testutil.SucceedsSoon(t, func() error {
		st, err := primary.m.State(t.Context())
		if err != nil {
			return err
		}
		for _, r := range st.Replication {
			if r.ApplicationName == replica && r.State == "streaming" {
				return nil
			}
		}
		return fmt.Errorf("%s is not streaming from %s yet: %+v", replica, primary.name, st.Replication)
	})
}

// Issue 3 acceptance: a primary bootstrapped with initdb; a replica created
// with basebackup streams from it (spec/postgres.md §4.1, §5, §7, §10, §12).
func TestPrimaryAndReplicaStream(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := bootstrapPrimary(t, "node1", nil)
	p.exec(t, "CREATE TABLE t1 (v text)")
	r := cloneReplica(t, p, "node2", nil)
	waitStreaming(t, p, "node2")
	p.exec(t, "INSERT INTO t1 VALUES ('one')")
	testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "one") })

	pst, err := p.m.State(ctx)
	require.NoError(t, err)
	require.True(t, pst.Running)
	require.False(t, pst.InRecovery)
	require.Equal(t, 1, pst.Timeline)
	require.NotZero(t, pst.WALLSN)
	require.False(t, pst.PostmasterStart.IsZero())

	rst, err := r.m.State(ctx)
	require.NoError(t, err)
	require.True(t, rst.InRecovery)
	require.NotNil(t, rst.WALReceiver)
	require.Equal(t, "streaming", rst.WALReceiver.Status)
	require.Equal(t, postgres.SlotName("node2"), rst.WALReceiver.SlotName)
	require.Equal(t, 1, rst.Timeline)
	require.Equal(t, pst.SystemID, rst.SystemID)
	require.NotZero(t, rst.ReplayLSN)
	// A replica keeps a connection ready for its promotion, so that a
	// switchover does not wait for a new backend.
	var promoteConns int
	require.NoError(t, r.conn(t).QueryRow(ctx,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'Patroni promote'").Scan(&promoteConns))
	require.Equal(t, 1, promoteConns)

	// A second WriteConfig with the same inputs changes nothing.
	up := p.upstream()
	ch, err := r.m.WriteConfig(ctx, postgres.RoleReplica, &up)
	require.NoError(t, err)
	require.False(t, ch.Changed(), "files changed: %v", ch.Files)

	require.NoError(t, r.m.Stop(ctx, postgres.StopOptions{}))
	cd, err := r.m.ControlData(ctx)
	require.NoError(t, err)
	require.Equal(t, "shut down in recovery", cd.State)
	require.Equal(t, pst.SystemID, cd.SystemID)
	st, err := r.m.State(ctx)
	require.NoError(t, err)
	require.False(t, st.Running)
	require.NotNil(t, st.Control)
	require.True(t, st.Control.CleanShutdown())
	require.True(t, st.StandbySignal)
	require.Equal(t, pst.SystemID, st.SystemID)
}

// fastPrimary bootstraps from the cached template cluster.
func fastPrimary(t testing.TB, name string, tweak func(*postgres.Config)) *node {
	t.Helper()
	tmpl := testutil.PGTemplateBootstrap(t)
	return bootstrapPrimary(t, name, func(c *postgres.Config) {
		c.Bootstrap.Method = "template"
		c.Bootstrap.Methods = map[string]postgres.BootstrapMethod{"template": tmpl}
		if tweak != nil {
			tweak(c)
		}
	})
}

// Issue 3 acceptance: promote the replica; demote the old primary and
// rewind it; it follows the new primary on the new timeline and receives
// new rows (spec/postgres.md §6, §8).
func TestFailoverRewindFollow(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	p.exec(t, "CREATE TABLE t1 (v text)")
	prePromoted := filepath.Join(t.TempDir(), "pre_promote")
	r := cloneReplica(t, p, "node2", func(c *postgres.Config) {
		c.PrePromote = "sh -c 'echo ran >> " + prePromoted + "'"
	})
	p.exec(t, "INSERT INTO t1 VALUES ('one')")
	testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "one") })

	start := time.Now()
	require.NoError(t, r.m.Promote(ctx))
	t.Logf("promote took %s", time.Since(start))
	require.Equal(t, postgres.RolePrimary, r.m.Role())
	// Promoting a primary again succeeds and changes nothing; pre_promote
	// ran once, before the real promotion.
	require.NoError(t, r.m.Promote(ctx))
	require.Equal(t, postgres.RolePrimary, r.m.Role())
	ran, err := os.ReadFile(prePromoted)
	require.NoError(t, err)
	require.Equal(t, "ran\n", string(ran))
	hist, err := r.m.TimelineHistory(2)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, 1, hist[0].Timeline)
	// The old primary keeps writing: its timeline 1 diverges.
	p.exec(t, "INSERT INTO t1 VALUES ('lost')")
	_, err = r.m.EnsureSlots(ctx, []postgres.Slot{{Name: postgres.SlotName("node1")}})
	require.NoError(t, err)
	r.exec(t, "INSERT INTO t1 VALUES ('two')")

	require.NoError(t, p.m.Stop(ctx, postgres.StopOptions{NoCallback: true}))
	need, err := p.m.NeedsRewind(ctx, r.upstream())
	require.NoError(t, err)
	require.True(t, need, "old primary wrote after the fork")

	// Without pg_rewind the diverged node cannot follow; its data stays.
	noRewind := p.cfg
	noRewind.UsePgRewind = false
	m2, err := postgres.New(noRewind)
	require.NoError(t, err)
	err = m2.Demote(ctx, r.upstream(), postgres.DemoteOptions{Rewind: true})
	require.ErrorIs(t, err, postgres.ErrDiverged)
	require.ErrorIs(t, err, postgres.ErrCannotRewind)
	require.True(t, p.m.IsInitialized(), "data directory kept")
	require.False(t, p.m.IsRunning())

	require.NoError(t, p.m.Demote(ctx, r.upstream(), postgres.DemoteOptions{Rewind: true}))
	require.Equal(t, postgres.RoleReplica, p.m.Role())
	testutil.SucceedsSoon(t, func() error { return p.hasRow(ctx, "two") })
	r.exec(t, "INSERT INTO t1 VALUES ('three')")
	testutil.SucceedsSoon(t, func() error { return p.hasRow(ctx, "three") })
	require.Error(t, p.hasRow(ctx, "lost"), "rewind removed the diverged row")
	waitStreaming(t, r, "node1")
	st, err := p.m.State(ctx)
	require.NoError(t, err)
	require.True(t, st.InRecovery)
	require.Equal(t, 2, st.Timeline)
}
