package ha

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// TestXminSlotDrop checks §10 step 4: on PG11+ a member slot that nobody
// streams from through this node but that carries an xmin is dropped (it
// would hold vacuum back), only when the cluster has a leader that is
// another node or this node runs as primary.
func TestXminSlotDrop(t *testing.T) {
	// n3 replicates from n2 (cascading): on the primary n1 its slot is
	// not expected active.
	cascade := func(o *Observation) {
		o.Cluster.Member("n3").Tags = map[string]any{"replicatefrom": "n2"}
	}
	xmin := func(names ...string) func(o *Observation) {
		return func(o *Observation) { o.PG.ServerVersion, o.PG.SlotsWithXmin = 150000, names }
	}
	cases := []struct {
		name string
		w    *world
		want []string
	}{
		{"primary: slot not expected active with xmin is dropped", // spec ha-loop §10
			newWorld("n1", "n1").with(cascade).with(xmin("n3")), []string{"n3"}},
		{"primary: slot expected active is kept despite xmin", // spec ha-loop §10
			newWorld("n1", "n1").with(xmin("n2", "n3")), nil},
		{"primary: replicatefrom naming an unknown member streams from us", // spec ha-loop §10
			newWorld("n1", "n1").with(func(o *Observation) { o.Cluster.Member("n3").Tags = map[string]any{"replicatefrom": "gone"} }).with(xmin("n3")), nil},
		{"primary: slot without xmin is kept", // spec ha-loop §10
			newWorld("n1", "n1").with(cascade).with(xmin()), nil},
		{"before PG11 nothing is dropped", // spec ha-loop §10
			newWorld("n1", "n1").with(cascade).with(xmin("n3")).with(func(o *Observation) { o.PG.ServerVersion = 100000 }), nil},
		{"replica of another leader: slots of members streaming from the leader are dropped", // spec ha-loop §10
			newWorld("n2", "n1").with(xmin("n1", "n3")), []string{"n1", "n3"}},
		{"replica: slot of a member cascading from me is kept", // spec ha-loop §10
			newWorld("n2", "n1").with(cascade).with(xmin("n3")), nil},
		{"no leader: nothing is dropped", // spec ha-loop §10
			newWorld("n2", "").with(xmin("n1", "n3")), nil},
		{"leader is me but not running as primary: nothing is dropped", // spec ha-loop §10
			newWorld("n1", "n1").with(cascade).with(xmin("n3")).with(func(o *Observation) { o.PG.Primary = false }), nil},
		{"retained slot of a vanished member with xmin is dropped", // spec ha-loop §10
			newWorld("n1", "n1").with(func(o *Observation) { o.RetainSlots, o.PG.Slots = []string{"n4"}, append(o.PG.Slots, "n4") }).with(xmin("n4")), []string{"n4"}},
		{"permanent slot with xmin is kept", // spec ha-loop §10
			newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster.Config.Data["slots"] = map[string]any{"ext": nil}
				o.PG.Slots = append(o.PG.Slots, "ext")
			}).with(xmin("ext")), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newCycle(&tc.w.o)
			require.Equal(t, tc.want, x.xminDrops(x.desiredSlots()))
		})
	}

	// spec ha-loop §10: the primary leaves the slot out of SyncSlots, which
	// drops it; the next cycle creates it again (without xmin).
	d := Decide(newWorld("n1", "n1").with(cascade).with(xmin("n3")).o)
	require.Equal(t, []Action{UpdateLeader{}, SyncSlots{Names: "n2"}}, d.Actions)
	d = Decide(newWorld("n1", "n1").with(cascade).with(xmin()).with(func(o *Observation) { o.PG.Slots = []string{"n2"} }).o)
	require.Equal(t, []Action{UpdateLeader{}, SyncSlots{Names: "n2,n3"}}, d.Actions)
	// spec ha-loop §10: an expected-active slot with xmin stays.
	d = Decide(newWorld("n1", "n1").with(xmin("n2", "n3")).o)
	require.Equal(t, []Action{UpdateLeader{}}, d.Actions)
}

