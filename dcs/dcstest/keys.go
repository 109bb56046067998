package dcstest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// testMembers checks the member key round trip and listing
// (spec/dcs-layout.md §2.4, §10.5).
func (s *suite) testMembers(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "m3", "")
	lsn, replay, receive := dcs.LSN(67109144), dcs.LSN(67109100), dcs.LSN(67109144)
	tl := 3
	want := &dcs.Member{
		Name:             "m2",
		ConnURL:          "postgres://127.0.0.1:5433/postgres",
		APIURL:           "http://127.0.0.1:8009/patroni",
		State:            "running",
		Role:             "replica",
		PatroniVersion:   "4.1.4",
		Tags:             map[string]any{"clonefrom": true, "failover_priority": json.Number("2")},
		XLogLocation:     &lsn,
		ReplayLSN:        &replay,
		ReceiveLSN:       &receive,
		ReplicationState: "streaming",
		Timeline:         &tl,
	}
	require.NoError(t, st["m2"].TouchMember(ctx(t), want))
	require.NoError(t, st["m1"].TouchMember(ctx(t), member("m1", 1)))
	require.NoError(t, st["m3"].TouchMember(ctx(t), member("m3", 3)))

	c := read(t, st[""])
	require.Equal(t, []string{"m1", "m2", "m3"}, memberNames(c), "model.go: members sorted by name")
	got := *c.Member("m2")
	require.NotEmpty(t, got.Version, "§1: every key has a version")
	got.Version, got.Session = "", ""
	require.Equal(t, *want, got, "§2.4: a member key round-trips")

	// A changed value is published; a touch for another name is refused.
	want.State, want.Role = "stopped", "uninitialized"
	require.NoError(t, st["m2"].TouchMember(ctx(t), want))
	s.see(t, st["m1"], func(t require.TestingT, c *dcs.Cluster) {
		require.NotNil(t, c.Member("m2"))
		require.Equal(t, "stopped", c.Member("m2").State)
		require.Equal(t, "uninitialized", c.Member("m2").Role)
	})
	require.Error(t, st["m1"].TouchMember(ctx(t), member("m2", 9)), "store.go TouchMember: m.Name must be the store's name")
	require.Equal(t, "stopped", read(t, st["m1"]).Member("m2").State)
}

// testConfig checks the config key: CAS on its version, unconditional
// writes, versions returned equal to versions read, exact JSON kept
// (spec/dcs-layout.md §2.2, §10.4).
func (s *suite) testConfig(t *testing.T) {
	_, st := s.cluster(t, "m1", "")
	m1, ctl := st["m1"], st[""]
	require.Nil(t, read(t, ctl).Config, "§2.2: no config in a new cluster")

	v1, err := m1.SetConfig(ctx(t), []byte(`{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true}}`), "")
	require.NoError(t, err, "§2.2: the bootstrap winner writes the config unconditionally")
	require.NotEmpty(t, v1)
	c := read(t, ctl)
	require.True(t, c.Config.Valid(), "§2.2: a written config carries a version")
	require.Equal(t, v1, c.Config.Version, "§10.4: the returned version is the stored one")
	require.Equal(t, json.Number("30"), c.Config.Data["ttl"])
	require.JSONEq(t, `{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true}}`, string(c.Config.Raw))

	v2, err := ctl.SetConfig(ctx(t), []byte(`{"ttl":30,"loop_wait":10,"pause":true}`), v1)
	require.NoError(t, err, "§2.2: CAS with the current version succeeds")
	require.NotEqual(t, v1, v2, "§10.4: a write changes the version")
	s.see(t, m1, func(t require.TestingT, c *dcs.Cluster) {
		require.True(t, c.IsPaused(), "§2.2: a member sees the new config")
	})

	_, err = m1.SetConfig(ctx(t), []byte(`{"ttl":99}`), v1)
	require.ErrorIs(t, err, dcs.ErrConflict, "§2.2: CAS with a stale version fails")
	c = read(t, m1)
	require.Equal(t, v2, c.Config.Version, "a failed CAS changes nothing")
	require.True(t, c.IsPaused())

	v3, err := m1.SetConfig(ctx(t), []byte(`{"ttl":40}`), "")
	require.NoError(t, err, "§2.2: PUT /config writes unconditionally")
	c = read(t, ctl)
	require.Equal(t, v3, c.Config.Version)
	require.Equal(t, json.Number("40"), c.Config.Data["ttl"])
	require.False(t, c.IsPaused())

	// CAS against a key that does not exist fails too.
	_, st2 := s.cluster(t, "")
	_, err = st2[""].SetConfig(ctx(t), []byte(`{"ttl":30}`), v3)
	require.ErrorIs(t, err, dcs.ErrConflict, "§10.4: CAS on an absent key fails")
	require.Nil(t, read(t, st2[""]).Config)
}

