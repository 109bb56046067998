package ha_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/internal/sim"
)

// quiet returns a bootstrapped simulated cluster, its leader and a replica.
func quiet(t *testing.T, syncMode string) (*sim.World, *sim.Node, *sim.Node) {
	w := sim.New(sim.Options{Seed: 7, Nodes: 3, NoFaults: true, TTL: 10 * time.Second, LoopWait: 2 * time.Second, RetryTimeout: 3 * time.Second, SyncMode: syncMode})
	w.Advance(20 * time.Second)
	leader := w.Node(w.DCS.Leader())
	require.NotNil(t, leader, "a leader after bootstrap")
	for _, n := range w.Nodes {
		if n != leader && (syncMode == "off" || w.DCS.Sync().Matches(n.Name)) {
			return w, leader, n
		}
	}
	t.Fatal("no replica")
	return nil, nil, nil
}

// call runs f (a blocking Node request) while the simulated loop runs and
// returns its result; the world advances in ticks until f returns.
func call(t *testing.T, w *sim.World, f func() error, each func()) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	for range 600 {
		select {
		case err := <-errc:
			return err
		default:
		}
		w.Advance(100 * time.Millisecond)
		if each != nil {
			each()
		}
		time.Sleep(time.Millisecond) // let the caller's goroutine queue its request
	}
	t.Fatal("request not answered within 60 s of simulated time")
	return nil
}

// TestNodeRestart drives POST /restart through Node.Restart: the loop
// restarts Postgres in its role and answers once it runs (spec ha-loop
// §9.1); a second request while one is pending is refused as busy; the
// leader keeps its key; a restart_pending condition is checked against
// pending_restart, which the member key publishes (dcs-layout member key).
func TestNodeRestart(t *testing.T) {
	w, leader, r := quiet(t, "off")
	// spec ha-loop §9.1: the conditions are checked by the loop.
	err := call(t, w, func() error { return r.Node.Restart(t.Context(), ha.RestartRequest{RestartPending: true}) }, nil)
	require.ErrorIs(t, err, ha.ErrRestartConditions)
	require.Zero(t, r.PG.Restarts)

	// spec dcs-layout member key: pending_restart and its reason.
	r.PG.Pending = true
	w.Advance(3 * time.Second)
	m := w.DCS.Member(r.Name)
	require.True(t, m.PendingRestart)
	require.Equal(t, "120", m.PendingRestartReason["max_connections"].NewValue)

	// spec ha-loop §9.1: a second request while one waits is refused as
	// busy. (A cancelled context only stops the caller from waiting: the
	// first request stays queued for the loop.)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, r.Node.Restart(cancelled, ha.RestartRequest{RestartPending: true}), context.Canceled)
	busy := r.Node.Restart(cancelled, ha.RestartRequest{})
	be, ok := errors.AsType[*ha.BusyError](busy)
	require.True(t, ok, "second request: %v", busy)
	require.Equal(t, "restart already in progress", be.Error())
	w.Advance(3 * time.Second)
	require.Equal(t, 1, r.PG.Restarts)
	w.Advance(3 * time.Second)
	require.False(t, w.DCS.Member(r.Name).PendingRestart)
	require.True(t, r.PG.Running && r.PG.Streaming && r.PG.Upstream == leader.Name, "replica streams again")

	// spec ha-loop §9.1: the leader restarts in place and keeps the key.
	err = call(t, w, func() error { return leader.Node.Restart(t.Context(), ha.RestartRequest{Role: "primary"}) }, nil)
	require.NoError(t, err)
	require.Equal(t, 1, leader.PG.Restarts)
	require.Equal(t, leader.Name, w.DCS.Leader())
	require.True(t, leader.PG.Running && leader.PG.Primary)
	require.Empty(t, w.Violations)
}

