package ha

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// unlocked is n2's view of a cluster whose leader key just vanished.
func unlocked() *world {
	return newWorld("n2", "").with(func(o *Observation) {
		o.PG.Upstream, o.PG.Streaming = "n1", true
		o.UnlockedSince = t0
		o.PrevLSN = 0x2F00000
	})
}

func TestRaceBackoff(t *testing.T) {
	// spec ha-loop §3.1: while the WAL still moves, wait up to
	// primary_race_backoff before racing.
	backoff := func(o *Observation) { o.Cluster.Config.Data["primary_race_backoff"] = 5 }
	d := Decide(unlocked().with(backoff).with(func(o *Observation) { o.Now = t0.Add(3 * time.Second) }).o)
	require.Equal(t, "My (n2) wal position moved since last heart beat loop, 2 seconds until leader race", d.Message)
	require.Empty(t, d.Actions)
	require.Equal(t, t0.Add(5*time.Second), d.WakeAt, "the loop naps only until the window ends")

	// spec ha-loop §3.1: within the first loop_wait the race waits even
	// when the WAL did not move.
	d = Decide(unlocked().with(backoff).with(func(o *Observation) { o.PrevLSN = o.PG.LSN; o.Now = t0.Add(time.Second) }).o)
	require.Contains(t, d.Message, "until leader race")

	// spec ha-loop §3.1: WAL stopped and one loop_wait passed: race now.
	d = Decide(unlocked().with(backoff).with(func(o *Observation) {
		o.PrevLSN = o.PG.LSN
		o.Cluster.Config.Data["loop_wait"] = 2
		o.Now = t0.Add(3 * time.Second)
	}).o)
	require.Equal(t, []Action{ProbePeers{}}, d.Actions)

	// spec ha-loop §3.1: the window is over.
	d = Decide(unlocked().with(backoff).with(func(o *Observation) { o.Now = t0.Add(6 * time.Second) }).o)
	require.Equal(t, []Action{ProbePeers{}}, d.Actions)

	// spec ha-loop §3.1: off by default, and never for a named candidate.
	require.Equal(t, []Action{ProbePeers{}}, Decide(unlocked().o).Actions)
	d = Decide(unlocked().with(backoff).with(func(o *Observation) {
		o.Cluster.Failover = &dcs.Failover{Candidate: "n2", Version: "9"}
	}).o)
	require.NotContains(t, d.Message, "until leader race")
}

func restartReq(r RestartRequest) func(o *Observation) {
	return func(o *Observation) { o.Request = &Request{Kind: RequestRestart, Restart: r} }
}

func TestRestartRequest(t *testing.T) {
	timeout := 300 * time.Second
	tests := []struct {
		name    string
		w       *world
		actions []Action
	}{
		{
			// spec ha-loop §9.1: the leader restarts in place and keeps the key.
			name:    "leader restarts as primary",
			w:       newWorld("n1", "n1").with(restartReq(RestartRequest{})),
			actions: []Action{UpdateLeader{}, Restart{Primary: true, Timeout: timeout}},
		},
		{
			// spec ha-loop §9.1: a replica restarts following its leader; the
			// request's timeout bounds the start.
			name:    "replica restarts following the leader",
			w:       newWorld("n2", "n1").with(restartReq(RestartRequest{Role: "replica", Timeout: time.Minute})),
			actions: []Action{Restart{Upstream: "n1", Timeout: time.Minute}},
		},
		{
			// spec ha-loop §9.1: role must equal the current role.
			name:    "role condition",
			w:       newWorld("n2", "n1").with(restartReq(RestartRequest{Role: "primary"})),
			actions: []Action{Refuse{Err: ErrRestartConditions}},
		},
		{
			// spec ha-loop §9.1: postgres_version must be greater than the running one.
			name: "postgres_version condition",
			w: newWorld("n2", "n1").with(restartReq(RestartRequest{PostgresVersion: 150004})).with(func(o *Observation) {
				o.PG.ServerVersion = 150004
			}),
			actions: []Action{Refuse{Err: ErrRestartConditions}},
		},
		{
			// spec ha-loop §9.1: restart_pending needs a pending restart.
			name:    "restart_pending condition",
			w:       newWorld("n2", "n1").with(restartReq(RestartRequest{RestartPending: true})),
			actions: []Action{Refuse{Err: ErrRestartConditions}},
		},
		{
			// spec ha-loop §9.1: restart_pending with a pending restart.
			name: "restart_pending satisfied",
			w: newWorld("n2", "n1").with(restartReq(RestartRequest{RestartPending: true})).with(func(o *Observation) {
				o.PG.PendingRestart = true
			}),
			actions: []Action{Restart{Upstream: "n1", Timeout: timeout}},
		},
		{
			// spec ha-loop §9.1: refused while another async action exists.
			name: "busy",
			w: newWorld("n2", "n1").with(restartReq(RestartRequest{})).with(func(o *Observation) {
				o.Op = Operation{Kind: OpRewind, Running: true, Started: t0}
			}),
			actions: []Action{Refuse{Err: &BusyError{Op: "rewind"}}},
		},
		{
			// spec ha-loop §9.1: refused when this cycle already changes Postgres.
			name:    "cycle demotes",
			w:       newWorld("n2", "n1").with(restartReq(RestartRequest{})).with(func(o *Observation) { o.PG.Primary = true }),
			actions: []Action{Demote{Mode: DemoteImmediateNoLock, Upstream: "n1"}, Refuse{Err: &BusyError{Op: "demote mode=immediate-nolock upstream=n1"}}},
		},
		{
			// spec ha-loop §9.1, §12: no DCS, no restart.
			name: "dcs unreachable",
			w: newWorld("n2", "n1").with(restartReq(RestartRequest{})).with(func(o *Observation) {
				o.Cluster, o.DCSError = nil, true
			}),
			actions: []Action{Refuse{Err: ErrDCSUnavailable}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.actions, Decide(tc.w.o).Actions)
		})
	}
}

