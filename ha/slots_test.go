package ha

import (
	"testing"

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
