package ha

import (
	"cmp"
	"slices"
	"strings"

	"github.com/pgwarden/pgwarden/dcs"
)

// syncCandidates is §7 "Candidate selection": streaming replicas that are
// running members allowed to be synchronous, best first.
func (x *cycle) syncCandidates() []ReplicaStat {
	var out []ReplicaStat
	for _, r := range x.pg.Replicas {
		if !r.Streaming || strings.EqualFold(r.Name, x.me) {
			continue
		}
		m := x.c.Member(r.Name)
		if m == nil || !m.IsRunning() || m.NoSync() || m.SyncPriority() <= 0 {
			continue
		}
		if rf := m.ReplicateFrom(); rf != "" && rf != x.me {
			continue // cascades from another member
		}
		out = append(out, r)
	}
	rank := map[string]int{"sync": 0, "quorum": 1, "potential": 2}
	slices.SortFunc(out, func(a, b ReplicaStat) int {
		ma, mb := x.c.Member(a.Name), x.c.Member(b.Name)
		if c := cmp.Compare(b2i(ma.NoFailover()), b2i(mb.NoFailover())); c != 0 {
			return c
		}
		if c := cmp.Compare(mb.SyncPriority(), ma.SyncPriority()); c != 0 {
			return c
		}
		ra, ok := rank[a.SyncState]
		if !ok {
			ra = 3
		}
		rb, ok := rank[b.SyncState]
		if !ok {
			rb = 3
		}
		if c := cmp.Compare(ra, rb); c != 0 {
			return c
		}
		if c := cmp.Compare(b.LSN, a.LSN); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// confirmed returns the names listed in synchronous_standby_names that
// Postgres currently reports as synchronous (state) and that reached the
// primary's flush position of the last ssn change (priority mode: or are
// already in /sync).
func (x *cycle) confirmed(state string) []string {
	var out []string
	for _, r := range x.pg.Replicas {
		ready := r.LSN >= x.pg.SyncChangedLSN || (state == "sync" && x.c.Sync.Matches(r.Name))
		if ready && r.Streaming && r.SyncState == state && containsFold(x.pg.SyncStandbyNames, r.Name) {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(e string) bool { return strings.EqualFold(e, s) })
}

func sortedSet(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if containsFold(b, s) {
			out = append(out, s)
		}
	}
	return sortedSet(out)
}

func sameSet(a, b []string) bool { return slices.Equal(sortedSet(a), sortedSet(b)) }

func join(names []string) string { return strings.Join(sortedSet(names), ",") }

func (x *cycle) setSync(standbys []string, quorum int) SetSync {
	var prev dcs.Version
	if x.c.Sync != nil {
		prev = x.c.Sync.Version
	}
	return SetSync{Leader: x.me, Standbys: join(standbys), Quorum: quorum, Prev: prev}
}

func (x *cycle) ssnIs(names []string, num int, placeholder bool) bool {
	if placeholder {
		return x.pg.SyncPlaceholder
	}
	if x.pg.SyncPlaceholder {
		return false
	}
	if len(names) == 0 {
		return len(x.pg.SyncStandbyNames) == 0
	}
	return sameSet(x.pg.SyncStandbyNames, names) && x.pg.SyncNum == num
}

// manageSync is §7.1 (priority) and §7.5 (quorum), run each cycle by the
// primary that holds the lock. It never emits more than one /sync write,
// because every write needs the version the previous one returned.
func (x *cycle) manageSync() []Action {
	if x.s.SyncMode == SyncOff {
		var acts []Action
		if x.c.Sync != nil {
			acts = append(acts, DeleteSync{Prev: x.c.Sync.Version})
		}
		if len(x.pg.SyncStandbyNames) > 0 || x.pg.SyncPlaceholder {
			acts = append(acts, SetSyncStandbyNames{})
		}
		return acts
	}
	cur := x.c.Sync
	if cur.IsEmpty() {
		// §7.1 step 1 ("Enabled synchronous replication").
		return []Action{x.setSync(nil, 0)}
	}
	if !strings.EqualFold(cur.Leader, x.me) {
		if x.s.SyncMode == SyncQuorum {
			// §7.5 leader change: voters := old voters − me + old leader.
			v := slices.DeleteFunc(slices.Clone(cur.Standbys), func(e string) bool { return strings.EqualFold(e, x.me) })
			v = append(v, cur.Leader)
			return []Action{x.setSync(v, cur.Quorum)}
		}
		// §7.1 step 2.
		return []Action{x.setSync(nil, 0)}
	}
	if x.s.SyncMode == SyncQuorum {
		return x.manageQuorum()
	}
	var picked []string
	for _, r := range x.syncCandidates() {
		if len(picked) == x.s.SyncNodeCount {
			break
		}
		picked = append(picked, r.Name)
	}
	picked = sortedSet(picked)
	confirmed := x.confirmed("sync")
	syncSet := sortedSet(cur.Standbys)
	if x.s.SyncStrict && len(picked) == 0 {
		// §7.1 strict: keep the last /sync standbys (or the placeholder)
		// in ssn so that commits wait.
		if len(syncSet) == 0 {
			if !x.ssnIs(nil, 0, true) {
				return []Action{SetSyncStandbyNames{Placeholder: true, Num: 1}}
			}
			return nil
		}
		if !x.ssnIs(syncSet, len(syncSet), false) {
			return []Action{SetSyncStandbyNames{Names: join(syncSet), Num: len(syncSet)}}
		}
		return nil
	}
	var acts []Action
	// Shrink first: a name leaves /sync before it leaves ssn, and a
	// name stays in /sync only while it is picked and confirmed.
	keep := intersect(intersect(syncSet, confirmed), picked)
	shrunk := !slices.Equal(keep, syncSet)
	if shrunk {
		acts = append(acts, x.setSync(keep, 0))
	}
	if !x.ssnIs(picked, len(picked), false) {
		acts = append(acts, SetSyncStandbyNames{Names: join(picked), Num: len(picked)})
		return acts
	}
	// Grow last, only names ssn already lists and Postgres confirms.
	grown := intersect(confirmed, picked)
	if !shrunk && len(grown) > 0 && !slices.Equal(grown, syncSet) {
		acts = append(acts, x.setSync(grown, 0))
	}
	return acts
}

// quorumSafe is the §7.5 invariant: with V = voters ∪ {leader} and S = ssn
// ∪ {me}, |V ∪ S| <= quorum + numsync + 1 when voters is non-empty, and one
// of V, S contains the other.
func quorumSafe(voters []string, quorum int, ssn []string, num int) bool {
	if len(voters) == 0 {
		return true
	}
	u := sortedSet(append(slices.Clone(voters), ssn...))
	if len(u) > quorum+num {
		return false
	}
	vs := len(intersect(voters, ssn))
	return vs == len(sortedSet(voters)) || vs == len(sortedSet(ssn))
}

// manageQuorum moves /sync and ssn one safe step per cycle towards
// voters = ssn = picked, numsync = min(count, |picked|), quorum = |picked| −
// numsync (§7.5). Every intermediate state keeps quorumSafe.
func (x *cycle) manageQuorum() []Action {
	var picked []string
	for _, r := range x.syncCandidates() {
		picked = append(picked, r.Name)
	}
	picked = sortedSet(picked)
	cur := x.c.Sync
	V, q := sortedSet(cur.Standbys), cur.Quorum
	S, n := sortedSet(x.pg.SyncStandbyNames), x.pg.SyncNum
	if x.pg.SyncPlaceholder {
		S, n = nil, 0
	}
	confirmed := x.confirmed("quorum")
	if x.s.SyncStrict && len(picked) == 0 {
		if len(S) == 0 && len(V) == 0 {
			if !x.pg.SyncPlaceholder {
				return []Action{SetSyncStandbyNames{Placeholder: true, Quorum: true, Num: 1}}
			}
			return nil
		}
		return nil // keep what we have: commits wait
	}
	N := min(x.s.SyncNodeCount, len(picked))
	ssn := func(names []string, num int) Action {
		if len(names) == 0 {
			return SetSyncStandbyNames{}
		}
		return SetSyncStandbyNames{Names: join(names), Num: num, Quorum: true}
	}
	type step struct {
		V []string
		q int
		S []string
		n int
	}
	try := func(st step) []Action {
		if st.q < 0 || st.n < 0 || (len(st.S) > 0 && st.n < 1) || st.n > len(st.S) || st.q > len(st.V) {
			return nil
		}
		if !quorumSafe(st.V, st.q, st.S, st.n) {
			return nil
		}
		// Lowering the quorum trusts fewer voters: only once every
		// remaining voter has caught up with the last ssn change, or a
		// write acknowledged by a removed node alone could be lost.
		if st.q < q && !slices.Equal(intersect(confirmed, st.V), sortedSet(st.V)) {
			return nil
		}
		if !slices.Equal(sortedSet(st.V), V) || st.q != q {
			return []Action{x.setSync(st.V, st.q)}
		}
		if !slices.Equal(sortedSet(st.S), S) || st.n != n {
			return []Action{ssn(st.S, st.n)}
		}
		return nil
	}
	// Removals.
	for _, r := range append(slices.Clone(S), V...) {
		if containsFold(picked, r) {
			continue
		}
		without := func(l []string) []string {
			return slices.DeleteFunc(slices.Clone(l), func(e string) bool { return strings.EqualFold(e, r) })
		}
		if containsFold(S, r) {
			nS := without(S)
			nn := min(n, len(nS))
			if len(nS) == 0 {
				if containsFold(V, r) {
					if nv := without(V); !slices.Equal(intersect(confirmed, nv), sortedSet(nv)) {
						// wait for the remaining voters to catch up
					} else if a := try(step{nv, max(0, len(nv)-1), S, n}); a != nil {
						return a
					}
				}
				if a := try(step{V, q, nil, 0}); a != nil {
					return a
				}
				continue
			}
			if a := try(step{V, q, nS, nn}); a != nil {
				return a
			}
			if nn < n {
				if a := try(step{V, q + (n - nn), S, n}); a != nil {
					return a
				}
			}
			continue
		}
		// Lowering the quorum trusts fewer voters: only once every
		// remaining voter has caught up with the last ssn change, or a
		// write acknowledged by the removed node alone could be lost.
		if nv := without(V); slices.Equal(intersect(confirmed, nv), sortedSet(nv)) {
			if a := try(step{nv, max(0, q-1), S, n}); a != nil {
				return a
			}
		}
		if a := try(step{without(V), q, S, n}); a != nil {
			return a
		}
	}
	// Additions.
	for _, p := range picked {
		inS, inV := containsFold(S, p), containsFold(V, p)
		switch {
		case len(S) == 0:
			return try(step{V, q, []string{p}, 1})
		case !inV && len(V) == 0:
			if c := intersect(confirmed, S); len(c) > 0 {
				if a := try(step{c, max(0, len(c)-n), S, n}); a != nil {
					return a
				}
			}
		case !inV:
			if a := try(step{append(slices.Clone(V), p), q + 1, S, n}); a != nil {
				return a
			}
		case !inS:
			if a := try(step{V, q, append(slices.Clone(S), p), n}); a != nil {
				return a
			}
		}
	}
	// numsync.
	if N >= 1 && n != N && len(S) > 0 {
		if N > n {
			if a := try(step{V, q, S, N}); a != nil {
				return a
			}
		} else if a := try(step{V, q + (n - N), S, n}); a != nil {
			return a
		} else if a := try(step{V, q, S, N}); a != nil {
			return a
		}
	}
	if len(V) > 0 {
		if want := max(0, len(V)-n); want != q {
			if a := try(step{V, want, S, n}); a != nil {
				return a
			}
		}
	}
	return nil
}

// prePromoteSync is §7.2; ok=false means the promotion must be postponed.
func (x *cycle) prePromoteSync() ([]Action, bool) {
	switch x.s.SyncMode {
	case SyncOff:
		var acts []Action
		if x.c.Sync != nil {
			acts = append(acts, DeleteSync{Prev: x.c.Sync.Version})
		}
		if len(x.pg.SyncStandbyNames) > 0 || x.pg.SyncPlaceholder {
			acts = append(acts, SetSyncStandbyNames{})
		}
		return acts, true
	case SyncOn:
		var set []string
		if x.s.SyncStrict && x.c.Sync != nil {
			for _, n := range append([]string{x.c.Sync.Leader}, x.c.Sync.Standbys...) {
				if n != "" && !strings.EqualFold(n, x.me) {
					set = append(set, n)
				}
			}
		}
		set = sortedSet(set)
		acts := []Action{x.setSync(set, 0)}
		switch {
		case len(set) > 0:
			acts = append(acts, SetSyncStandbyNames{Names: join(set), Num: len(set)})
		case x.s.SyncStrict:
			acts = append(acts, SetSyncStandbyNames{Placeholder: true, Num: 1})
		default:
			acts = append(acts, SetSyncStandbyNames{})
		}
		return acts, true
	}
	// Quorum: ssn = ANY numsync (old voters + old leader − me).
	var set []string
	numsync := 1
	if x.c.Sync != nil {
		all := sortedSet(append([]string{x.c.Sync.Leader}, x.c.Sync.Standbys...))
		numsync = len(all) - x.c.Sync.Quorum - 1
		if containsFold(all, x.me) {
			all = slices.DeleteFunc(all, func(e string) bool { return strings.EqualFold(e, x.me) })
		} else {
			numsync++
		}
		set = slices.DeleteFunc(all, func(e string) bool { return e == "" })
	}
	numsync = max(numsync, 1)
	if len(set) == 0 {
		if x.s.SyncStrict {
			return []Action{SetSyncStandbyNames{Placeholder: true, Quorum: true, Num: 1}}, true
		}
		return []Action{SetSyncStandbyNames{}}, true
	}
	return []Action{SetSyncStandbyNames{Names: join(set), Num: min(numsync, len(set)), Quorum: true}}, true
}