// syncReplica is n2, a synchronous standby of n1 in synchronous_mode on.
func syncReplica() *world {
	return newWorld("n2", "n1").with(func(o *Observation) {
		o.Cluster.Config.Data["synchronous_mode"] = true
		o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n2"}, Version: "5"}
	})
}

func TestLeaveSyncBeforeRestart(t *testing.T) {
	// spec ha-loop §7.6: publish nosync first and poll every 2 s.
	d := Decide(syncReplica().with(restartReq(RestartRequest{})).o)
	require.Equal(t, []Action{LeaveSync{}}, d.Actions)
	require.Equal(t, t0.Add(2*time.Second), d.WakeAt)

	// spec ha-loop §7.6: still listed in /sync: keep waiting.
	d = Decide(syncReplica().with(restartReq(RestartRequest{})).with(func(o *Observation) {
		o.LeavingSyncSince = t0.Add(-5 * time.Second)
	}).o)
	require.Empty(t, d.Actions)

	// spec ha-loop §7.6: /sync dropped me: restart.
	d = Decide(syncReplica().with(restartReq(RestartRequest{})).with(func(o *Observation) {
		o.LeavingSyncSince = t0.Add(-5 * time.Second)
		o.Cluster.Sync.Standbys = nil
	}).o)
	require.Equal(t, []Action{Restart{Upstream: "n1", Timeout: 300 * time.Second}}, d.Actions)

	// spec ha-loop §7.6: at most 2 x loop_wait, then proceed anyway.
	d = Decide(syncReplica().with(restartReq(RestartRequest{})).with(func(o *Observation) {
		o.LeavingSyncSince = t0.Add(-21 * time.Second)
	}).o)
	require.Equal(t, []Action{Restart{Upstream: "n1", Timeout: 300 * time.Second}}, d.Actions)

	// spec ha-loop §7.6: a nosync replica restarts at once.
	d = Decide(syncReplica().with(restartReq(RestartRequest{})).with(func(o *Observation) {
		o.Config.Tags = map[string]any{"nosync": true}
	}).o)
	require.Equal(t, []Action{Restart{Upstream: "n1", Timeout: 300 * time.Second}}, d.Actions)
}

func TestScheduledRestart(t *testing.T) {
	sched := func(at time.Time, pm time.Time) func(o *Observation) {
		return func(o *Observation) {
			o.ScheduledRestart = &ScheduledRestart{At: at, PostmasterStart: pm}
			o.PG.PostmasterStart = t0.Add(-time.Hour)
		}
	}
	pm := t0.Add(-time.Hour)
	// spec ha-loop §9.2: not due yet: nap until it is.
	d := Decide(newWorld("n2", "n1").with(sched(t0.Add(time.Minute), pm)).o)
	require.Empty(t, d.Actions)
	require.Equal(t, t0.Add(time.Minute), d.WakeAt)

	// spec ha-loop §9.2: within loop_wait: wake at the exact time.
	d = Decide(newWorld("n2", "n1").with(sched(t0.Add(3*time.Second), pm)).o)
	require.Equal(t, t0.Add(3*time.Second), d.WakeAt)

	// spec ha-loop §9.2: due: restart, schedule removed.
	d = Decide(newWorld("n2", "n1").with(sched(t0, pm)).o)
	require.Equal(t, "restart initiated", d.Message)
	require.Equal(t, []Action{Restart{Upstream: "n1", Timeout: 300 * time.Second}, ClearScheduledRestart{}}, d.Actions)

	// spec ha-loop §9.2: more than 1.5 x loop_wait late: stale, removed.
	d = Decide(newWorld("n2", "n1").with(sched(t0.Add(-16*time.Second), pm)).o)
	require.Equal(t, []Action{ClearScheduledRestart{}}, d.Actions)

	// spec ha-loop §9.2: the postmaster restarted since: cancelled.
	d = Decide(newWorld("n2", "n1").with(sched(t0, t0.Add(-2*time.Hour))).o)
	require.Equal(t, []Action{ClearScheduledRestart{}}, d.Actions)

	// spec ha-loop §9.2, §13: never in pause.
	d = Decide(newWorld("n2", "n1").with(sched(t0, pm)).with(func(o *Observation) { o.Cluster.Config.Data["pause"] = true }).o)
	require.Empty(t, d.Actions)

	// spec ha-loop §9.2: conditions checked when it runs.
	d = Decide(newWorld("n2", "n1").with(sched(t0, pm)).with(func(o *Observation) {
		o.ScheduledRestart.Restart.Role = "primary"
	}).o)
	require.Equal(t, []Action{ClearScheduledRestart{}}, d.Actions)
	require.Equal(t, "restart conditions are not satisfied", d.Message)

	// spec ha-loop §9.2: the leader keeps its key while restarting.
	d = Decide(newWorld("n1", "n1").with(sched(t0, pm)).o)
	require.Equal(t, []Action{UpdateLeader{}, Restart{Primary: true, Timeout: 300 * time.Second}, ClearScheduledRestart{}}, d.Actions)
}