// TestNodeScheduledRestart checks spec ha-loop §9.2: the schedule is kept
// in memory, published as scheduled_restart in the member key, can be
// cancelled, and is carried out by the loop at its time.
func TestNodeScheduledRestart(t *testing.T) {
	w, _, r := quiet(t, "off")
	at := w.Clock.Now().Add(30 * time.Second)
	require.NoError(t, r.Node.ScheduleRestart(at, ha.RestartRequest{Role: "replica", PostgresVersionText: "16.1", PostgresVersion: 160001}))
	require.ErrorIs(t, r.Node.ScheduleRestart(at, ha.RestartRequest{}), ha.ErrRestartScheduled)
	w.Advance(time.Second)
	sr := w.DCS.Member(r.Name).ScheduledRestart
	require.NotNil(t, sr, "scheduled_restart published")
	require.Equal(t, at.Format(time.RFC3339), sr.Schedule)
	require.Equal(t, "replica", sr.Role)
	require.Equal(t, "16.1", sr.PostgresVersion)

	require.True(t, r.Node.CancelScheduledRestart())
	require.False(t, r.Node.CancelScheduledRestart())
	w.Advance(3 * time.Second)
	require.Nil(t, w.DCS.Member(r.Name).ScheduledRestart)
	w.Advance(40 * time.Second)
	require.Zero(t, r.PG.Restarts, "a cancelled restart does not run")

	at = w.Clock.Now().Add(5 * time.Second)
	require.NoError(t, r.Node.ScheduleRestart(at, ha.RestartRequest{}))
	w.Advance(4 * time.Second)
	require.Zero(t, r.PG.Restarts, "not before its time")
	w.Advance(2 * time.Second)
	require.Equal(t, 1, r.PG.Restarts)
	require.Nil(t, r.Node.ScheduledRestart(), "removed once run")
	w.Advance(3 * time.Second)
	require.Nil(t, w.DCS.Member(r.Name).ScheduledRestart)
	require.Empty(t, w.Violations)
}

// TestNodeReinitialize checks spec ha-loop §9.3 through Node.Reinitialize:
// refused on the lock holder, re-clones a replica, which then streams;
// from_leader clones with pg_basebackup whatever the configured methods
// (spec postgres §7), a plain request with the configured methods.
func TestNodeReinitialize(t *testing.T) {
	w, leader, r := quiet(t, "off")
	err := call(t, w, func() error { return leader.Node.Reinitialize(t.Context(), ha.ReinitializeRequest{}) }, nil)
	require.ErrorIs(t, err, ha.ErrIsLeader)
	clones := r.PG.Clones
	err = call(t, w, func() error { return r.Node.Reinitialize(t.Context(), ha.ReinitializeRequest{FromLeader: true}) }, nil)
	require.NoError(t, err)
	require.Equal(t, clones+1, r.PG.Clones)
	require.Equal(t, 1, r.PG.BasebackupClones, "from_leader clones with pg_basebackup")
	w.Advance(5 * time.Second)
	require.True(t, r.PG.Running && r.PG.Streaming && r.PG.Upstream == leader.Name, "reinitialized replica streams")

	err = call(t, w, func() error { return r.Node.Reinitialize(t.Context(), ha.ReinitializeRequest{}) }, nil)
	require.NoError(t, err)
	require.Equal(t, clones+2, r.PG.Clones)
	require.Equal(t, 1, r.PG.BasebackupClones, "a plain reinitialize uses the configured methods")
	w.Advance(5 * time.Second)
	require.True(t, r.PG.Running && r.PG.Streaming && r.PG.Upstream == leader.Name, "reinitialized again, replica streams")
	require.Empty(t, w.Violations)
}

// TestNodeLeavesSyncBeforeRestart checks spec ha-loop §7.6: a synchronous
// standby asked to restart first publishes nosync, the primary drops it
// from /sync, and only then does it restart; afterwards it is a
// synchronous candidate again.
func TestNodeLeavesSyncBeforeRestart(t *testing.T) {
	w, _, r := quiet(t, "on")
	require.True(t, w.DCS.Sync().Matches(r.Name), "%s is the synchronous standby", r.Name)
	sawNoSync, inSyncAtRestart := false, false
	err := call(t, w, func() error { return r.Node.Restart(context.Background(), ha.RestartRequest{}) }, func() {
		if m := w.DCS.Member(r.Name); m != nil && m.NoSync() {
			sawNoSync = true
		}
		if r.PG.Restarts == 1 && !sawNoSync {
			inSyncAtRestart = true
		}
	})
	require.NoError(t, err)
	require.True(t, sawNoSync, "nosync published before the restart")
	require.False(t, inSyncAtRestart)
	w.Advance(10 * time.Second)
	require.False(t, w.DCS.Member(r.Name).NoSync(), "tags restored after the restart")
	require.Empty(t, w.Violations)
}

