package ha

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/pgwarden/pgwarden/dcs"
)

// SlotName is the replication slot name of a member (spec/ha-loop.md §10):
// lower case, '-' and '.' become '_', any other character outside
// [a-z0-9_] becomes 'u' and its 4-digit decimal code point, truncated to 63
// bytes.
func SlotName(member string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(member) {
		switch {
		case r == '-' || r == '.':
			b.WriteByte('_')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "u%04d", r)
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

var permanentSlotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// desiredSlots is the physical slot set of §10 for PG11+ with
// member_slots_ttl > 0: a slot for every other member that streams (no
// nostream tag), on the primary and on replicas alike, so that any
// promoted node already keeps WAL for everybody; the slots of members
// whose key vanished less than member_slots_ttl ago (the leader's own
// memory, /status.retain_slots on replicas); plus the physical permanent
// slots of the configuration (not on nofailover nodes, never one named
// like this node).
func (x *cycle) desiredSlots() []string {
	var out []string
	me := SlotName(x.me)
	for _, m := range x.c.Members {
		if m.Name == x.me || m.NoStream() {
			continue
		}
		out = append(out, SlotName(m.Name))
	}
	retain := x.c.Status.RetainSlots
	if x.hasLock() {
		retain = x.o.RetainSlots
	}
	if x.s.memberSlotsTTL() > 0 && !x.noFailover() {
		for _, n := range retain {
			if n != me {
				out = append(out, n)
			}
		}
	}
	for name, v := range x.permanentSlots() {
		if name != me && v.Type == "physical" {
			out = append(out, name)
		}
	}
	return sortedSet(out)
}

// expectedActive reports whether the member streams from this node (§10):
// on the primary or standby leader every member without replicatefrom, or
// whose replicatefrom is this node or no known member; on a replica only
// members whose replicatefrom is this node.
func (x *cycle) expectedActive(m *dcs.Member) bool {
	rf := m.ReplicateFrom()
	if rf == x.me {
		return true
	}
	leading := x.pg.Primary || (x.s.StandbyCluster != nil && x.hasLock())
	return leading && (rf == "" || x.c.Member(rf) == nil)
}

// xminDrops is §10 step 4: on PG11+ the existing physical slots of want
// that belong to members (or retained members) not expected to stream
// from this node but that carry an xmin, which would hold vacuum back
// forever since no feedback moves it. Only when the cluster has a leader
// and that leader is another node or this node runs as primary. Permanent
// slots are never dropped by this rule.
func (x *cycle) xminDrops(want []string) []string {
	if x.pg.ServerVersion < 110000 || len(x.pg.SlotsWithXmin) == 0 {
		return nil
	}
	if l := x.leaderName(); l == "" || (l == x.me && !x.pg.Primary) {
		return nil
	}
	active := map[string]bool{}
	members := map[string]bool{}
	for _, m := range x.c.Members {
		if m.Name == x.me {
			continue
		}
		members[SlotName(m.Name)] = true
		if !m.NoStream() && x.expectedActive(m) {
			active[SlotName(m.Name)] = true
		}
	}
	retain := x.c.Status.RetainSlots
	if x.hasLock() {
		retain = x.o.RetainSlots
	}
	for _, n := range retain {
		members[n] = true
	}
	var out []string
	for _, n := range want {
		if members[n] && !active[n] && containsFold(x.pg.SlotsWithXmin, n) && containsFold(x.pg.Slots, n) {
			out = append(out, n)
		}
	}
	return out
}

// LogicalSlot is a permanent logical replication slot of the
// configuration.
type LogicalSlot struct {
	Name, Database, Plugin string
}

// permanentSlot is one valid entry of the "slots" configuration.
type permanentSlot struct {
	Type     string
	Database string
	Plugin   string
}

// permanentSlots reads the valid permanent slots of the configuration
// (§10): names matching ^[a-z0-9_]{1,63}$, physical by default, logical
// with database and plugin; none on nofailover nodes. A logical slot named
// like a member slot is rejected.
func (x *cycle) permanentSlots() map[string]permanentSlot {
	if !x.c.Config.Valid() || x.noFailover() {
		return nil
	}
	slots, ok := x.c.Config.Data["slots"].(map[string]any)
	if !ok || len(slots) == 0 {
		return nil
	}
	members := map[string]bool{}
	for _, m := range x.c.Members {
		members[SlotName(m.Name)] = true
	}
	out := map[string]permanentSlot{}
	for name, v := range slots {
		if !permanentSlotName.MatchString(name) {
			continue
		}
		ps := permanentSlot{Type: "physical"}
		if def, ok := v.(map[string]any); ok {
			if t, _ := def["type"].(string); t != "" {
				ps.Type = t
			}
			ps.Database, _ = def["database"].(string)
			ps.Plugin, _ = def["plugin"].(string)
		}
		switch ps.Type {
		case "physical":
		case "logical":
			if ps.Database == "" || ps.Plugin == "" || members[name] || x.s.StandbyCluster != nil || x.self().NoStream() {
				continue
			}
		default:
			continue
		}
		out[name] = ps
	}
	return out
}

// logicalSlots returns the desired permanent logical slots, sorted.
func (x *cycle) logicalSlots() []LogicalSlot {
	var out []LogicalSlot
	for name, v := range x.permanentSlots() {
		if v.Type == "logical" {
			out = append(out, LogicalSlot{Name: name, Database: v.Database, Plugin: v.Plugin})
		}
	}
	slices.SortFunc(out, func(a, b LogicalSlot) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func joinLogical(ls []LogicalSlot) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + ":" + l.Database + ":" + l.Plugin
	}
	return strings.Join(parts, ",")
}

// ParseLogicalSlots reads SyncSlots.Logical back.
func ParseLogicalSlots(s string) []LogicalSlot {
	if s == "" {
		return nil
	}
	var out []LogicalSlot
	for _, p := range strings.Split(s, ",") {
		f := strings.SplitN(p, ":", 3)
		if len(f) == 3 {
			out = append(out, LogicalSlot{Name: f[0], Database: f[1], Plugin: f[2]})
		}
	}
	return out
}

// addSlots is §2 step 13 and §10: synchronise the slots when nothing else
// changes Postgres this cycle. The primary creates permanent logical
// slots; a replica keeps the copies it has and copies the missing ones
// that the leader publishes in /status.slots from the primary, in the
// background ("Copying logical slots [...] from the primary").
func (x *cycle) addSlots(d *Decision) {
	if !x.pg.Running || x.pg.Starting || x.o.Op.Running {
		return
	}
	if x.o.DCSError || x.o.Cluster == nil {
		if a, ok := x.failsafeAdvance(); ok {
			d.Actions = append(d.Actions, a)
		}
		return
	}
	if _, busy := pgChanging(*d); busy {
		return
	}
	for _, a := range d.Actions {
		if _, ok := a.(LeaveSync); ok {
			return
		}
	}
	want := x.desiredSlots()
	if x.s.Paused {
		// In pause slots are only added, never dropped.
		want = sortedSet(append(want, x.pg.Slots...))
	}
	// §10 step 4: a member slot nobody streams from through us but with
	// xmin set is left out, so SyncSlots drops it; the next cycle creates
	// it again without xmin.
	drops := x.xminDrops(want)
	want = slices.DeleteFunc(want, func(n string) bool { return slices.Contains(drops, n) })
	logical := x.logicalSlots()
	var keep, missing []LogicalSlot
	for _, l := range logical {
		if x.pg.Primary || containsFold(x.pg.LogicalSlots, l.Name) {
			keep = append(keep, l)
		} else if _, ok := x.c.Status.Slots[l.Name]; ok {
			missing = append(missing, l)
		}
	}
	if x.s.Paused {
		for _, n := range x.pg.LogicalSlots {
			if !slices.ContainsFunc(keep, func(l LogicalSlot) bool { return l.Name == n }) {
				keep = append(keep, LogicalSlot{Name: n})
			}
		}
	}
	keepNames := make([]string, len(keep))
	for i, l := range keep {
		keepNames[i] = l.Name
	}
	if !slices.Equal(want, sortedSet(x.pg.Slots)) || !slices.Equal(sortedSet(keepNames), sortedSet(x.pg.LogicalSlots)) {
		d.Actions = append(d.Actions, SyncSlots{Names: strings.Join(want, ","), Logical: joinLogical(keep)})
	}
	leader := x.leaderName()
	if x.failsafeLeader() != nil {
		// §11: nothing is copied while the failsafe heartbeat stands in
		// for the DCS (Patroni: not while failsafe is active).
		missing = nil
	}
	if a, ok := x.advance(want, keepNames); ok && len(missing) == 0 {
		d.Actions = append(d.Actions, a)
	}
	if len(missing) > 0 && !x.pg.Primary && leader != "" && leader != x.me {
		names := make([]string, len(missing))
		for i, l := range missing {
			names[i] = l.Name
		}
		d.Actions = append(d.Actions, CopyLogicalSlots{From: leader, Names: strings.Join(names, ",")})
		d.Message = msg("Copying logical slots %v from the primary", names)
	}
}

// advance is §10 steps 4 and 6 on a replica: move existing physical slots
// and logical copies to the leader's positions in /status.slots (no
// further than this node replayed), so they never hold WAL back
// for longer than the leader's do. The action names the slots; Node
// computes the same targets with SlotTargets (the positions change every
// cycle, the decision should not).
func (x *cycle) advance(physical, logical []string) (AdvanceSlots, bool) {
	if x.pg.Primary || len(x.c.Status.Slots) == 0 || x.leaderName() == "" || x.leaderName() == x.me {
		return AdvanceSlots{}, false
	}
	t := SlotTargets(x.c.Status.Slots, *x.pg, physical, logical)
	if len(t) == 0 {
		return AdvanceSlots{}, false
	}
	names := slices.Sorted(maps.Keys(t))
	return AdvanceSlots{Physical: strings.Join(intersect(names, physical), ","), Logical: strings.Join(intersect(names, logical), ",")}, true
}

// failsafeAdvance is §11 on a replica cut off from the DCS: while the
// primary's failsafe heartbeat is fresh, the slots this node keeps (as the
// last cluster it read says) move to the positions the heartbeat carried,
// as they would to /status.slots. Nothing is created, dropped or copied
// from a cluster view that can no longer be refreshed. Not in pause.
func (x *cycle) failsafeAdvance() (AdvanceSlots, bool) {
	fl := x.failsafeLeader()
	if fl == nil || x.pg.Primary || x.s.Paused || x.o.LastCluster == nil {
		return AdvanceSlots{}, false
	}
	y := *x
	y.c = withFailsafeLeader(x.o.LastCluster, fl)
	var logical []string
	for _, l := range y.logicalSlots() {
		if containsFold(x.pg.LogicalSlots, l.Name) {
			logical = append(logical, l.Name)
		}
	}
	return y.advance(y.desiredSlots(), logical)
}

// AdvanceTargets returns the positions Node moves slots to for a, from
// the same observation Decide saw: the member positions the replicas
// answered for a failsafe primary (FailsafeSlotTargets), otherwise the
// leader's /status.slots, or the failsafe heartbeat's slots where that
// stands in for the DCS (SlotTargets).
func AdvanceTargets(o Observation, a AdvanceSlots) map[string]dcs.LSN {
	if a.Failsafe {
		return FailsafeSlotTargets(o.FailsafeLSNs, o.PG)
	}
	x := newCycle(&o)
	c := x.c
	if o.DCSError || o.Cluster == nil {
		fl := x.failsafeLeader()
		if fl == nil || o.LastCluster == nil {
			return nil
		}
		c = withFailsafeLeader(o.LastCluster, fl)
	}
	return SlotTargets(c.Status.Slots, o.PG, splitNames(a.Physical), splitNames(a.Logical))
}

// FailsafeSlotTargets is §11: while the DCS is unreachable the failsafe
// primary moves the member slot of every replica that answered POST
// /failsafe to the WAL position the replica returned, so the slots neither
// hold WAL back nor run ahead of the replica. Only existing slots behind
// that position and without xmin (§10 step 4) are moved, never past this
// node's own position.
func FailsafeSlotTargets(lsns map[string]dcs.LSN, pg PGState) map[string]dcs.LSN {
	out := map[string]dcs.LSN{}
	for member, l := range lsns {
		n := SlotName(member)
		if pg.LSN != 0 {
			l = min(l, pg.LSN)
		}
		if l == 0 || !containsFold(pg.Slots, n) || containsFold(pg.SlotsWithXmin, n) || l <= pg.SlotLSNs[n] {
			continue
		}
		out[n] = l
	}
	return out
}

// SlotTargets returns the positions to advance this replica's existing
// slots to: the leader's /status.slots, but no further than this node
// replayed (Postgres clamps a standby's slots there). Slots already there
// are left out.
func SlotTargets(status map[string]dcs.LSN, pg PGState, physical, logical []string) map[string]dcs.LSN {
	replay := pg.ReplayLSN
	if replay == 0 {
		replay = pg.LSN
	}
	out := map[string]dcs.LSN{}
	for _, n := range physical {
		if t, ok := status[n]; ok && containsFold(pg.Slots, n) && min(t, replay) > pg.SlotLSNs[n] {
			out[n] = min(t, replay)
		}
	}
	for _, n := range logical {
		if t, ok := status[n]; ok && containsFold(pg.LogicalSlots, n) && min(t, replay) > pg.SlotLSNs[n] {
			out[n] = min(t, replay)
		}
	}
	return out
}
