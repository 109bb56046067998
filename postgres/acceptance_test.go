package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/callbacks"
	"github.com/pgwarden/pgwarden/internal/testutil"
	"github.com/pgwarden/pgwarden/postgres"
)

// Issue 3 acceptance: kill -9 the postmaster of a replica; the manager
// brings it back through crash recovery and it streams again. A crashed
// primary goes through single-user crash recovery before it can be
// rewound and rejoin (spec/postgres.md §9).
func TestCrashRecovery(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	p.exec(t, "CREATE TABLE t1 (v text)")
	r := cloneReplica(t, p, "node2", nil)
	waitStreaming(t, p, "node2")

	t.Run("replica", func(t *testing.T) {
		pid := r.m.PostmasterPID()
		require.NotZero(t, pid)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		testutil.SucceedsSoon(t, func() error {
			if r.m.IsRunning() {
				return errors.New("postmaster still alive")
			}
			return nil
		})
		p.exec(t, "INSERT INTO t1 VALUES ('while down')")
		require.NoError(t, r.m.Recover(ctx, p.upstream()))
		testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "while down") })
		waitStreaming(t, p, "node2")
	})

	t.Run("primary", func(t *testing.T) {
		archive := testutil.PGTempDir(t) // owned by the Postgres user
		params := map[string]string{}
		for k, v := range p.cfg.Parameters {
			params[k] = v
		}
		params["archive_mode"] = "on"
		params["archive_command"] = "false" // the archive is down while the primary runs
		p.m.SetParameters(params)
		require.NoError(t, p.m.Restart(ctx, nil))
		p.exec(t, "INSERT INTO t1 VALUES ('before crash')")
		p.exec(t, "SELECT pg_switch_wal()")
		testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "before crash") })
		require.NoError(t, p.m.Stop(ctx, postgres.StopOptions{Mode: postgres.StopImmediate}))
		cd, err := p.m.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, "in production", cd.State)
		// The archive is back: crash recovery archives what is still .ready.
		params["archive_command"] = "cp %p " + archive + "/%f"
		p.m.SetParameters(params)
		_, err = p.m.WriteConfig(ctx, postgres.RolePrimary, nil)
		require.NoError(t, err)
		require.NoError(t, p.m.CrashRecovery(ctx))
		archived, err := os.ReadDir(archive)
		require.NoError(t, err)
		require.NotEmpty(t, archived, "segments marked .ready were archived")
		cd, err = p.m.ControlData(ctx)
		require.NoError(t, err)
		require.True(t, cd.CleanShutdown(), "state %q", cd.State)
		// The replica takes over; the old primary rejoins behind it.
		require.NoError(t, r.m.Promote(ctx))
		r.exec(t, "INSERT INTO t1 VALUES ('after failover')")
		_, err = r.m.EnsureSlots(ctx, []postgres.Slot{{Name: postgres.SlotName("node1")}})
		require.NoError(t, err)
		require.NoError(t, p.m.Demote(ctx, r.upstream(), postgres.DemoteOptions{Rewind: true}))
		testutil.SucceedsSoon(t, func() error { return p.hasRow(ctx, "after failover") })
	})
}

