package dcstest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// testInitialize checks the bootstrap race on "initialize"
// (spec/dcs-layout.md §2.1, §10.1): create-if-absent has exactly one
// winner, the winner overwrites the key with the sysid, and a failed
// bootstrap deletes it.
func (s *suite) testInitialize(t *testing.T) {
	const n = 5
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i+1)
	}
	_, st := s.cluster(t, names...)

	c := read(t, st["m1"])
	require.Nil(t, c.Initialize, "§2.1: a new cluster has no initialize key")

	// All members race at once; exactly one create-if-absent wins.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = st[name].Initialize(ctx(t), "", true) })
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		if err == nil {
			require.Empty(t, winner, "§2.1: %s and %s both won the initialize race", winner, names[i])
			winner = names[i]
			continue
		}
		require.ErrorIs(t, err, dcs.ErrConflict, "§2.1: the losers of the initialize race get ErrConflict (%s)", names[i])
	}
	require.NotEmpty(t, winner, "§2.1: nobody won the initialize race: %v", errs)

	c = read(t, st[winner])
	require.NotNil(t, c.Initialize, "§2.1: the race winner's key is visible")
	require.Empty(t, c.Initialize.SystemID, `§2.1: "" means bootstrapping`)
	require.False(t, c.Initialize.Valid())
	require.NotEmpty(t, c.Initialize.Version, "§1: every key has a version")

	// The winner overwrites the key with the real sysid.
	const sysid = "7277694203142172922"
	require.NoError(t, st[winner].Initialize(ctx(t), sysid, false))
	for _, name := range names {
		s.see(t, st[name], func(t require.TestingT, c *dcs.Cluster) {
			require.NotNil(t, c.Initialize)
			require.Equal(t, sysid, c.Initialize.SystemID, "§2.1: every member sees the sysid (%s)", name)
			require.True(t, c.Initialize.Valid())
		})
	}
	require.ErrorIs(t, st["m2"].Initialize(ctx(t), "", true), dcs.ErrConflict,
		"§2.1: create-if-absent fails on an initialized cluster")

	// A failed bootstrap deletes the key; the race can be run again.
	require.NoError(t, st[winner].CancelInitialize(ctx(t)))
	s.see(t, st["m3"], func(t require.TestingT, c *dcs.Cluster) {
		require.Nil(t, c.Initialize, "§2.1: CancelInitialize deletes the key")
	})
	require.NoError(t, st["m3"].Initialize(ctx(t), "", true), "§2.1: the race can be won again after a cancel")
	require.ErrorIs(t, st["m4"].Initialize(ctx(t), "", true), dcs.ErrConflict)
}