// testFailover checks the failover key round trip, CAS and clearing
// (spec/dcs-layout.md §2.7, §10.4).
func (s *suite) testFailover(t *testing.T) {
	_, st := s.cluster(t, "m1", "")
	m1, ctl := st["m1"], st[""]
	require.Nil(t, read(t, ctl).Failover)

	at := time.Date(2030, 9, 13, 18, 0, 0, 0, time.FixedZone("", -3*3600))
	v1, err := ctl.SetFailover(ctx(t), &dcs.Failover{Leader: "m1", Candidate: "m2", ScheduledAt: &at}, "")
	require.NoError(t, err, "§2.7: REST writes the request unconditionally")
	require.NotEmpty(t, v1)
	c := s.see(t, m1, func(t require.TestingT, c *dcs.Cluster) {
		require.NotNil(t, c.Failover, "§2.7: a member sees the request")
	})
	require.Equal(t, "m1", c.Failover.Leader)
	require.Equal(t, "m2", c.Failover.Candidate)
	require.NotNil(t, c.Failover.ScheduledAt)
	require.True(t, at.Equal(*c.Failover.ScheduledAt), "§2.7: scheduled_at round-trips: %s", c.Failover.ScheduledAt)
	require.Equal(t, v1, c.Failover.Version, "§10.4: the returned version is the stored one")

	v2, err := ctl.SetFailover(ctx(t), &dcs.Failover{Candidate: "m3"}, v1)
	require.NoError(t, err)
	require.NotEqual(t, v1, v2)
	c = s.see(t, m1, func(t require.TestingT, c *dcs.Cluster) {
		require.Equal(t, v2, c.Failover.Version, "§2.7: a member sees the new request")
	})
	require.Empty(t, c.Failover.Leader, "§2.7: no leader means failover")
	require.Equal(t, "m3", c.Failover.Candidate)
	require.Nil(t, c.Failover.ScheduledAt)

	_, err = m1.SetFailover(ctx(t), &dcs.Failover{}, v1)
	require.ErrorIs(t, err, dcs.ErrConflict, "§2.7: clearing with a stale version fails")
	require.Equal(t, "m3", read(t, m1).Failover.Candidate)

	_, err = m1.SetFailover(ctx(t), &dcs.Failover{}, v2)
	require.NoError(t, err, "§2.7: the leader clears the request with CAS")
	require.True(t, read(t, ctl).Failover.IsEmpty(), "§2.7: a cleared request reads as none")

	_, err = ctl.SetFailover(ctx(t), &dcs.Failover{Leader: "m1"}, "")
	require.NoError(t, err)
	_, err = m1.SetFailover(ctx(t), nil, "")
	require.NoError(t, err, "store.go SetFailover: nil clears")
	require.True(t, read(t, ctl).Failover.IsEmpty())
}

// testSync checks the sync key: fenced, CAS on every write, versions
// returned, delete with CAS (spec/dcs-layout.md §2.8, §10.4).
func (s *suite) testSync(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "")
	m1, ctl := st["m1"], st[""]
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	require.Nil(t, read(t, ctl).Sync)

	v1, err := m1.SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2", "m3"}, Quorum: 1}, "")
	require.NoError(t, err)
	require.NotEmpty(t, v1)
	c := read(t, ctl)
	require.NotNil(t, c.Sync)
	require.Equal(t, "m1", c.Sync.Leader)
	require.Equal(t, []string{"m2", "m3"}, c.Sync.Standbys)
	require.Equal(t, 1, c.Sync.Quorum)
	require.Equal(t, v1, c.Sync.Version, "§10.4: SetSync returns the new version")
	require.True(t, c.Sync.Matches("M2"), "§2.8: case-insensitive matching")

	v2, err := m1.SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}, v1)
	require.NoError(t, err, "§2.8: CAS with the last seen version")
	require.NotEqual(t, v1, v2)
	_, err = m1.SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m3"}}, v1)
	require.ErrorIs(t, err, dcs.ErrConflict, "§2.8: a stale version means someone else changed it")
	c = read(t, ctl)
	require.Equal(t, []string{"m2"}, c.Sync.Standbys)
	require.Zero(t, c.Sync.Quorum)
	require.Equal(t, v2, c.Sync.Version)

	require.ErrorIs(t, m1.DeleteSync(ctx(t), v1), dcs.ErrConflict, "§2.8: delete is CAS too")
	require.NotNil(t, read(t, ctl).Sync)
	require.NoError(t, m1.DeleteSync(ctx(t), v2))
	require.True(t, read(t, ctl).Sync.IsEmpty(), "§2.8: a deleted state reads as empty")

	_, err = m1.SetSync(ctx(t), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}, "")
	require.NoError(t, err, "§2.8: an unconditional write after a delete")
	require.Equal(t, []string{"m2"}, read(t, ctl).Sync.Standbys)
}