func reinitReq(r ReinitializeRequest) func(o *Observation) {
	return func(o *Observation) { o.Request = &Request{Kind: RequestReinitialize, Reinit: r} }
}

func TestReinitializeRequest(t *testing.T) {
	tests := []struct {
		name    string
		w       *world
		actions []Action
	}{
		{
			// spec ha-loop §9.3: clone again from the leader.
			name: "replica", w: newWorld("n2", "n1").with(reinitReq(ReinitializeRequest{})),
			actions: []Action{Reinit{Leader: "n1"}},
		},
		{
			// spec ha-loop §9.3: refused on the lock holder.
			name: "leader", w: newWorld("n1", "n1").with(reinitReq(ReinitializeRequest{})),
			actions: []Action{UpdateLeader{}, Refuse{Err: ErrIsLeader}},
		},
		{
			// spec ha-loop §9.3: refused without a leader.
			name: "no leader", w: newWorld("n2", "").with(reinitReq(ReinitializeRequest{})),
			actions: []Action{ProbePeers{}, Refuse{Err: ErrNoLeader}},
		},
		{
			// spec ha-loop §9.3: busy without force.
			name: "busy", w: newWorld("n2", "n1").with(reinitReq(ReinitializeRequest{})).with(func(o *Observation) {
				o.Op = Operation{Kind: OpRewind, Running: true}
			}),
			actions: []Action{Refuse{Err: &BusyError{Op: "rewind"}}},
		},
		{
			// spec ha-loop §9.3: force cancels the running action.
			name: "force", w: newWorld("n2", "n1").with(reinitReq(ReinitializeRequest{Force: true})).with(func(o *Observation) {
				o.Op = Operation{Kind: OpRewind, Running: true}
			}),
			actions: []Action{CancelOp{}, Reinit{Leader: "n1"}},
		},
		{
			// spec ha-loop §9.3: from a clonefrom member unless from_leader.
			name: "clonefrom", w: newWorld("n2", "n1").with(reinitReq(ReinitializeRequest{})).with(func(o *Observation) {
				o.Cluster.Member("n3").Tags = map[string]any{"clonefrom": true}
			}),
			actions: []Action{Reinit{Leader: "n3"}},
		},
		{
			// spec ha-loop §9.3: from_leader.
			name: "from leader", w: newWorld("n2", "n1").with(reinitReq(ReinitializeRequest{FromLeader: true})).with(func(o *Observation) {
				o.Cluster.Member("n3").Tags = map[string]any{"clonefrom": true}
			}),
			actions: []Action{Reinit{Leader: "n1", FromLeader: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.actions, Decide(tc.w.o).Actions)
		})
	}
}

func TestFailsafeHeartbeat(t *testing.T) {
	fs := func(until time.Time) func(o *Observation) {
		return func(o *Observation) {
			o.Cluster.Config.Data["failsafe_mode"] = true
			o.FailsafeLeader = &FailsafeLeader{Name: "n1", ConnURL: "postgres://n1", APIURL: "http://n1", Until: until}
		}
	}
	// spec ha-loop §11: a primary that sent POST /failsafe within ttl is
	// the leader of the unlocked cluster: no race.
	d := Decide(unlocked().with(fs(t0.Add(time.Second))).o)
	require.Equal(t, "no action. I am (n2), a secondary, and following a leader (n1)", d.Message)
	require.Empty(t, d.Actions)

	// spec ha-loop §11: the heartbeat is valid for ttl only.
	d = Decide(unlocked().with(fs(t0)).o)
	require.Equal(t, []Action{ProbePeers{}}, d.Actions)

	// spec ha-loop §11: ignored without failsafe_mode.
	d = Decide(unlocked().with(fs(t0.Add(time.Second))).with(func(o *Observation) {
		o.Cluster.Config.Data["failsafe_mode"] = false
	}).o)
	require.Equal(t, []Action{ProbePeers{}}, d.Actions)
}