// testLeader checks acquire, renew and release of the leader key with
// their CAS semantics (spec/dcs-layout.md §2.3, §10.1, §10.3).
func (s *suite) testLeader(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "m3", "")
	m1, m2, m3, ctl := st["m1"], st["m2"], st["m3"], st[""]

	require.NoError(t, m1.TouchMember(ctx(t), member("m1", 100)))
	require.False(t, read(t, ctl).IsLocked(), "§2.3: a new cluster has no leader")

	require.NoError(t, m1.AcquireLeader(ctx(t)), "§2.3: acquire on a free key")
	require.ErrorIs(t, m2.AcquireLeader(ctx(t)), dcs.ErrConflict, "§10.1: acquire is create-if-absent")
	c := read(t, ctl)
	require.True(t, c.IsLocked())
	require.Equal(t, "m1", leaderName(c))
	require.NotEmpty(t, c.Leader.Version, "§1: every key has a version")
	require.NotNil(t, c.Leader.Member, "§2.3: the leader resolves to its member key")
	require.Equal(t, "http://127.0.0.1:8008/patroni", c.Leader.Member.APIURL)

	require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), "§2.3: the holder renews")
	require.ErrorIs(t, m2.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
		"store.go UpdateLeader: a non-holder cannot renew")
	require.NoError(t, m2.ReleaseLeader(ctx(t), nil), "store.go ReleaseLeader: nil when held by another")
	require.Equal(t, "m1", leaderName(read(t, ctl)), "§10.3: release deletes only our own key")

	require.NoError(t, m1.ReleaseLeader(ctx(t), nil))
	require.False(t, read(t, ctl).IsLocked(), "§2.3: release deletes the key")
	require.NoError(t, m1.ReleaseLeader(ctx(t), nil), "store.go ReleaseLeader: nil when already gone")
	require.ErrorIs(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
		"store.go UpdateLeader: a released key is lost")
	require.False(t, read(t, ctl).IsLocked(), "store.go UpdateLeader: never recreates the key")

	// Another member takes it; the former holder must not get it back.
	require.NoError(t, m2.AcquireLeader(ctx(t)))
	require.ErrorIs(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost)
	require.ErrorIs(t, m1.AcquireLeader(ctx(t)), dcs.ErrConflict)
	require.NoError(t, m1.ReleaseLeader(ctx(t), nil))
	c = read(t, ctl)
	require.Equal(t, "m2", leaderName(c), "§2.3: a former leader cannot take back or delete the key")
	require.NotNil(t, c.Leader.Member, "§2.3: a leader without member key resolves to an empty member")
	require.Equal(t, "m2", c.Leader.Member.Name)

	// TakeLeader is unconditional (end of bootstrap).
	require.NoError(t, m3.TakeLeader(ctx(t)), "§2.3: take_leader is an unconditional put")
	require.Equal(t, "m3", leaderName(read(t, ctl)))
	require.ErrorIs(t, m2.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost)
	require.NoError(t, m3.UpdateLeader(ctx(t), dcs.LeaderUpdate{}))

	// A store without a member cannot act for one.
	require.ErrorIs(t, ctl.AcquireLeader(ctx(t)), dcs.ErrNoMember)
	require.ErrorIs(t, ctl.TakeLeader(ctx(t)), dcs.ErrNoMember)
	require.ErrorIs(t, ctl.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrNoMember)
	require.ErrorIs(t, ctl.ReleaseLeader(ctx(t), nil), dcs.ErrNoMember)
	require.ErrorIs(t, ctl.TouchMember(ctx(t), member("m9", 1)), dcs.ErrNoMember)
	require.Equal(t, "m3", leaderName(read(t, ctl)))
}

// testFencedWrites checks that leader-only writes (SetSync, DeleteSync,
// SetHistory, UpdateLeader) are fenced on the leader key: rejected with
// ErrLeaderLost for non-leaders and for a leader whose key is gone
// (STYLE.md §2, spec/dcs-layout.md §2.8, store.go).
func (s *suite) testFencedWrites(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "")
	m1, m2, ctl := st["m1"], st["m2"], st[""]
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	sync1 := &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}
	v, err := m1.SetSync(ctx(t), sync1, "")
	require.NoError(t, err)
	require.NoError(t, m1.SetHistory(ctx(t), &dcs.TimelineHistory{}))

	fenced := []struct {
		name string
		call func(dcs.Store) error
	}{
		{"UpdateLeader", func(st dcs.Store) error {
			return st.UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 1}})
		}},
		{"SetSync", func(st dcs.Store) error {
			_, err := st.SetSync(ctx(t), &dcs.SyncState{Leader: "m2"}, "")
			return err
		}},
		{"SetSync with version", func(st dcs.Store) error {
			_, err := st.SetSync(ctx(t), &dcs.SyncState{Leader: "m2"}, v)
			return err
		}},
		{"DeleteSync", func(st dcs.Store) error { return st.DeleteSync(ctx(t), v) }},
		{"SetHistory", func(st dcs.Store) error {
			return st.SetHistory(ctx(t), &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 5, Reason: "x"}}})
		}},
	}
	check := func(t *testing.T, st dcs.Store, want ...error) {
		for _, f := range fenced {
			err := f.call(st)
			require.Error(t, err, "%s must be rejected", f.name)
			ok := false
			for _, w := range want {
				ok = ok || errorIs(err, w)
			}
			require.True(t, ok, "%s: got %v, want one of %v", f.name, err, want)
		}
		c := read(t, ctl)
		require.Equal(t, sync1.Standbys, c.Sync.Standbys, "a rejected write changes nothing")
		require.NotNil(t, c.History)
		require.Empty(t, c.History.Lines, "a rejected write changes nothing")
		require.Zero(t, c.Status.LastLSN, "a rejected write changes nothing")
	}
	t.Run("non-leader", func(t *testing.T) { check(t, m2, dcs.ErrLeaderLost) })
	t.Run("no member", func(t *testing.T) { check(t, ctl, dcs.ErrLeaderLost, dcs.ErrNoMember) })
	t.Run("released", func(t *testing.T) {
		require.NoError(t, m1.ReleaseLeader(ctx(t), nil))
		check(t, m1, dcs.ErrLeaderLost)
	})
	t.Run("taken by another", func(t *testing.T) {
		require.NoError(t, m2.AcquireLeader(ctx(t)))
		check(t, m1, dcs.ErrLeaderLost)
	})
}

