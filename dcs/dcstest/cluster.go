package dcstest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// testChanges checks the Changes channel: a waiter wakes promptly when
// the leader, failover, config, sync or initialize key changes, by any
// client or by lease expiry, and member or status updates do not wake it
// (store.go Changes; spec/dcs-layout.md §10.6; ARCHITECTURE.md "Timing":
// the loop wakes on DCS events instead of sleeping out loop_wait).
func (s *suite) testChanges(t *testing.T) {
	cases := []struct {
		name string
		// setup runs before the waiter settles; act makes the change.
		setup func(t *testing.T, st map[string]dcs.Store)
		act   func(t *testing.T, st map[string]dcs.Store)
		wake  bool
	}{
		{
			name: "leader acquired",
			act:  func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].AcquireLeader(ctx(t))) },
			wake: true,
		},
		{
			name:  "leader released",
			setup: func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].AcquireLeader(ctx(t))) },
			act:   func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].ReleaseLeader(ctx(t), nil)) },
			wake:  true,
		},
		{
			name:  "leader expired",
			setup: func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].AcquireLeader(ctx(t))) },
			act:   func(*testing.T, map[string]dcs.Store) { s.wait(s.h.TTL + s.h.ExpiryGrace) },
			wake:  true,
		},
		{
			name:  "leader taken over",
			setup: func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].AcquireLeader(ctx(t))) },
			act:   func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m2"].TakeLeader(ctx(t))) },
			wake:  true,
		},
		{
			name: "failover written",
			act: func(t *testing.T, st map[string]dcs.Store) {
				_, err := st[""].SetFailover(ctx(t), &dcs.Failover{Leader: "m1", Candidate: "m2"}, "")
				require.NoError(t, err)
			},
			wake: true,
		},
		{
			name: "config written",
			act: func(t *testing.T, st map[string]dcs.Store) {
				_, err := st[""].SetConfig(ctx(t), []byte(`{"ttl":30}`), "")
				require.NoError(t, err)
			},
			wake: true,
		},
		{
			name: "config changed",
			setup: func(t *testing.T, st map[string]dcs.Store) {
				_, err := st[""].SetConfig(ctx(t), []byte(`{"ttl":30}`), "")
				require.NoError(t, err)
			},
			act: func(t *testing.T, st map[string]dcs.Store) {
				_, err := st[""].SetConfig(ctx(t), []byte(`{"ttl":30,"pause":true}`), "")
				require.NoError(t, err)
			},
			wake: true,
		},
		{
			name:  "sync written",
			setup: func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].AcquireLeader(ctx(t))) },
			act: func(t *testing.T, st map[string]dcs.Store) {
				_, err := st["m1"].SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}, "")
				require.NoError(t, err)
			},
			wake: true,
		},
		{
			name: "initialize written",
			act:  func(t *testing.T, st map[string]dcs.Store) { require.NoError(t, st["m1"].Initialize(ctx(t), "", true)) },
			wake: true,
		},
		{
			name: "member touches and leader renewals",
			setup: func(t *testing.T, st map[string]dcs.Store) {
				require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 1)))
				require.NoError(t, st["m1"].AcquireLeader(ctx(t)))
			},
			act: func(t *testing.T, st map[string]dcs.Store) {
				for i := range 3 {
					require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", dcs.LSN(10+i))))
					require.NoError(t, st["m2"].TouchMember(ctx(t), member("m2", dcs.LSN(20+i))))
					require.NoError(t, st["m1"].UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: dcs.LSN(30 + i)}}))
				}
			},
			wake: false,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, st := s.cluster(t, "m1", "m2", "w", "")
			waiter := st["w"].Changes()
			require.Equal(t, waiter, st["w"].Changes(), "store.go Changes: the same channel on every call")
			if tc.setup != nil {
				tc.setup(t, st)
			}
			s.settle(waiter)
			tc.act(t, st)
			if tc.wake {
				s.requireWake(t, waiter, tc.name)
			} else {
				s.requireNoWake(t, waiter, tc.name)
			}
		})
	}

	t.Run("own writes wake the writer", func(t *testing.T) {
		_, st := s.cluster(t, "m1")
		ch := st["m1"].Changes()
		s.settle(ch)
		require.NoError(t, st["m1"].AcquireLeader(ctx(t)))
		s.requireWake(t, ch, "its own leader acquisition")
	})

	t.Run("changes coalesce without blocking writers", func(t *testing.T) {
		_, st := s.cluster(t, "m1", "w")
		ch := st["w"].Changes()
		s.settle(ch)
		for i := range 20 {
			_, err := st["m1"].SetConfig(ctx(t), []byte(`{"ttl":`+strconv.Itoa(30+i)+`}`), "")
			require.NoError(t, err, "store.go Changes: sends never block the writer")
		}
		s.requireWake(t, ch, "20 config writes")
	})
}