func TestLogicalSlots(t *testing.T) {
	logical := func(o *Observation) {
		o.Cluster.Config.Data["slots"] = map[string]any{
			"cdc":    map[string]any{"type": "logical", "database": "app", "plugin": "pgoutput"},
			"n3":     map[string]any{"type": "logical", "database": "app", "plugin": "pgoutput"}, // a member slot name
			"broken": map[string]any{"type": "logical"},
		}
		o.Cluster.Status.Slots = map[string]dcs.LSN{"cdc": 0x2000000}
	}
	// spec ha-loop §10 step 5: the primary creates permanent logical slots.
	d := Decide(newWorld("n1", "n1").with(logical).o)
	require.Equal(t, []Action{UpdateLeader{}, SyncSlots{Names: "n2,n3", Logical: "cdc:app:pgoutput"}}, d.Actions)

	// spec ha-loop §10 step 6: a replica copies the missing ones from the primary.
	d = Decide(newWorld("n2", "n1").with(logical).o)
	require.Equal(t, []Action{CopyLogicalSlots{From: "n1", Names: "cdc"}}, d.Actions)
	require.Equal(t, "Copying logical slots [cdc] from the primary", d.Message)

	// spec ha-loop §10: a replica keeps the copies it has.
	d = Decide(newWorld("n2", "n1").with(logical).with(func(o *Observation) {
		o.PG.LogicalSlots, o.PG.SlotLSNs = []string{"cdc"}, map[string]dcs.LSN{"cdc": 0x2000000}
	}).o)
	require.Empty(t, d.Actions)

	// spec ha-loop §10: a slot not in /status.slots is not copied yet.
	d = Decide(newWorld("n2", "n1").with(logical).with(func(o *Observation) { o.Cluster.Status.Slots = nil }).o)
	require.Empty(t, d.Actions)

	// spec ha-loop §10: nofailover nodes get no permanent slots.
	d = Decide(newWorld("n2", "n1").with(logical).with(func(o *Observation) { o.Config.Tags = map[string]any{"nofailover": true} }).o)
	require.Empty(t, d.Actions)
}

func TestRetainSlots(t *testing.T) {
	// spec ha-loop §10, dcs-layout §2.5: the leader keeps the slot of a
	// member whose key vanished for member_slots_ttl (retain_slots).
	d := Decide(newWorld("n1", "n1").with(func(o *Observation) { o.RetainSlots = []string{"n2", "n3", "n4"} }).o)
	require.Equal(t, []Action{UpdateLeader{}, SyncSlots{Names: "n2,n3,n4"}}, d.Actions)

	// spec ha-loop §10: replicas keep /status.retain_slots too.
	d = Decide(newWorld("n2", "n1").with(func(o *Observation) {
		o.Cluster.Status.RetainSlots = []string{"n1", "n2", "n3", "n4"}
		o.PG.Slots = []string{"n1", "n3"}
	}).o)
	require.Equal(t, []Action{SyncSlots{Names: "n1,n3,n4"}}, d.Actions)

	// spec ha-loop §10: member_slots_ttl 0: slots go with the key.
	d = Decide(newWorld("n1", "n1").with(func(o *Observation) {
		o.RetainSlots = []string{"n4"}
		o.Cluster.Config.Data["member_slots_ttl"] = 0
	}).o)
	require.Equal(t, []Action{UpdateLeader{}}, d.Actions)
}

func TestWatchdogTimeout(t *testing.T) {
	c := DefaultConfig()
	// spec ha-loop §16: timeout = ttl - safety_margin (default 5).
	require.Equal(t, 25*time.Second, c.WatchdogTimeout(30*time.Second))
	neg := -time.Second
	c.WatchdogSafetyMargin = &neg
	// spec ha-loop §16: -1 means ttl // 2.
	require.Equal(t, 15*time.Second, c.WatchdogTimeout(30*time.Second))

	leader := func(mode WatchdogMode, ttl int) *world {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.Config.Watchdog = mode
			o.WatchdogUsable = true
			o.Cluster.Config.Data["ttl"] = ttl
			o.Cluster.Config.Data["loop_wait"] = 1
			o.Cluster.Config.Data["retry_timeout"] = 2
		})
	}
	// spec ha-loop §16: armed with the timeout of the current ttl.
	require.Equal(t, []Action{UpdateLeader{}, ArmWatchdog{Timeout: 15 * time.Second}}, Decide(leader(WatchdogAutomatic, 20).o).Actions)
	// spec ha-loop §16: ttl − safety_margin < loop_wait: unsupported;
	// automatic runs without it.
	require.Equal(t, []Action{UpdateLeader{}}, Decide(leader(WatchdogAutomatic, 5).o).Actions)
	// spec ha-loop §16, §4.2 step 1: required: the primary demotes.
	d := Decide(leader(WatchdogRequired, 5).o)
	require.Equal(t, "Demoting self because watchdog could not be activated", d.Message)
	// spec ha-loop §16, §3.2 step 8: required and unusable: not a candidate.
	d = Decide(unlocked().with(func(o *Observation) {
		o.Config.Watchdog = WatchdogRequired
		o.WatchdogUsable = true
		o.Cluster.Config.Data["ttl"] = 5
		o.Cluster.Config.Data["loop_wait"] = 1
	}).o)
	require.Contains(t, d.Message, "Watchdog device is not usable")
	// spec ha-loop §16, §13: disabled in pause.
	d = Decide(leader(WatchdogAutomatic, 20).with(func(o *Observation) {
		o.Cluster.Config.Data["pause"] = true
		o.WatchdogArmed = true
	}).o)
	require.Equal(t, []Action{DisarmWatchdog{}, UpdateLeader{}}, d.Actions)
}

