package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// spec/postgres.md §10: a custom bootstrap script gets --scope --datadir
// and its own keys; with recovery_conf the cluster runs archive recovery
// (here to the end of the local WAL) and promotes itself; PostBootstrap then writes
// the primary configuration and restarts because hot_standby changed.
func TestCustomBootstrapWithRecovery(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	tmpl := testutil.PGTemplateDir(t)
	work := testutil.PGTempDir(t)
	argsFile := filepath.Join(work, "args")
	n := newNode(t, "node1", func(c *postgres.Config) {
		c.Bootstrap.Method = "clone_from_golden"
		c.Bootstrap.Scripts = map[string]postgres.ScriptMethod{"clone_from_golden": {
			Command: `/bin/sh -c 'echo "$*" > ` + argsFile + `; d=${2#--datadir=}; cp -a ` + tmpl + `/. "$d"' bootstrap`,
			RecoveryConf: map[string]string{
				"restore_command":        "false",
				"recovery_target_action": "promote",
			},
			Args: []postgres.Arg{{Key: "source", Value: "golden"}, {Key: "scope", Value: "ignored"}},
		}}
	})
	require.NoError(t, n.m.Bootstrap(ctx))
	args, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	require.Equal(t, "--scope=batman --datadir="+n.cfg.DataDir+" --source=golden\n", string(args))
	st, err := n.m.State(ctx)
	require.NoError(t, err)
	require.False(t, st.InRecovery)
	require.Equal(t, 2, st.Timeline, "recovery ended with a promotion")
	conf, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "postgresql.conf"))
	require.NoError(t, err)
	require.Contains(t, string(conf), "recovery_target_action = 'promote'")
	started := st.PostmasterStart

	require.NoError(t, n.m.PostBootstrap(ctx))
	conf, err = os.ReadFile(filepath.Join(n.cfg.DataDir, "postgresql.conf"))
	require.NoError(t, err)
	require.NotContains(t, string(conf), "recovery.conf")
	require.Contains(t, string(conf), "hot_standby = 'on'")
	st, err = n.m.State(ctx)
	require.NoError(t, err)
	require.True(t, st.PostmasterStart.After(started), "restarted for hot_standby")
	require.NoFileExists(t, filepath.Join(n.cfg.DataDir, "recovery.signal"))
}

// spec/postgres.md §7: custom replica methods get Patroni's arguments and
// PGPASSFILE; a failing method falls back to the next one; without a
// source only no_leader methods run.
func TestReplicaMethodsFallback(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	work := testutil.PGTempDir(t)
	argsFile := filepath.Join(work, "args")
	var progress int
	r := newNode(t, "node2", func(c *postgres.Config) {
		c.CreateReplicaMethods = []string{"wal_e", "basebackup"}
		c.ReplicaScripts = map[string]postgres.ScriptMethod{"wal_e": {
			Command: `/bin/sh -c 'echo "$* $PGPASSFILE" > ` + argsFile + `; touch "${4#--datadir=}/junk"; exit 1' wal_e`,
			Args:    []postgres.Arg{{Key: "envdir", Value: "/etc/wal-e"}},
		}}
		c.OnCloneProgress = func(done, total int64) { progress++ }
	})
	up := p.upstream()
	require.NoError(t, r.m.CreateReplica(ctx, &up))
	args, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("--envdir=/etc/wal-e --scope=batman --role=replica --datadir=%s --connstring=dbname=postgres user=replicator host=127.0.0.1 port=%d %s\n",
		r.cfg.DataDir, p.cfg.Port, r.cfg.PgPass), string(args))
	require.NoFileExists(t, filepath.Join(r.cfg.DataDir, "junk"), "the failed method's output was cleared")
	require.True(t, r.m.IsInitialized())
	require.Positive(t, progress, "basebackup progress reported")

	t.Run("no source", func(t *testing.T) {
		n := newNode(t, "node3", nil)
		err := n.m.CreateReplica(ctx, nil)
		require.ErrorIs(t, err, postgres.ErrAllMethodsFailed)
		require.ErrorContains(t, err, "no_leader")
	})
	t.Run("go method without leader", func(t *testing.T) {
		tmpl := testutil.PGTemplateBootstrap(t)
		n := newNode(t, "node4", func(c *postgres.Config) {
			c.CreateReplicaMethods = []string{"from_backup"}
			c.ReplicaMethods = map[string]postgres.ReplicaMethod{"from_backup": noLeader{tmpl}}
		})
		require.NoError(t, n.m.CreateReplica(ctx, nil))
		require.True(t, n.m.IsInitialized())
	})
	// reinit --from-leader: pg_basebackup only, whatever the configuration
	// lists (a failing script here would otherwise run first).
	t.Run("basebackup forced", func(t *testing.T) {
		marker := filepath.Join(work, "script-ran")
		n := newNode(t, "node5", func(c *postgres.Config) {
			c.CreateReplicaMethods = []string{"wal_e"}
			c.ReplicaScripts = map[string]postgres.ScriptMethod{"wal_e": {Command: `/bin/sh -c 'touch ` + marker + `; exit 1' wal_e`}}
		})
		require.NoError(t, n.m.CreateReplicaWith(ctx, &up, []string{"basebackup"}))
		require.True(t, n.m.IsInitialized())
		require.NoFileExists(t, marker, "the configured method was not tried")
		require.Error(t, n.m.CreateReplicaWith(ctx, &up, nil), "no method given")
	})
}