// TestFailsafeSlots checks §11: the primary kept running by failsafe moves
// the member slots of the replicas that answered POST /failsafe to the
// positions they returned, never past them nor past its own position.
func TestFailsafeSlots(t *testing.T) {
	fs := func(f func(o *Observation)) Observation {
		return newWorld("n1", "n1").with(func(o *Observation) {
			o.Cluster, o.DCSError = nil, true
			o.Config.FailsafeMode = true
			o.LastCluster.Failsafe = dcs.Failsafe{"n1": "http://n1", "n2": "http://n2", "n3": "http://n3"}
			o.FailsafeOK = new(true)
			o.FailsafeLSNs = map[string]dcs.LSN{"n2": 0x2800000, "n3": 0x3100000}
			o.PG.SlotLSNs = map[string]dcs.LSN{"n2": 0x1000000, "n3": 0x1000000}
		}).with(f).o
	}
	// spec ha-loop §11: both slots move, n3 no further than the primary's own position.
	o := fs(func(o *Observation) {})
	d := Decide(o)
	require.Equal(t, "continue to run as a leader because failsafe mode is enabled and all members are accessible", d.Message)
	require.Equal(t, []Action{AdvanceSlots{Physical: "n2,n3", Failsafe: true}}, d.Actions)
	require.Equal(t, map[string]dcs.LSN{"n2": 0x2800000, "n3": 0x3000000}, FailsafeSlotTargets(o.FailsafeLSNs, o.PG))
	// spec ha-loop §11: a slot already at or past the returned position stays.
	o = fs(func(o *Observation) { o.PG.SlotLSNs["n2"] = 0x2800000 })
	require.Equal(t, []Action{AdvanceSlots{Physical: "n3", Failsafe: true}}, Decide(o).Actions)
	require.Equal(t, map[string]dcs.LSN{"n3": 0x3000000}, FailsafeSlotTargets(o.FailsafeLSNs, o.PG))
	// spec ha-loop §11 with §10 step 4: a slot with xmin is not advanced.
	o = fs(func(o *Observation) { o.PG.SlotsWithXmin = []string{"n3"} })
	require.Equal(t, map[string]dcs.LSN{"n2": 0x2800000}, FailsafeSlotTargets(o.FailsafeLSNs, o.PG))
	// spec ha-loop §11: no answers with a position, nothing to move.
	require.Empty(t, Decide(fs(func(o *Observation) { o.FailsafeLSNs = nil })).Actions)
	// spec ha-loop §11: failsafe failed: demote, no slot work.
	require.Equal(t, []Action{Demote{Mode: DemoteOffline}}, Decide(fs(func(o *Observation) { o.FailsafeOK = new(false) })).Actions)
}