// TestWatchdogSmallTTL checks spec ha-loop §16 where ttl − safety_margin
// does not suit loop_wait, e.g. ttl 5 with the default margin 5 gives 0:
// as in Patroni (watchdog/base.py, timing_slack < 0) nothing is adjusted,
// the watchdog is unsupported. It is not activated (automatic runs
// without it; required demotes or does not promote and reports
// watchdog_failed), no ArmWatchdog ever carries a timeout <= 0, and a
// device armed before the change is still fed with its own timeout
// (ArmWatchdog{}), as Patroni's keepalive does.
func TestWatchdogSmallTTL(t *testing.T) {
	require.Equal(t, time.Duration(0), DefaultConfig().WatchdogTimeout(5*time.Second), "ttl 5 − safety_margin 5")
	leader := func(mode WatchdogMode, armed bool, f func(d map[string]any)) *world {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.Config.Watchdog = mode
			o.WatchdogUsable, o.WatchdogArmed = true, armed
			o.Cluster.Config.Data["ttl"] = 5
			o.Cluster.Config.Data["loop_wait"] = 1
			o.Cluster.Config.Data["retry_timeout"] = 2
			if f != nil {
				f(o.Cluster.Config.Data)
			}
		})
	}
	tests := []struct {
		name    string
		o       Observation
		msg     string
		actions []Action
	}{
		{
			name: "automatic: not activated", // spec ha-loop §16
			o:    leader(WatchdogAutomatic, false, nil).o,
			msg:  "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}},
		},
		{
			name: "automatic, loop_wait 0 in the DCS: a 0 s timeout is no timeout", // spec ha-loop §16
			o:    leader(WatchdogAutomatic, false, func(d map[string]any) { d["loop_wait"] = 0 }).o,
			msg:  "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}},
		},
		{
			name: "automatic, safety_margin above ttl: not activated", // spec ha-loop §16
			o: leader(WatchdogAutomatic, false, func(d map[string]any) { d["ttl"] = 30 }).with(func(o *Observation) {
				o.Config.WatchdogSafetyMargin = new(40 * time.Second)
			}).o,
			msg: "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}},
		},
		{
			name: "automatic, armed before: fed, its timeout kept", // spec ha-loop §16
			o:    leader(WatchdogAutomatic, true, nil).o,
			msg:  "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}, ArmWatchdog{}},
		},
		{
			name: "required: the primary demotes", // spec ha-loop §16, §4.2 step 1
			o:    leader(WatchdogRequired, false, nil).o,
			msg:  "Demoting self because watchdog could not be activated", actions: []Action{UpdateLeader{}, Demote{Mode: DemoteImmediate}},
		},
		{
			name: "required, armed before: fed, stays primary", // spec ha-loop §16
			o:    leader(WatchdogRequired, true, nil).o,
			msg:  "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}, ArmWatchdog{}},
		},
		{
			name: "failsafe primary, armed before: fed", // spec ha-loop §11, §16
			o: leader(WatchdogAutomatic, true, func(d map[string]any) { d["failsafe_mode"] = true }).with(func(o *Observation) {
				o.LastConfig, o.LastCluster = o.Cluster.Config, o.Cluster
				o.LastCluster.Failsafe = dcs.Failsafe{"n1": "http://n1"}
				o.Cluster, o.DCSError, o.FailsafeOK = nil, true, new(true)
			}).o,
			msg: "continue to run as a leader because failsafe mode is enabled and all members are accessible", actions: []Action{ArmWatchdog{}},
		},
		{
			name: "failsafe primary, not armed: not activated", // spec ha-loop §11, §16
			o: leader(WatchdogAutomatic, false, func(d map[string]any) { d["failsafe_mode"] = true }).with(func(o *Observation) {
				o.LastConfig, o.LastCluster = o.Cluster.Config, o.Cluster
				o.LastCluster.Failsafe = dcs.Failsafe{"n1": "http://n1"}
				o.Cluster, o.DCSError, o.FailsafeOK = nil, true, new(true)
			}).o,
			msg: "continue to run as a leader because failsafe mode is enabled and all members are accessible",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.o)
			require.Equal(t, tc.msg, d.Message)
			require.Equal(t, tc.actions, d.Actions)
		})
	}

	// spec ha-loop §16 (Patroni's Watchdog.is_healthy): required and
	// unsupported is watchdog_failed; automatic never is.
	s := func(mode WatchdogMode, ttl time.Duration) Settings {
		c := DefaultConfig()
		c.Watchdog, c.TTL, c.LoopWait = mode, ttl, time.Second
		return Settings{Config: c}
	}
	require.True(t, s(WatchdogRequired, 5*time.Second).watchdogFailed(true))
	require.True(t, s(WatchdogRequired, 30*time.Second).watchdogFailed(false), "no device")
	require.False(t, s(WatchdogRequired, 30*time.Second).watchdogFailed(true))
	require.False(t, s(WatchdogAutomatic, 5*time.Second).watchdogFailed(false))
}