// Issue 3 acceptance: slots. A member slot and a permanent physical slot
// exist on the primary; a permanent logical slot is copied to and advanced
// on the replica and still usable after promotion: a change made before
// the promotion is not skipped by a consumer after it
// (spec/postgres.md §12).
func TestSlots(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	p.exec(t, "CREATE TABLE t1 (v text)")
	r := cloneReplica(t, p, "node2", nil)
	want := []postgres.Slot{
		{Name: postgres.SlotName("node2")},
		{Name: "perm_phys", Type: "physical"},
		{Name: "perm_logical", Type: "logical", Plugin: "test_decoding", Database: "postgres"},
	}
	res, err := p.m.EnsureSlots(ctx, append(want, postgres.Slot{Name: "stale"}))
	require.NoError(t, err)
	require.Equal(t, []string{"perm_logical", "perm_phys", "stale"}, res.Created)
	res, err = p.m.EnsureSlots(ctx, want)
	require.NoError(t, err)
	require.Equal(t, postgres.SlotsResult{Dropped: []string{"stale"}}, res)
	waitStreaming(t, p, "node2")
	// Slots reports the xmin that hot standby feedback sets on the member
	// slot, and none on a slot nobody streams from (ha's §10 step 4 rule
	// reads it).
	r.exec(t, "ALTER SYSTEM SET hot_standby_feedback = on")
	r.exec(t, "SELECT pg_reload_conf()")
	testutil.SucceedsSoon(t, func() error {
		slots, err := p.m.Slots(ctx)
		if err != nil {
			return err
		}
		for _, s := range slots {
			if s.Name == "perm_phys" && s.Xmin != 0 {
				return fmt.Errorf("perm_phys has xmin %d", s.Xmin)
			}
			if s.Name == postgres.SlotName("node2") && s.Xmin == 0 {
				return errors.New("no xmin on the member slot yet")
			}
		}
		return nil
	})
	// The member slot is active: dropping it is refused and reported.
	res, err = p.m.EnsureSlots(ctx, want[1:])
	require.NoError(t, err)
	require.Equal(t, []string{"node2"}, res.InUse)

	p.exec(t, "INSERT INTO t1 VALUES ('consumed')")
	p.exec(t, "SELECT count(*) FROM pg_logical_slot_get_changes('perm_logical', NULL, NULL)")
	copied, err := r.m.CopyLogicalSlots(ctx, p.upstream(), []string{"perm_logical", "perm_phys"})
	require.NoError(t, err)
	require.Equal(t, []string{"perm_logical"}, copied)
	p.exec(t, "INSERT INTO t1 VALUES ('pending')")
	p.exec(t, "SELECT count(*) FROM pg_logical_slot_get_changes('perm_logical', NULL, NULL)") // primary consumer moves on
	pslots, err := p.m.Slots(ctx)
	require.NoError(t, err)
	var target postgres.LSN
	for _, s := range pslots {
		if s.Name == "perm_logical" {
			target = s.ConfirmedFlush
		}
	}
	require.NotZero(t, target)
	testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "pending") })
	advErr := r.m.AdvanceSlots(ctx, map[string]postgres.LSN{"perm_logical": target})
	t.Logf("advance on the replica: %v", advErr)

	// A change after the last advance that no consumer has seen yet.
	p.exec(t, "INSERT INTO t1 VALUES ('before promote')")
	testutil.SucceedsSoon(t, func() error { return r.hasRow(ctx, "before promote") })
	require.NoError(t, r.m.Promote(ctx))
	rslots, err := r.m.Slots(ctx)
	require.NoError(t, err)
	names := []string{}
	for _, s := range rslots {
		names = append(names, s.Name)
	}
	require.Contains(t, names, "perm_logical")
	c := r.conn(t)
	rows, err := c.Query(ctx, "SELECT data FROM pg_logical_slot_get_changes('perm_logical', NULL, NULL)")
	require.NoError(t, err)
	changes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	all := strings.Join(changes, "\n")
	require.Contains(t, all, "before promote", "a change made before the promotion is not skipped")
	require.NotContains(t, all, "'consumed'", "changes consumed before the copy are not replayed")
	if advErr == nil {
		require.NotContains(t, all, "'pending'", "the advanced slot does not replay consumed changes")
	}
}

// Issue 3 acceptance: synchronous_standby_names ANY 1 (...) makes a commit
// wait until the replica confirms (spec/postgres.md §12, ha-loop sync).
func TestSynchronousStandby(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	p.exec(t, "CREATE TABLE t1 (v text)")
	r := cloneReplica(t, p, "node2", nil)
	changed, err := p.m.SetSynchronousStandbyNames(ctx, postgres.SyncSpec{Quorum: true, Num: 1, Names: []string{"node2"}})
	require.NoError(t, err)
	require.True(t, changed)
	testutil.SucceedsSoon(t, func() error {
		s, err := p.m.SyncStandbys(ctx)
		if err != nil {
			return err
		}
		if len(s) != 1 || s[0] != "node2" {
			return fmt.Errorf("sync standbys %v", s)
		}
		return nil
	})
	st, err := p.m.State(ctx)
	require.NoError(t, err)
	require.Equal(t, "quorum", st.Replication[0].SyncState)
	spec, err := postgres.ParseSyncStandbyNames(st.SynchronousStandbyNames)
	require.NoError(t, err)
	require.Equal(t, postgres.SyncSpec{Quorum: true, Num: 1, Names: []string{"node2"}}, spec)

	require.NoError(t, r.m.Stop(ctx, postgres.StopOptions{}))
	done := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres", p.cfg.Port, testutil.PGSuperPassword))
		if err != nil {
			done <- err
			return
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "INSERT INTO t1 VALUES ('sync')")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("commit returned while the only synchronous standby was down: %v", err)
	case <-time.After(time.Second):
	}
	restarted, err := r.m.Follow(ctx, p.upstream())
	require.NoError(t, err)
	require.True(t, restarted)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("commit still blocked after the standby came back")
	}
	require.NoError(t, r.hasRow(ctx, "sync"))
	changed, err = p.m.SetSynchronousStandbyNames(ctx, postgres.SyncSpec{})
	require.NoError(t, err)
	require.True(t, changed)
	testutil.SucceedsSoon(t, func() error {
		s, err := p.m.SyncStandbys(ctx)
		if err != nil || len(s) != 0 {
			return fmt.Errorf("sync standbys %v, %v", s, err)
		}
		return nil
	})
}