// TestFailsafeReplicaSlots checks the replica side of §11: the slot
// positions in the primary's POST /failsafe heartbeat stand in for
// /status.slots while the heartbeat is fresh, both when the cluster is
// readable but unlocked (the primary alone lost the DCS) and when this
// replica cannot read the DCS either (the last cluster it read says which
// slots it keeps). Patroni: Failsafe.update_cluster and
// _sync_replication_slots(dcs_failed=True).
func TestFailsafeReplicaSlots(t *testing.T) {
	heartbeat := map[string]dcs.LSN{"n1": 0x3000000, "n3": 0x2800000, "cdc": 0x3100000, "ext": 0x2000000}
	base := func(f func(o *Observation)) Observation {
		return newWorld("n2", "n1").with(func(o *Observation) {
			o.Cluster.Config.Data["failsafe_mode"] = true
			o.Cluster.Config.Data["slots"] = map[string]any{
				"cdc": map[string]any{"type": "logical", "database": "app", "plugin": "pgoutput"},
				"ext": map[string]any{"type": "physical"},
			}
			// The DCS still holds what the primary published before it lost it.
			o.Cluster.Status.Slots = map[string]dcs.LSN{"n1": 0x1800000, "cdc": 0x1800000, "ext": 0x1800000}
			o.LastConfig = o.Cluster.Config
			o.PG.Slots = []string{"ext", "n1", "n3"}
			o.PG.LogicalSlots = []string{"cdc"}
			o.PG.ReplayLSN = 0x2F00000
			o.PG.SlotLSNs = map[string]dcs.LSN{"n1": 0x1000000, "n3": 0x2800000, "cdc": 0x1000000, "ext": 0x1000000}
			o.FailsafeLeader = &FailsafeLeader{Name: "n1", ConnURL: "postgres://n1", APIURL: "http://n1", Slots: heartbeat, Until: t0.Add(time.Second)}
		}).with(f).o
	}
	unlockedDCS := func(o *Observation) {
		c := *o.Cluster
		c.Leader = nil // the primary could not renew: the key expired
		o.Cluster = &c
		o.UnlockedSince = t0
	}
	dcsDown := func(o *Observation) { o.Cluster, o.DCSError = nil, true }
	want := AdvanceSlots{Physical: "ext,n1", Logical: "cdc"}
	// The heartbeat's positions, no further than this node replayed; n3
	// is already there.
	wantTargets := map[string]dcs.LSN{"n1": 0x2F00000, "cdc": 0x2F00000, "ext": 0x2000000}

	tests := []struct {
		name    string
		o       Observation
		msg     string
		actions []Action
		targets map[string]dcs.LSN
	}{
		{
			name: "cluster unlocked: heartbeat slots replace /status.slots", // spec ha-loop §11
			o:    base(unlockedDCS),
			msg:  "no action. I am (n2), a secondary, and following a leader (n1)", actions: []Action{want}, targets: wantTargets,
		},
		{
			name: "DCS unreachable: replica keeps syncing slots", // spec ha-loop §11
			o:    base(dcsDown),
			msg:  "DCS is not accessible", actions: []Action{want}, targets: wantTargets,
		},
		{
			name: "DCS unreachable: heartbeat older than ttl", // spec ha-loop §11
			o:    base(func(o *Observation) { dcsDown(o); o.FailsafeLeader.Until = t0 }),
			msg:  "DCS is not accessible",
		},
		{
			name: "DCS unreachable: failsafe_mode off", // spec ha-loop §11
			o: base(func(o *Observation) {
				dcsDown(o)
				o.LastConfig = &dcs.ClusterConfig{Data: map[string]any{"slots": o.LastConfig.Data["slots"]}, Version: "2"}
			}),
			msg: "DCS is not accessible",
		},
		{
			name: "DCS unreachable: paused", // spec ha-loop §11, §13
			o: base(func(o *Observation) {
				dcsDown(o)
				o.LastConfig = &dcs.ClusterConfig{Data: map[string]any{"failsafe_mode": true, "pause": true}, Version: "2"}
			}),
			msg: "PAUSE: DCS is not accessible",
		},
		{
			name: "DCS unreachable: heartbeat without slots (older primary)", // spec ha-loop §11
			o:    base(func(o *Observation) { dcsDown(o); o.FailsafeLeader.Slots = nil }),
			msg:  "DCS is not accessible",
		},
		{
			name: "DCS unreachable: never read a locked cluster", // spec ha-loop §11
			o:    base(func(o *Observation) { dcsDown(o); o.LastCluster = nil }),
			msg:  "DCS is not accessible",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.o)
			require.Equal(t, tc.msg, d.Message)
			require.Equal(t, tc.actions, d.Actions)
			var targets map[string]dcs.LSN
			if len(d.Actions) > 0 {
				targets = AdvanceTargets(tc.o, d.Actions[0].(AdvanceSlots))
			}
			require.Equal(t, tc.targets, targets)
		})
	}

	// Patroni copies no logical slot while failsafe is active: the
	// missing copy waits, the others still advance.
	d := Decide(base(func(o *Observation) { unlockedDCS(o); o.PG.LogicalSlots = nil }))
	require.Equal(t, []Action{AdvanceSlots{Physical: "ext,n1"}}, d.Actions)

	// With the leader key held, /status.slots is the source as before.
	o := base(func(o *Observation) {})
	require.Equal(t, []Action{AdvanceSlots{Physical: "ext,n1", Logical: "cdc"}}, Decide(o).Actions)
	require.Equal(t, map[string]dcs.LSN{"n1": 0x1800000, "cdc": 0x1800000, "ext": 0x1800000}, AdvanceTargets(o, AdvanceSlots{Physical: "ext,n1", Logical: "cdc"}))
}