func TestPostPromoteCheckpoint(t *testing.T) {
	// spec ha-loop §7.3: after a promotion the new primary runs CHECKPOINT
	// (in the background; its member key says checkpoint_after_promote:
	// false until then).
	d := Decide(newWorld("n1", "n1").with(func(o *Observation) { o.CheckpointNeeded = true }).o)
	require.Equal(t, []Action{UpdateLeader{}, Checkpoint{}}, d.Actions)
	// spec ha-loop §7.3, §6.2: replicas wait for it before pg_rewind.
	d = Decide(newWorld("n2", "n1").with(func(o *Observation) {
		o.PG.Diverged, o.PG.CanRewind = new(true), true
		f := false
		o.Cluster.Member("n1").CheckpointAfterPromote = &f
	}).o)
	require.Equal(t, "Waiting for checkpoint on n1 before rewind", d.Message)
}

func TestFailoverLimitation(t *testing.T) {
	sw := func(o *Observation) {
		o.Cluster.Failover = &dcs.Failover{Leader: "n1", Version: "9"}
	}
	// spec ha-loop §0 failover_limitation, §5.4: unreachable, nofailover
	// and watchdog_failed peers are no candidates: the switchover is
	// refused and the request cleared.
	d := Decide(newWorld("n1", "n1").with(sw).with(func(o *Observation) {
		o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1, WatchdogFailed: true}, "n3": {}}
	}).o)
	require.Equal(t, []Action{UpdateLeader{}, ClearFailover{Version: "9"}}, d.Actions)
	d = Decide(newWorld("n1", "n1").with(sw).with(func(o *Observation) {
		o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1, NoFailover: true}}
	}).o)
	require.Equal(t, []Action{UpdateLeader{}, ClearFailover{Version: "9"}}, d.Actions)
	// spec ha-loop §5.4: a healthy candidate within the lag limit: demote.
	d = Decide(newWorld("n1", "n1").with(sw).with(func(o *Observation) {
		o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}}
	}).o)
	require.Equal(t, []Action{UpdateLeader{}, Demote{Mode: DemoteGraceful}}, d.Actions)
	require.Equal(t, "switchover: demoting myself", d.Message)
	// spec ha-loop §5.4: too far behind the leader's position.
	d = Decide(newWorld("n1", "n1").with(sw).with(func(o *Observation) {
		o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x1000000, Timeline: 1}}
	}).o)
	require.Equal(t, []Action{UpdateLeader{}, ClearFailover{Version: "9"}}, d.Actions)
}

func TestFailoverPossibleQuorum(t *testing.T) {
	// spec ha-loop §5.4, review note: in active quorum mode a failover
	// needs /sync.quorum + 1 good candidates.
	w := func(peers map[string]PeerStatus) Observation {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.Cluster.Config.Data["synchronous_mode"] = "quorum"
			o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n2", "n3"}, Quorum: 1, Version: "5"}
			o.PG.SyncStandbyNames, o.PG.SyncNum = []string{"n2", "n3"}, 1
			o.Cluster.Failover = &dcs.Failover{Leader: "n1", Version: "9"}
			o.Peers = peers
		}).o
	}
	good := PeerStatus{Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}
	d := Decide(w(map[string]PeerStatus{"n2": good, "n3": {}}))
	require.NotContains(t, d.Actions, Action(Demote{Mode: DemoteGraceful}), d.String())
	d = Decide(w(map[string]PeerStatus{"n2": good, "n3": good}))
	require.Contains(t, d.Actions, Action(Demote{Mode: DemoteGraceful}), d.String())
}

func TestPauseSwitchover(t *testing.T) {
	paused := func(candidate string) Observation {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.Cluster.Config.Data["pause"] = true
			o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: candidate, Version: "9"}
			o.Peers = peersAll(PeerStatus{Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}, "n2", "n3")
		}).o
	}
	// spec ha-loop §5.5: in pause only a switchover to a named candidate.
	d := Decide(paused(""))
	require.Equal(t, []Action{UpdateLeader{}, ClearFailover{Version: "9"}}, d.Actions)
	d = Decide(paused("n2"))
	require.Equal(t, []Action{UpdateLeader{}, Demote{Mode: DemoteGraceful}}, d.Actions)
	require.Equal(t, "PAUSE: switchover: demoting myself", d.Message)
	// spec ha-loop §5.5, §3.2 step 2: the named candidate takes the lock
	// in pause; the request is rewritten without the old leader (§3.3).
	d = Decide(newWorld("n2", "").with(func(o *Observation) {
		o.Cluster.Config.Data["pause"] = true
		o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "9"}
	}).o)
	require.Equal(t, []Action{AcquireLeader{}, Promote{}, RewriteFailover{Candidate: "n2", Version: "9"}}, d.Actions)
}