// testDeleteCluster checks that DeleteCluster removes every key of the
// cluster and nothing of other clusters (spec/dcs-layout.md §10.7).
func (s *suite) testDeleteCluster(t *testing.T) {
	populate := func(t *testing.T, st map[string]dcs.Store) {
		m1 := st["m1"]
		require.NoError(t, m1.Initialize(ctx(t), "7277694203142172922", true))
		_, err := m1.SetConfig(ctx(t), []byte(`{"ttl":30}`), "")
		require.NoError(t, err)
		require.NoError(t, m1.TouchMember(ctx(t), member("m1", 1)))
		require.NoError(t, m1.AcquireLeader(ctx(t)))
		require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 5}, Failsafe: dcs.Failsafe{"m1": "http://h/patroni"}}))
		_, err = m1.SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}, "")
		require.NoError(t, err)
		require.NoError(t, m1.SetHistory(ctx(t), &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 5, Reason: "r"}}}))
		_, err = m1.SetFailover(ctx(t), &dcs.Failover{Leader: "m1", Candidate: "m2"}, "")
		require.NoError(t, err)
	}
	_, doomed := s.cluster(t, "m1", "")
	_, kept := s.cluster(t, "m1", "")
	populate(t, doomed)
	populate(t, kept)

	require.NoError(t, doomed[""].DeleteCluster(ctx(t)), "§10.7: ctl remove")
	c := read(t, doomed[""])
	require.Nil(t, c.Initialize)
	require.Nil(t, c.Config)
	require.Nil(t, c.Leader)
	require.Empty(t, c.Members)
	require.Zero(t, c.Status.LastLSN)
	require.True(t, c.Failover.IsEmpty())
	require.True(t, c.Sync.IsEmpty())
	require.Nil(t, c.History)
	require.Empty(t, c.Failsafe)
	require.Empty(t, c.Problems)
	require.ErrorIs(t, doomed["m1"].UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
		"store.go: a deleted leader key is lost")

	c = read(t, kept[""])
	require.True(t, c.Initialize.Valid(), "§10.7: other clusters are untouched")
	require.Equal(t, "m1", leaderName(c))
	require.Len(t, c.Members, 1)
	require.NotNil(t, c.Config)
	require.NotNil(t, c.Sync)
	require.NotNil(t, c.Failover)
}

// testBadData stores garbage in every key through dcs.RawWriter and checks
// that Cluster degrades as spec/dcs-layout.md §1 says and lists each bad
// key in Problems, while the good keys stay usable.
func (s *suite) testBadData(t *testing.T) {
	probe := s.h.New(t, s.scope(), "m1")
	if _, ok := probe.(dcs.RawWriter); !ok {
		t.Skip("the store does not implement dcs.RawWriter")
	}
	const garbage = `{"not json`
	cases := []struct {
		key string
		// problem is whether the key must be reported in Problems.
		problem bool
		check   func(t *testing.T, c *dcs.Cluster)
	}{
		{dcs.KeyConfig, true, func(t *testing.T, c *dcs.Cluster) {
			require.False(t, c.Config.Valid(), "§1: bad config gives {} with modify-version 0")
		}},
		{dcs.KeyMembers + "bad", true, func(t *testing.T, c *dcs.Cluster) {
			m := c.Member("bad")
			require.NotNil(t, m, "§1: bad JSON in members/x gives a member with empty data")
			require.Empty(t, m.ConnURL)
			require.Empty(t, m.State)
		}},
		{dcs.KeySync, true, func(t *testing.T, c *dcs.Cluster) {
			require.True(t, c.Sync.IsEmpty(), "§1: bad sync gives an empty sync state")
		}},
		{dcs.KeyHistory, true, func(t *testing.T, c *dcs.Cluster) {
			if c.History != nil {
				require.Empty(t, c.History.Lines, "§1: bad history gives an empty list")
			}
		}},
		{dcs.KeyFailsafe, true, func(t *testing.T, c *dcs.Cluster) {
			require.Empty(t, c.Failsafe, `§1: bad failsafe gives "none"`)
		}},
		{dcs.KeyFailover, true, func(t *testing.T, c *dcs.Cluster) {
			require.True(t, c.Failover.IsEmpty(), "§2.7: a bad request is no request")
		}},
		{dcs.KeyStatus, true, func(t *testing.T, c *dcs.Cluster) {
			require.Zero(t, c.Status.LastLSN, "§2.5: a bad status gives an unknown optime")
		}},
		{dcs.KeyInitialize, false, func(t *testing.T, c *dcs.Cluster) {
			require.NotNil(t, c.Initialize)
			require.False(t, c.Initialize.Valid(), "§2.1: a sysid that is not all digits is not valid")
		}},
		{dcs.KeyLeader, false, func(t *testing.T, c *dcs.Cluster) {
			require.NotNil(t, c.Leader, "§2.3: the leader key holds any name")
			require.NotNil(t, c.Leader.Member, "§2.3: a leader without member key resolves to an empty member")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			_, st := s.cluster(t, "m1", "m2", "")
			raw := st["m2"].(dcs.RawWriter)
			// Good data around the bad key must stay readable.
			require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 1)))
			_, err := st[""].SetFailover(ctx(t), &dcs.Failover{Candidate: "m1"}, "")
			require.NoError(t, err)
			require.NoError(t, raw.PutRaw(ctx(t), tc.key, []byte(garbage)))

			c := read(t, st[""])
			tc.check(t, c)
			require.NotNil(t, c.Member("m1"), "§1: one bad key does not spoil the snapshot")
			var keys []string
			for _, p := range c.Problems {
				var de *dcs.DecodeError
				require.True(t, errors.As(p, &de), "model.go Problems: each is a *DecodeError, got %T", p)
				keys = append(keys, de.Key)
			}
			if tc.problem {
				require.Equal(t, []string{tc.key}, keys, "model.go Problems: the bad key is reported")
			} else {
				require.Empty(t, keys)
			}
			if tc.key != dcs.KeyFailover {
				require.Equal(t, "m1", c.Failover.Candidate, "§1: one bad key does not spoil the snapshot")
			}
		})
	}
}