type noLeader struct{ b postgres.BootstrapMethod }

func (n noLeader) CreateReplica(ctx context.Context, m *postgres.Manager, _ *postgres.Upstream) error {
	return n.b.Bootstrap(ctx, m)
}
func (noLeader) NoLeader() bool { return true }

// spec/postgres.md §4.3, §4.4, §5: reload vs restart, pending restart,
// on_reload/on_restart, and following a new slot by reload on PG15.
func TestReloadRestartFollow(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "cb.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+out+"\n"), 0o755))
	s, err := callbacks.ParseScript(script)
	require.NoError(t, err)
	ex := callbacks.NewExecutor(callbacks.Config{Scope: "batman", Logger: testutil.Logger(t), Callbacks: map[callbacks.Event]callbacks.Callback{
		callbacks.OnReload: s, callbacks.OnRestart: s,
	}})
	defer ex.Close()
	p := fastPrimary(t, "node1", func(c *postgres.Config) { c.Callbacks = ex })
	params := map[string]string{}
	for k, v := range p.cfg.Parameters {
		params[k] = v
	}
	show := func(name string) string {
		var v string
		require.NoError(t, p.m.QueryRow(ctx, "SELECT current_setting($1)", []any{name}, &v))
		return v
	}

	params["work_mem"] = "7MB"
	params["no_such_guc"] = "1"      // dropped: would stop the server from starting
	params["myext.setting"] = "kept" // extension GUCs pass through
	p.m.SetParameters(params)
	ch, err := p.m.Reload(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"myext.setting", "work_mem"}, ch.Params)
	require.True(t, ch.NeedsReload)
	require.False(t, ch.NeedsRestart)
	testutil.SucceedsSoon(t, func() error {
		if v := show("work_mem"); v != "7MB" {
			return fmt.Errorf("work_mem %s", v)
		}
		return nil
	})
	ex.Wait() // a newer on_reload would kill this one (Patroni's rule)

	params["shared_buffers"] = "24MB"
	p.m.SetParameters(params)
	ch, err = p.m.Reload(ctx, nil)
	require.NoError(t, err)
	require.True(t, ch.NeedsRestart)
	testutil.SucceedsSoon(t, func() error {
		pend, err := p.m.PendingRestart(ctx)
		if err != nil {
			return err
		}
		if len(pend) != 1 {
			return fmt.Errorf("pending %v", pend)
		}
		require.Equal(t, postgres.PendingParam{Name: "shared_buffers", Old: "16MB", New: "24MB"}, pend[0])
		return nil
	})
	ex.Wait()
	require.NoError(t, p.m.Restart(ctx, nil))
	require.Equal(t, "24MB", show("shared_buffers"))
	pend, err := p.m.PendingRestart(ctx)
	require.NoError(t, err)
	require.Empty(t, pend)
	ex.Wait()
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "on_reload primary batman\non_reload primary batman\non_restart primary batman\n", string(data))

	t.Run("follow a new slot without restart", func(t *testing.T) {
		r := cloneReplica(t, p, "node2", nil)
		_, err := p.m.EnsureSlots(ctx, []postgres.Slot{{Name: "node2"}, {Name: "other"}})
		require.NoError(t, err)
		up := p.upstream()
		up.Slot = "other"
		restarted, err := r.m.Follow(ctx, up)
		require.NoError(t, err)
		require.False(t, restarted, "primary_slot_name is reloadable on PG15")
		testutil.SucceedsSoon(t, func() error {
			st, err := r.m.State(ctx)
			if err != nil {
				return err
			}
			if st.WALReceiver == nil || st.WALReceiver.SlotName != "other" || st.WALReceiver.Status != "streaming" {
				return fmt.Errorf("wal receiver %+v", st.WALReceiver)
			}
			return nil
		})
	})
	t.Run("stop reports the shutdown checkpoint", func(t *testing.T) {
		// The backends that can leave before the fast shutdown do, while
		// a client still writes: the manager's connection and the logical
		// replication launcher.
		_, err := p.m.State(ctx)
		require.NoError(t, err)
		client := p.conn(t)
		_, err = client.Exec(ctx, "CREATE TABLE stop_probe (v int)")
		require.NoError(t, err)
		rows, err := client.Query(ctx, `SELECT pid FROM pg_stat_activity
  WHERE backend_type = 'logical replication launcher' OR application_name = 'Patroni heartbeat' ORDER BY backend_type`)
		require.NoError(t, err)
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		require.NoError(t, err)
		require.Len(t, pids, 2, "the launcher and the manager's observation connection")
		var alive []int32
		var writeErr error
		before := func() {
			for _, pid := range pids {
				if syscall.Kill(int(pid), 0) == nil && !zombie(int(pid)) {
					alive = append(alive, pid)
				}
			}
			_, writeErr = client.Exec(ctx, "INSERT INTO stop_probe VALUES (1)")
		}
		var got postgres.LSN
		require.NoError(t, p.m.Stop(ctx, postgres.StopOptions{OnShutdown: func(l postgres.LSN) { got = l }, BeforeSignal: before}))
		require.Empty(t, alive, "backends still running when the shutdown was signalled")
		require.NoError(t, writeErr, "a client writes until the shutdown is signalled")
		cd, err := p.m.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, cd.CheckpointLSN, got)
	})
}

