package ha

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
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
// promoted node already keeps WAL for everybody; plus the physical
// permanent slots of the configuration (not on nofailover nodes, never one
// named like this node).
func (x *cycle) desiredSlots() []string {
	var out []string
	me := SlotName(x.me)
	for _, m := range x.c.Members {
		if m.Name == x.me || m.NoStream() {
			continue
		}
		out = append(out, SlotName(m.Name))
	}
	if x.c.Config.Valid() && !x.noFailover() {
		if slots, ok := x.c.Config.Data["slots"].(map[string]any); ok {
			for name, v := range slots {
				if !permanentSlotName.MatchString(name) || name == me {
					continue
				}
				if def, ok := v.(map[string]any); ok {
					if t, _ := def["type"].(string); t != "" && t != "physical" {
						continue // logical slots are managed by the postgres package
					}
				}
				out = append(out, name)
			}
		}
	}
	return sortedSet(out)
}

// slots is §2 step 13: synchronise the slots when nothing else changes
// Postgres this cycle.
func (x *cycle) slots(d Decision) []Action {
	if x.o.DCSError || x.o.Cluster == nil || !x.pg.Running || x.pg.Starting || x.o.Op.Running {
		return nil
	}
	for _, a := range d.Actions {
		switch a.(type) {
		case Promote, Demote, StopPostgres, StartPostgres, Rewind, Reinit, Clone, Bootstrap, CrashRecovery, Exit, ProbePeers, ProbeFailsafe, ReleaseLeader:
			return nil
		}
	}
	want := x.desiredSlots()
	if x.s.Paused {
		// In pause slots are only added, never dropped.
		want = sortedSet(append(want, x.pg.Slots...))
	}
	if slices.Equal(want, sortedSet(x.pg.Slots)) {
		return nil
	}
	return []Action{SyncSlots{Names: strings.Join(want, ",")}}
}