// Issue 3 acceptance: a script callback receives exactly ACTION ROLE SCOPE
// in order for start, role change and stop (spec/postgres.md §11).
func TestCallbacksFromLifecycle(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "cb.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+out+"\n"), 0o755))
	s, err := callbacks.ParseScript(script)
	require.NoError(t, err)
	ex := callbacks.NewExecutor(callbacks.Config{
		Scope:  "batman",
		Logger: testutil.Logger(t),
		Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart: s, callbacks.OnRoleChange: s, callbacks.OnStop: s, callbacks.OnReload: s,
		},
	})
	defer ex.Close()
	var steps []string
	p := fastPrimary(t, "node1", nil)
	r := cloneReplica(t, p, "node2", func(c *postgres.Config) {
		c.Callbacks = ex
		c.Hooks = postgres.Hooks{
			Before: func(_ context.Context, st postgres.Step) error {
				steps = append(steps, "before "+string(st))
				return nil
			},
			After: func(_ context.Context, st postgres.Step, err error) {
				steps = append(steps, fmt.Sprintf("after %s %v", st, err))
			},
		}
	})
	ex.Wait()
	require.NoError(t, r.m.Promote(ctx))
	ex.Wait()
	require.NoError(t, r.m.Stop(ctx, postgres.StopOptions{}))
	ex.Wait()
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "on_start replica batman\non_role_change primary batman\non_stop primary batman\n", string(data))
	require.Equal(t, []string{
		"before create_replica", "after create_replica <nil>",
		"before start", "after start <nil>",
		"before promote", "after promote <nil>",
		"before stop", "after stop <nil>",
	}, steps)
}

// Issue 3 acceptance: bad input gives a clear error naming the problem and
// deletes no data directory.
func TestBadInput(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	t.Run("missing bin dir", func(t *testing.T) {
		n := newNode(t, "n", func(c *postgres.Config) { c.BinDir = "/nonexistent/bin" })
		err := n.m.Bootstrap(ctx)
		require.ErrorIs(t, err, postgres.ErrBinary)
		require.ErrorContains(t, err, "/nonexistent/bin")
		require.NoDirExists(t, n.cfg.DataDir)
	})
	t.Run("occupied port", func(t *testing.T) {
		var l net.Listener
		n := newNode(t, "n", func(c *postgres.Config) {
			var err error
			l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port))
			require.NoError(t, err)
			c.Bootstrap.Method = "template"
			c.Bootstrap.Methods = map[string]postgres.BootstrapMethod{"template": testutil.PGTemplateBootstrap(t)}
		})
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		err := n.m.Bootstrap(ctx)
		require.ErrorIs(t, err, postgres.ErrPortInUse)
		require.ErrorContains(t, err, fmt.Sprint(n.cfg.Port))
		require.True(t, n.m.IsInitialized(), "the bootstrapped data directory is kept")
	})
	t.Run("non-empty foreign data dir", func(t *testing.T) {
		n := newNode(t, "n", nil)
		require.NoError(t, os.MkdirAll(n.cfg.DataDir, 0o700))
		precious := filepath.Join(n.cfg.DataDir, "precious")
		require.NoError(t, os.WriteFile(precious, []byte("keep me"), 0o600))
		require.ErrorIs(t, n.m.Bootstrap(ctx), postgres.ErrDataDirNotEmpty)
		up := postgres.Upstream{Name: "x", Host: "127.0.0.1", Port: testutil.FreePort(t)}
		require.ErrorIs(t, n.m.CreateReplica(ctx, &up), postgres.ErrDataDirNotEmpty)
		err := n.m.Start(ctx, postgres.StartOptions{})
		require.ErrorIs(t, err, postgres.ErrNoDataDir)
		require.FileExists(t, precious)
	})
	t.Run("failing custom bootstrap", func(t *testing.T) {
		n := newNode(t, "n", func(c *postgres.Config) {
			c.Bootstrap.Method = "restore"
			c.Bootstrap.Scripts = map[string]postgres.ScriptMethod{"restore": {
				Command: `/bin/sh -c 'd=${1#--datadir=}; echo partial > "$d/partial"; echo "backup not found" >&2; exit 3'`,
				Args:    []postgres.Arg{{Key: "backup", Value: "latest"}},
			}}
		})
		err := n.m.Bootstrap(ctx)
		require.ErrorIs(t, err, postgres.ErrBootstrapFailed)
		require.ErrorContains(t, err, "backup not found")
		require.ErrorContains(t, err, "restore")
		require.FileExists(t, filepath.Join(n.cfg.DataDir+".failed", "partial"), "moved aside, not deleted")
	})
	t.Run("unreachable basebackup source", func(t *testing.T) {
		n := newNode(t, "n", nil)
		up := postgres.Upstream{Name: "ghost", Host: "127.0.0.1", Port: testutil.FreePort(t)}
		err := n.m.CreateReplica(ctx, &up)
		require.ErrorIs(t, err, postgres.ErrAllMethodsFailed)
		var me *postgres.MethodError
		require.ErrorAs(t, err, &me)
		require.Equal(t, "basebackup", me.Method)
		require.ErrorContains(t, err, fmt.Sprint(up.Port))
	})
}