// testExpiry checks that the leader and member keys are bound to their
// writer's lease: present while it is refreshed, present at ttl/2 after the
// last refresh, gone by ttl (+grace) after it, for every write path that
// binds a key (spec/dcs-layout.md §2.3, §2.4, §10.2; STYLE.md §2: "a TTL
// case per write path").
func (s *suite) testExpiry(t *testing.T) {
	ttl, grace := s.h.TTL, s.h.ExpiryGrace
	paths := []struct {
		name string
		bind func(t *testing.T, st dcs.Store)
		// gone reports whether the bound key has disappeared.
		gone func(c *dcs.Cluster) bool
	}{
		{"AcquireLeader", func(t *testing.T, st dcs.Store) { require.NoError(t, st.AcquireLeader(ctx(t))) },
			func(c *dcs.Cluster) bool { return !c.IsLocked() }},
		{"TakeLeader", func(t *testing.T, st dcs.Store) { require.NoError(t, st.TakeLeader(ctx(t))) },
			func(c *dcs.Cluster) bool { return !c.IsLocked() }},
		{"TouchMember", func(t *testing.T, st dcs.Store) { require.NoError(t, st.TouchMember(ctx(t), member("m1", 7))) },
			func(c *dcs.Cluster) bool { return c.Member("m1") == nil }},
	}
	for _, p := range paths {
		t.Run(p.name+" expires", func(t *testing.T) {
			s.parallel(t)
			_, st := s.cluster(t, "m1", "m2", "")
			start := s.now()
			p.bind(t, st["m1"])
			s.waitUntil(s.now().Add(ttl / 2))
			require.False(t, p.gone(read(t, st[""])), "§10.2: the key must live until ttl (checked at ttl/2)")
			s.waitUntil(start.Add(ttl + grace))
			s.see(t, st["m2"], func(t require.TestingT, c *dcs.Cluster) {
				require.True(t, p.gone(c), "§10.2: the key must be gone %s after the last refresh", ttl+grace)
			})
		})
	}

	t.Run("UpdateLeader renews", func(t *testing.T) {
		s.parallel(t)
		_, st := s.cluster(t, "m1", "m2", "")
		m1, m2 := st["m1"], st["m2"]
		require.NoError(t, m1.AcquireLeader(ctx(t)))
		var last time.Time
		for range 3 { // 1.5 ttl in total
			s.wait(ttl / 2)
			last = s.now()
			require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), "§2.3: renewal within ttl succeeds")
		}
		require.Equal(t, "m1", leaderName(read(t, st[""])), "§10.2: a renewed leader key outlives ttl")

		s.waitUntil(last.Add(ttl + grace))
		s.see(t, m2, func(t require.TestingT, c *dcs.Cluster) {
			require.False(t, c.IsLocked(), "§10.2: the leader key expires once renewals stop")
		})
		require.ErrorIs(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
			"store.go: a leader whose key expired has lost it")
		require.False(t, read(t, m2).IsLocked(), "store.go UpdateLeader: never recreates an expired key")
		require.NoError(t, m2.AcquireLeader(ctx(t)), "§2.3: an expired key can be acquired")
	})

	t.Run("TouchMember renews", func(t *testing.T) {
		s.parallel(t)
		_, st := s.cluster(t, "m1", "m2", "")
		var last time.Time
		for range 4 { // 1.5 ttl in total
			last = s.now()
			require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 7)), "§2.4: identical touches refresh the lease too")
			s.wait(ttl / 2)
		}
		require.NotNil(t, read(t, st[""]).Member("m1"), "§10.2: a touched member key outlives ttl")
		s.waitUntil(last.Add(ttl + grace))
		s.see(t, st["m2"], func(t require.TestingT, c *dcs.Cluster) {
			require.Nil(t, c.Member("m1"), "§10.2: the member key expires once touches stop")
		})
		require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 7)), "§2.4: the next touch re-creates the key")
		s.see(t, st["m2"], func(t require.TestingT, c *dcs.Cluster) {
			require.NotNil(t, c.Member("m1"), "§2.4: the re-created key is visible")
		})
	})

	t.Run("restarted member keeps its keys", func(t *testing.T) {
		// A daemon restarted within ttl opens a new client (new lease or
		// session) under the same name: its touches and renewals must
		// rebind the keys the old client left, or they would vanish with
		// the old lease (spec/dcs-layout.md §2.3 renew, §2.4 skip rule).
		s.parallel(t)
		scope := s.scope()
		old := s.h.New(t, scope, "m1")
		// Read through a store without a member, which reads linearizably:
		// a key that vanished must not hide behind a cache until the next
		// refresh re-creates it.
		other := s.h.New(t, scope, "")
		require.NoError(t, old.TouchMember(ctx(t), member("m1", 7)))
		require.NoError(t, old.AcquireLeader(ctx(t)))
		// The old client is abandoned, as by a crash (not closed: Close
		// has its own subtest).
		restarted := s.h.New(t, scope, "m1")
		oldExpiry := s.now().Add(ttl + grace)
		var last time.Time
		for !last.After(oldExpiry) {
			last = s.now()
			require.NoError(t, restarted.TouchMember(ctx(t), member("m1", 7)), "§2.4: an identical value bound to another lease is rewritten")
			require.NoError(t, restarted.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), "§2.3: the key still names us")
			s.wait(ttl / 2)
			// Check before the next refresh, so a key left on the old
			// lease cannot vanish and be re-created unnoticed.
			c := read(t, other)
			require.Equal(t, "m1", leaderName(c), "§2.3: renewal rebinds the leader key to the new lease")
			require.NotNil(t, c.Member("m1"), "§2.4: the touch rebinds the member key to the new lease")
		}
		s.waitUntil(last.Add(ttl + grace))
		c := read(t, other)
		require.False(t, c.IsLocked())
		require.Nil(t, c.Member("m1"))
	})

	t.Run("members expire independently", func(t *testing.T) {
		s.parallel(t)
		_, st := s.cluster(t, "m1", "m2", "m3")
		require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 1)))
		require.NoError(t, st["m1"].AcquireLeader(ctx(t)))
		start := s.now()
		require.NoError(t, st["m2"].TouchMember(ctx(t), member("m2", 2)))
		for s.now().Before(start.Add(ttl + grace)) {
			s.wait(ttl / 3)
			require.NoError(t, st["m2"].TouchMember(ctx(t), member("m2", 2)))
		}
		s.see(t, st["m3"], func(t require.TestingT, c *dcs.Cluster) {
			require.Nil(t, c.Member("m1"), "§2.4: m1 stopped touching and expired")
			require.False(t, c.IsLocked(), "§2.3: m1's leader key went with its lease")
			require.NotNil(t, c.Member("m2"), "§2.4: m2 kept touching and lives")
			require.Equal(t, []string{"m2"}, memberNames(c))
		})
	})

	t.Run("SetTTL", func(t *testing.T) {
		if grace >= ttl {
			t.Skipf("ExpiryGrace %s is not below TTL %s", grace, ttl)
		}
		s.parallel(t)
		_, st := s.cluster(t, "m1", "m2", "")
		st["m1"].SetTTL(2 * ttl)
		start := s.now()
		require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 1)))
		require.NoError(t, st["m1"].AcquireLeader(ctx(t)))
		s.waitUntil(start.Add(ttl + grace))
		c := read(t, st[""])
		require.Equal(t, "m1", leaderName(c), "§3: SetTTL(2*ttl) applies from the next refresh")
		require.NotNil(t, c.Member("m1"))
		s.waitUntil(start.Add(2*ttl + grace))
		s.see(t, st["m2"], func(t require.TestingT, c *dcs.Cluster) {
			require.False(t, c.IsLocked(), "§3: the leader key expires after the new ttl")
			require.Nil(t, c.Member("m1"))
		})
	})
}

func memberNames(c *dcs.Cluster) []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Name)
	}
	return out
}

func errorIs(err, target error) bool { return errors.Is(err, target) }