func TestDemoteModes(t *testing.T) {
	// spec ha-loop §6.1: the modes that release the leader key.
	for m, want := range map[DemoteMode]bool{DemoteGraceful: true, DemoteImmediate: true, DemoteImmediateNoLock: false, DemoteOffline: false, DemoteCluster: false} {
		require.Equal(t, want, m.ReleasesLock(), m.String())
	}
	require.Equal(t, "immediate-nolock", DemoteImmediateNoLock.String())
	// spec ha-loop §6.1: lock lost -> immediate-nolock; DCS lost ->
	// offline; standby_cluster added -> demote-cluster.
	require.Equal(t, []Action{Demote{Mode: DemoteImmediateNoLock}}, Decide(newWorld("n1", "n1").with(func(o *Observation) {
		o.Failure = &Failure{Action: UpdateLeader{}}
	}).o).Actions)
	require.Equal(t, []Action{Demote{Mode: DemoteOffline}}, Decide(newWorld("n1", "n1").with(func(o *Observation) {
		o.Cluster, o.DCSError = nil, true
	}).o).Actions)
	require.Equal(t, []Action{UpdateLeader{}, Demote{Mode: DemoteCluster, Upstream: "remote"}}, Decide(newWorld("n1", "n1").with(func(o *Observation) {
		standbyCluster(o)
	}).o).Actions)
}

func TestRolesAndStates(t *testing.T) {
	tests := []struct {
		name, role, state string
		w                 *world
	}{
		{"primary", "primary", "running", newWorld("n1", "n1")},
		{"replica", "replica", "running", newWorld("n2", "n1")},
		{"uninitialized", "uninitialized", "stopped", newWorld("n2", "n1").with(func(o *Observation) {
			o.PG = PGState{DataDir: DataEmpty, CleanShutdown: true}
		})},
		{"promoted", "promoted", "running", newWorld("n1", "n1").with(func(o *Observation) {
			o.PG.Primary = false
			o.Op = Operation{Kind: OpPromote, Running: true}
		})},
		{"standby_leader", "standby_leader", "running", newWorld("n1", "n1").with(func(o *Observation) {
			standbyCluster(o)
			o.PG.Primary, o.PG.Upstream = false, "remote"
		})},
		{"demoted", "demoted", "running", newWorld("n2", "n1").with(func(o *Observation) { o.PG.Primary = true })},
		{"creating replica", "replica", "creating replica", newWorld("n2", "n1").with(func(o *Observation) {
			o.Op = Operation{Kind: OpReinit, Running: true}
		})},
		{"restarting", "replica", "restarting", newWorld("n2", "n1").with(func(o *Observation) {
			o.Op = Operation{Kind: OpRestart, Running: true}
		})},
		{"crashed", "replica", "crashed", newWorld("n2", "n1").with(func(o *Observation) {
			o.PG.Running, o.PG.CleanShutdown = false, false
		})},
		{"stopped", "replica", "stopped", newWorld("n2", "n1").with(func(o *Observation) { o.PG.Running = false })},
		{"starting", "replica", "starting", newWorld("n2", "n1").with(func(o *Observation) { o.PG.Starting = true })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// spec ha-loop §17: role and state strings.
			d := Decide(tc.w.o)
			require.Equal(t, tc.role, d.Role, d.String())
			require.Equal(t, tc.state, d.State, d.String())
		})
	}
}

func TestRestartTimeout(t *testing.T) {
	// spec ha-loop §9.1, §2 step 6: a leader's restart that outlasts the
	// request's timeout is given up when a failover is possible.
	restarting := func(peers map[string]PeerStatus) Observation {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.PG.Running, o.PG.Primary, o.PG.WasPrimary = false, false, true
			o.Op = Operation{Kind: OpRestart, Running: true, Started: t0.Add(-time.Minute), Timeout: 30 * time.Second}
			o.Peers = peers
		}).o
	}
	d := Decide(restarting(peersAll(PeerStatus{Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}, "n2", "n3")))
	require.Equal(t, []Action{CancelOp{}, Demote{Mode: DemoteImmediate}}, d.Actions)
	require.Equal(t, "stopped PostgreSQL because of startup timeout", d.Message)
	d = Decide(restarting(map[string]PeerStatus{}))
	require.Equal(t, "primary start has timed out, but continuing to wait because failover is not possible", d.Message)
}