// testContext checks that every call honours its context: with a context
// that is already done, each returns promptly, and an error it returns
// wraps dcs.ErrUnavailable (store.go "Every blocking method honours ctx";
// spec/dcs-layout.md §3).
func (s *suite) testContext(t *testing.T) {
	_, st := s.cluster(t, "m1", "")
	m1 := st["m1"]
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Cluster", func(c context.Context) error { _, err := m1.Cluster(c); return err }},
		{"Initialize", func(c context.Context) error { return m1.Initialize(c, "", true) }},
		{"CancelInitialize", func(c context.Context) error { return st[""].CancelInitialize(c) }},
		{"TouchMember", func(c context.Context) error { return m1.TouchMember(c, member("m1", 1)) }},
		{"AcquireLeader", func(c context.Context) error { return m1.AcquireLeader(c) }},
		{"TakeLeader", func(c context.Context) error { return m1.TakeLeader(c) }},
		{"UpdateLeader", func(c context.Context) error { return m1.UpdateLeader(c, dcs.LeaderUpdate{}) }},
		{"ReleaseLeader", func(c context.Context) error { return m1.ReleaseLeader(c, nil) }},
		{"SetConfig", func(c context.Context) error { _, err := m1.SetConfig(c, []byte(`{}`), ""); return err }},
		{"SetFailover", func(c context.Context) error { _, err := m1.SetFailover(c, &dcs.Failover{}, ""); return err }},
		{"SetSync", func(c context.Context) error { _, err := m1.SetSync(c, &dcs.SyncState{Leader: "m1"}, ""); return err }},
		{"DeleteSync", func(c context.Context) error { return m1.DeleteSync(c, "") }},
		{"SetHistory", func(c context.Context) error { return m1.SetHistory(c, &dcs.TimelineHistory{}) }},
		{"DeleteCluster", func(c context.Context) error { return st[""].DeleteCluster(c) }},
	}
	dones := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			c, cancel := context.WithCancel(t.Context())
			cancel()
			return c, cancel
		}},
		{"deadline passed", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		}},
	}
	for _, d := range dones {
		t.Run(d.name, func(t *testing.T) {
			for _, c := range calls {
				cctx, cancel := d.ctx()
				start := time.Now()
				err := c.call(cctx)
				cancel()
				require.Less(t, time.Since(start), time.Second, "%s must return by its context's deadline", c.name)
				if err != nil {
					require.ErrorIs(t, err, dcs.ErrUnavailable, "%s: a call cut short by its context wraps ErrUnavailable", c.name)
				}
			}
		})
	}
	require.Equal(t, "m1", leaderName(read(t, st[""])), "writes that failed on their context did not happen")
}

// testClose checks Close: later calls fail with ErrClosed, and the leader
// key is not released but expires with the lease (store.go Close).
func (s *suite) testClose(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "")
	m1, m2 := st["m1"], st["m2"]
	start := s.now()
	require.NoError(t, m1.TouchMember(ctx(t), member("m1", 1)))
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	require.NoError(t, m1.Close())
	_, err := m1.Cluster(ctx(t))
	require.ErrorIs(t, err, dcs.ErrClosed, "store.go ErrClosed: returned after Close")
	require.ErrorIs(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}), dcs.ErrClosed)

	s.waitUntil(start.Add(s.h.TTL / 2))
	require.Equal(t, "m1", leaderName(read(t, st[""])), "store.go Close: does not release the leader key")
	s.waitUntil(start.Add(s.h.TTL + s.h.ExpiryGrace))
	s.see(t, m2, func(t require.TestingT, c *dcs.Cluster) {
		require.False(t, c.IsLocked(), "store.go Close: the lease then expires after ttl")
		require.Nil(t, c.Member("m1"))
	})
}