// Hooks.Before can veto a step (spec: Hooks around each lifecycle step).
func TestHookVeto(t *testing.T) {
	cfg := baseConfig(t)
	veto := errors.New("maintenance window")
	cfg.Hooks.Before = func(_ context.Context, st postgres.Step) error {
		if st == postgres.StepStart {
			return veto
		}
		return nil
	}
	m, err := postgres.New(cfg)
	require.NoError(t, err)
	err = m.Start(t.Context(), postgres.StartOptions{})
	require.ErrorIs(t, err, veto)
	require.True(t, strings.Contains(err.Error(), "start"))
}

// spec/postgres.md §4.2 step 8: a smart stop that does not finish in time
// (a client stays connected) escalates to an immediate stop.
func TestStopEscalates(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	c := p.conn(t) // a session a smart shutdown waits for
	_ = c
	start := time.Now()
	require.NoError(t, p.m.Stop(ctx, postgres.StopOptions{Mode: postgres.StopSmart, Timeout: time.Second}))
	took := time.Since(start)
	require.False(t, p.m.IsRunning())
	require.Less(t, took, 10*time.Second)
	cd, err := p.m.ControlData(ctx)
	require.NoError(t, err)
	require.Equal(t, "in production", cd.State, "escalated to immediate: no shutdown checkpoint")
}

// spec/postgres.md §4.1 step 8: a start that outlives its timeout with a
// live postmaster is "still starting", not a failure; §4.2 step 6: the
// safepoint is reported once client backends are gone.
func TestStillStartingAndSafepoint(t *testing.T) {
	skipShort(t)
	ctx := t.Context()
	p := fastPrimary(t, "node1", nil)
	c := p.conn(t)
	safepoint := false
	require.NoError(t, p.m.Stop(ctx, postgres.StopOptions{OnSafepoint: func() { safepoint = true }}))
	require.True(t, safepoint)
	_ = c
	err := p.m.Start(ctx, postgres.StartOptions{Timeout: time.Millisecond})
	require.ErrorIs(t, err, postgres.ErrStillStarting)
	require.True(t, p.m.IsRunning())
	testutil.SucceedsSoon(t, func() error {
		st, err := p.m.State(ctx)
		if err != nil {
			return err
		}
		if !st.Accepting {
			return errors.New("not accepting yet")
		}
		return nil
	})
}

// zombie reports whether pid has exited and waits for its parent.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