func TestAdvanceSlots(t *testing.T) {
	w := func(f func(o *Observation)) Observation {
		return newWorld("n2", "n1").with(func(o *Observation) {
			o.Cluster.Config.Data["slots"] = map[string]any{"cdc": map[string]any{"type": "logical", "database": "app", "plugin": "pgoutput"}}
			o.Cluster.Status.Slots = map[string]dcs.LSN{"n1": 0x3000000, "n3": 0x2800000, "cdc": 0x3100000}
			o.PG.LogicalSlots = []string{"cdc"}
			o.PG.ReplayLSN = 0x2F00000
			o.PG.SlotLSNs = map[string]dcs.LSN{"n1": 0x1000000, "n3": 0x2800000, "cdc": 0x1000000}
		}).with(f).o
	}
	// spec ha-loop §10 steps 4 and 6: a replica moves its slots to the
	// leader's positions, logical ones no further than it replayed.
	d := Decide(w(func(o *Observation) {}))
	require.Equal(t, []Action{AdvanceSlots{Physical: "n1", Logical: "cdc"}}, d.Actions)
	require.Equal(t, map[string]dcs.LSN{"n1": 0x2F00000, "cdc": 0x2F00000},
		SlotTargets(map[string]dcs.LSN{"n1": 0x3000000, "n3": 0x2800000, "cdc": 0x3100000}, w(func(o *Observation) {}).PG, []string{"n1", "n3"}, []string{"cdc"}))
	// spec ha-loop §10: nothing to do once they are there.
	d = Decide(w(func(o *Observation) {
		o.PG.SlotLSNs = map[string]dcs.LSN{"n1": 0x2F00000, "n3": 0x2800000, "cdc": 0x2F00000}
	}))
	require.Empty(t, d.Actions)
	// spec ha-loop §10: the primary does not advance its own slots.
	d = Decide(newWorld("n1", "n1").with(func(o *Observation) {
		o.Cluster.Status.Slots = map[string]dcs.LSN{"n2": 0x3000000}
	}).o)
	require.Equal(t, []Action{UpdateLeader{}}, d.Actions)
}

func TestCrashRecoverySkippedAfterClone(t *testing.T) {
	// spec ha-loop §6.3 step 4: a data directory with backup_label (a
	// fresh clone of a running primary, pg_control "in production") starts
	// as a replica without single-user crash recovery.
	w := newWorld("n2", "n1").with(func(o *Observation) {
		o.PG.Running, o.PG.CleanShutdown, o.PG.WasPrimary, o.PG.CanRewind = false, false, true, true
	})
	require.Equal(t, []Action{CrashRecovery{}}, Decide(w.o).Actions)
	w.o.PG.BackupLabel = true
	require.Equal(t, []Action{StartPostgres{Upstream: "n1"}}, Decide(w.o).Actions)
}

// The dynamic configuration's standby_cluster section decides at runtime
// whether this is a standby cluster, both ways: ctl demote-cluster adds it
// and the primary demotes to a standby leader, promote-cluster removes it
// and the standby leader promotes (spec/patronictl.md §3.17-3.18,
// spec ha-loop §6.1 demote-cluster).
func TestStandbyClusterFromDynamicConfig(t *testing.T) {
	withSection := func(v any) *world {
		return newWorld("n1", "n1").with(func(o *Observation) { o.Cluster.Config.Data["standby_cluster"] = v })
	}
	for _, v := range []any{
		map[string]any{"host": "10.0.0.9", "port": json.Number("5433")},
		map[string]any{"restore_command": "cp /archive/%f %p"},
	} {
		d := Decide(withSection(v).o)
		require.Equal(t, []Action{UpdateLeader{}, Demote{Mode: DemoteCluster, Upstream: "remote"}}, d.Actions, "%v", v)
		require.Equal(t, "cannot be a real primary in standby cluster", d.Message)
	}
	for _, v := range []any{nil, map[string]any{}, map[string]any{"primary_slot_name": "s"}} {
		d := Decide(withSection(v).o)
		require.NotContains(t, fmt.Sprint(d.Actions), "demote", "%v is no standby cluster", v)
	}

	// A standby leader whose section was removed promotes, whatever its
	// start-up configuration said.
	d := Decide(newWorld("n1", "n1").with(func(o *Observation) {
		standbyCluster(o)
		o.Cluster.Config.Data["standby_cluster"] = nil
		o.PG.Primary, o.PG.Upstream, o.PG.Streaming = false, "remote", true
		o.Cluster.Members[0].Role = "standby_leader"
	}).o)
	require.Contains(t, d.Actions, Action(Promote{}), d.Message)

	eff := effective(Config{StandbyCluster: &StandbyCluster{Host: "a", Port: 1}},
		&dcs.ClusterConfig{Version: "1", Data: map[string]any{"standby_cluster": map[string]any{"host": "b", "port": "6543"}}})
	require.Equal(t, &StandbyCluster{Host: "b", Port: 6543}, eff.StandbyCluster)
	eff = effective(Config{StandbyCluster: &StandbyCluster{Host: "a", Port: 1}}, &dcs.ClusterConfig{Version: "1", Data: map[string]any{}})
	require.Nil(t, eff.StandbyCluster, "the dynamic configuration has no section: not a standby cluster")
	eff = effective(Config{StandbyCluster: &StandbyCluster{Host: "a", Port: 1}}, nil)
	require.Equal(t, &StandbyCluster{Host: "a", Port: 1}, eff.StandbyCluster, "no dynamic configuration yet: the start-up one")
}

// standbyCluster makes o a standby cluster following "remote": in the
// start-up configuration and, when the cluster has one, in its dynamic
// configuration, which decides.
func standbyCluster(o *Observation) {
	o.Config.StandbyCluster = &StandbyCluster{Host: "remote", Port: 5432}
	if o.Cluster != nil && o.Cluster.Config != nil {
		o.Cluster.Config.Data["standby_cluster"] = map[string]any{"host": "remote", "port": json.Number("5432")}
	}
}