// testHistory checks the history key round trip (spec/dcs-layout.md §2.6).
func (s *suite) testHistory(t *testing.T) {
	_, st := s.cluster(t, "m1", "")
	m1, ctl := st["m1"], st[""]
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	require.Nil(t, read(t, ctl).History)
	require.Zero(t, read(t, ctl).History.Timeline(), "§2.6: timeline 0 when absent")

	lines := []dcs.HistoryLine{
		{Timeline: 1, LSN: 25623960, Reason: "no recovery target specified", Timestamp: "2019-09-23T16:57:57+02:00", NewLeader: "m1"},
		{Timeline: 2, LSN: 25624344, Reason: "no recovery target specified", Timestamp: "2019-09-24T09:22:33+02:00", NewLeader: "m2"},
		{Timeline: 3, LSN: 25624500, Reason: "no recovery target specified"},
	}
	require.NoError(t, m1.SetHistory(ctx(t), &dcs.TimelineHistory{Lines: lines}))
	c := read(t, ctl)
	require.NotNil(t, c.History)
	require.Equal(t, lines, c.History.Lines, "§2.6: history round-trips")
	require.NotEmpty(t, c.History.Version)
	require.Equal(t, 4, c.History.Timeline(), "§2.6: cluster timeline = last parent + 1")

	require.NoError(t, m1.SetHistory(ctx(t), &dcs.TimelineHistory{}), "§2.6: reset to [] on timeline 1")
	c = read(t, ctl)
	require.NotNil(t, c.History)
	require.Empty(t, c.History.Lines)
	require.Equal(t, 1, c.History.Timeline())
}

// testStatusAndFailsafe checks what the leader publishes with each renewal
// and on release (spec/dcs-layout.md §2.5, §2.9; store.go LeaderUpdate).
func (s *suite) testStatusAndFailsafe(t *testing.T) {
	_, st := s.cluster(t, "m1", "m2", "")
	m1, m2, ctl := st["m1"], st["m2"], st[""]
	require.NoError(t, m1.AcquireLeader(ctx(t)))
	c := read(t, ctl)
	require.Zero(t, c.Status.LastLSN)
	require.Nil(t, c.Failsafe)

	status := &dcs.Status{
		LastLSN:     67108960,
		Slots:       map[string]dcs.LSN{"m1": 67108960, "m2": 67108800, "test_logical": 67100000},
		RetainSlots: []string{"m1", "m2"},
	}
	failsafe := dcs.Failsafe{"m1": "http://127.0.0.1:8008/patroni", "m2": "http://127.0.0.1:8009/patroni"}
	require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: status, Failsafe: failsafe}))
	c = read(t, ctl)
	got := c.Status
	require.NotEmpty(t, got.Version)
	got.Version = ""
	require.Equal(t, *status, got, "§2.5: status round-trips")
	require.Equal(t, failsafe, c.Failsafe, "§2.9: failsafe round-trips")

	// Nil fields leave the keys alone; an empty failsafe clears it.
	require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{}))
	c = read(t, ctl)
	require.Equal(t, status.LastLSN, c.Status.LastLSN)
	require.Equal(t, failsafe, c.Failsafe)
	require.NoError(t, m1.UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 67108970}, Failsafe: dcs.Failsafe{}}))
	c = read(t, ctl)
	require.Equal(t, dcs.LSN(67108970), c.Status.LastLSN)
	require.Empty(t, c.Failsafe, "store.go LeaderUpdate: an empty map clears failsafe")

	// A non-leader publishes nothing.
	require.ErrorIs(t, m2.UpdateLeader(ctx(t), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 1}, Failsafe: dcs.Failsafe{"m2": "x"}}), dcs.ErrLeaderLost)
	c = read(t, ctl)
	require.Equal(t, dcs.LSN(67108970), c.Status.LastLSN)
	require.Empty(t, c.Failsafe)
	require.NoError(t, m2.ReleaseLeader(ctx(t), &dcs.Status{LastLSN: 2}))
	require.Equal(t, dcs.LSN(67108970), read(t, ctl).Status.LastLSN, "§2.5: only the holder's release publishes")

	// The release publishes the final status, then deletes the key.
	require.NoError(t, m1.ReleaseLeader(ctx(t), &dcs.Status{LastLSN: 67109000, Slots: map[string]dcs.LSN{"m1": 67109000}}))
	c = read(t, ctl)
	require.False(t, c.IsLocked())
	require.Equal(t, dcs.LSN(67109000), c.Status.LastLSN, "§2.5: written on voluntary release")
	require.Equal(t, map[string]dcs.LSN{"m1": 67109000}, c.Status.Slots)
}