// TestNodeFailsafeHeartbeat checks the replica side of spec ha-loop §11:
// a heartbeat is answered with the replica's WAL position, and a node
// running as primary refuses it.
func TestNodeFailsafeHeartbeat(t *testing.T) {
	w, leader, r := quiet(t, "off")
	lsn, err := r.Node.Failsafe(t.Context(), ha.FailsafeHeartbeat{Name: leader.Name, APIURL: "sim://" + leader.Name})
	require.NoError(t, err)
	require.NotNil(t, lsn)
	require.NotZero(t, *lsn)
	require.LessOrEqual(t, *lsn, r.PG.LSN, "the position last read by the loop")
	_, err = leader.Node.Failsafe(t.Context(), ha.FailsafeHeartbeat{Name: r.Name})
	require.ErrorIs(t, err, ha.ErrRunningAsLeader)
	_ = w
}

// TestSwitchoverRejoin checks spec ha-loop §5.1-§5.2: the leader demotes
// gracefully and releases the key, the candidate takes it, and the old
// leader rejoins as a streaming replica of the new one.
func TestSwitchoverRejoin(t *testing.T) {
	w, leader, r := quiet(t, "off")
	w.DCS.SetFailoverKey(&dcs.Failover{Leader: leader.Name, Candidate: r.Name})
	w.Advance(15 * time.Second)
	require.Equal(t, r.Name, w.DCS.Leader())
	require.Nil(t, w.DCS.Failover(), "the new leader cleared the request")
	p := leader.PG
	require.True(t, p.Running && !p.Primary && p.Streaming && p.Upstream == r.Name, "old leader streams from %s: %+v", r.Name, p)
	require.Empty(t, w.Violations)
}

// TestShutdownLeavesSync checks spec ha-loop §15 with §7.6: a synchronous
// standby that shuts down publishes nosync first, and its Postgres stops.
func TestShutdownLeavesSync(t *testing.T) {
	w, _, r := quiet(t, "on")
	require.True(t, w.DCS.Sync().Matches(r.Name))
	w.Shutdown(r)
	require.True(t, w.DCS.Member(r.Name).NoSync(), "nosync published before the stop")
	require.False(t, r.PG.Running)
	w.Advance(10 * time.Second)
	require.False(t, w.DCS.Sync().Matches(r.Name), "the primary dropped it from /sync")
	require.Empty(t, w.Violations)
}

// TestNodeFailsafeAdvancesSlots checks the primary side of spec ha-loop
// §11: with the DCS unreachable and every failsafe member answering POST
// /failsafe, the primary keeps running and moves the member slots of the
// replicas to the WAL positions they answered with.
func TestNodeFailsafeAdvancesSlots(t *testing.T) {
	w, leader, _ := quiet(t, "off")
	w.SetConfig("failsafe_mode", true)
	w.Advance(5 * time.Second)
	require.Len(t, w.DCS.FailsafeKey(), 3, "the leader publishes /failsafe")
	before := maps.Clone(leader.PG.SlotLSN)
	for _, n := range w.Nodes {
		n.Store.Cut = true // every member loses the DCS
	}
	w.Advance(5 * time.Second)
	require.Contains(t, leader.Node.Status().Message, "continue to run as a leader because failsafe mode is enabled")
	require.True(t, leader.PG.Running && leader.PG.Primary, "failsafe keeps the primary running")
	for _, n := range w.Nodes {
		if n == leader {
			continue
		}
		slot := ha.SlotName(n.Name)
		got := leader.PG.SlotLSN[slot]
		require.Greater(t, got, before[slot], "slot %s moved", slot)
		require.LessOrEqual(t, got, n.PG.LSN, "slot %s no further than %s reported", slot, n.Name)
	}
	require.Empty(t, w.Violations)
}

