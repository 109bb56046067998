package ha

import (
	"testing"

	"github.com/stretchr/testify/require"
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