// TestNodeFailsafeHeartbeatSlots checks the slots of spec ha-loop §11
// end to end over the Node: the failsafe primary's heartbeat carries its
// slot positions and its own slot name at its WAL position (Patroni's
// check_failsafe_topology), and each replica, cut off from the DCS as
// well, moves its copy of the primary's slot with them.
func TestNodeFailsafeHeartbeatSlots(t *testing.T) {
	w, leader, _ := quiet(t, "off")
	w.SetConfig("failsafe_mode", true)
	w.Advance(5 * time.Second)
	own := ha.SlotName(leader.Name)
	before := map[string]dcs.LSN{}
	for _, n := range w.Nodes {
		if n != leader {
			require.Contains(t, n.PG.Slots, own, "%s keeps a slot for the primary", n.Name)
			before[n.Name] = n.PG.SlotLSN[own]
		}
	}
	for _, n := range w.Nodes {
		n.Store.Cut = true
	}
	w.Advance(6 * time.Second)
	require.Contains(t, leader.Node.Status().Message, "continue to run as a leader because failsafe mode is enabled")
	for _, n := range w.Nodes {
		if n == leader {
			continue
		}
		hb, ok := w.Heartbeats[n.Name]
		require.True(t, ok, "%s got a heartbeat", n.Name)
		require.Equal(t, leader.Name, hb.Name)
		require.Equal(t, "postgres://"+leader.Name, hb.ConnURL)
		require.Equal(t, "sim://"+leader.Name, hb.APIURL)
		require.NotZero(t, hb.Slots[own], "the primary's own slot name at its WAL position")
		require.LessOrEqual(t, hb.Slots[own], leader.PG.LSN)
		for name := range leader.PG.SlotLSN {
			require.Contains(t, hb.Slots, name, "every slot of the primary")
		}
		require.Contains(t, n.Node.Status().Message, "DCS is not accessible")
		got := n.PG.SlotLSN[own]
		require.Greater(t, got, before[n.Name], "%s moved its copy of %s while the DCS was down", n.Name, own)
		require.LessOrEqual(t, got, n.PG.LSN)
	}
	require.Empty(t, w.Violations)
}

// TestNodeWatchdogSmallTTL checks spec ha-loop §16 over the Node when the
// dynamic configuration lowers ttl to 5 with the default safety_margin 5:
// ttl − safety_margin is 0, less than loop_wait, so the watchdog is
// unsupported (Patroni's timing_slack < 0; nothing is adjusted). The
// device armed before keeps its timeout and is still fed after every
// renewal, as Patroni's keepalive does, so it never resets the healthy
// primary; in required mode the node reports watchdog_failed and stays
// primary (Patroni activates only a device that is not running).
func TestNodeWatchdogSmallTTL(t *testing.T) {
	for _, mode := range []ha.WatchdogMode{ha.WatchdogAutomatic, ha.WatchdogRequired} {
		t.Run(mode.String(), func(t *testing.T) {
			w := sim.New(sim.Options{Seed: 7, Nodes: 3, NoFaults: true, TTL: 20 * time.Second, LoopWait: 2 * time.Second, RetryTimeout: 3 * time.Second, Watchdog: mode})
			w.Advance(20 * time.Second)
			leader := w.Node(w.DCS.Leader())
			require.NotNil(t, leader)
			wd := leader.Watchdog
			require.True(t, wd.Armed, "armed before acting as primary")
			require.Equal(t, 15*time.Second, wd.Timeout, "ttl 20 − safety_margin 5")
			for _, n := range w.Nodes {
				require.False(t, n.Node.Status().WatchdogFailed, "%s: timeout 15 s suits loop_wait 2 s", n.Name)
			}

			w.SetConfig("ttl", 5)
			w.SetConfig("loop_wait", 1)
			w.SetConfig("retry_timeout", 2)
			fed := wd.Keepalives
			w.Advance(60 * time.Second)
			require.Equal(t, leader.Name, w.DCS.Leader(), "the primary keeps the key")
			require.True(t, leader.PG.Running && leader.PG.Primary)
			require.Zero(t, wd.Fired, "the watchdog never fired")
			require.Equal(t, 15*time.Second, wd.Timeout, "no 0 s timeout is set")
			require.GreaterOrEqual(t, wd.Keepalives-fed, 25, "fed after every renewal")
			for _, n := range w.Nodes {
				require.Equal(t, mode == ha.WatchdogRequired, n.Node.Status().WatchdogFailed, "%s reports watchdog_failed", n.Name)
				if n != leader {
					require.False(t, n.Watchdog.Armed, "%s: a replica's watchdog is not activated", n.Name)
				}
			}
			require.Empty(t, w.Violations)
		})
	}
}
