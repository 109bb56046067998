package dcs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func entry(key, value string, version Version) Entry {
	return Entry{Key: key, Value: []byte(value), Version: version}
}

func goldenEntries(t *testing.T) []Entry {
	return []Entry{
		entry("initialize", string(golden(t, "initialize.txt")), "1"),
		entry("config", string(golden(t, "config.json")), "2"),
		{Key: "leader", Value: golden(t, "leader.txt"), Version: "3", Session: "lease-a"},
		{Key: "members/postgresql1", Value: golden(t, "member-replica.json"), Version: "5", Session: "lease-b"},
		{Key: "members/postgresql0", Value: golden(t, "member-primary.json"), Version: "4", Session: "lease-a"},
		entry("status", string(golden(t, "status.json")), "6"),
		entry("optime/leader", "1", "7"),
		entry("history", string(golden(t, "history.json")), "8"),
		entry("failover", string(golden(t, "failover.json")), "9"),
		entry("sync", string(golden(t, "sync-on.json")), "10"),
		entry("failsafe", string(golden(t, "failsafe.json")), "11"),
	}
}

// TestBuildClusterGolden builds a snapshot from every spec example
// (spec/dcs-layout.md §1: one prefix read of all keys).
func TestBuildClusterGolden(t *testing.T) {
	c := BuildCluster(goldenEntries(t))
	require.Empty(t, c.Problems)

	require.Equal(t, &Initialize{SystemID: "7277694203142172922", Version: "1"}, c.Initialize)
	require.True(t, c.Initialize.Valid())
	require.True(t, c.Config.Valid())
	require.Equal(t, Version("2"), c.Config.Version)

	require.Len(t, c.Members, 2)
	require.Equal(t, "postgresql0", c.Members[0].Name, "members are sorted by name")
	require.Equal(t, Version("4"), c.Members[0].Version)
	require.Equal(t, "lease-b", c.Members[1].Session)

	require.True(t, c.IsLocked())
	require.Equal(t, "postgresql0", c.Leader.Name)
	require.Equal(t, Version("3"), c.Leader.Version)
	require.Equal(t, "lease-a", c.Leader.Session)
	require.Same(t, c.Members[0], c.Leader.Member, "§2.3 the leader resolves to its member key")

	require.Equal(t, LSN(67108960), c.Status.LastLSN, "status wins over optime/leader")
	require.Equal(t, Version("6"), c.Status.Version)
	require.Equal(t, 3, c.History.Timeline())
	require.Equal(t, Version("8"), c.History.Version)
	require.Equal(t, "postgresql1", c.Failover.Candidate)
	require.Equal(t, Version("9"), c.Failover.Version)
	require.Equal(t, &SyncState{Leader: "node0", Standbys: []string{"node1", "node2"}, Version: "10"}, c.Sync)
	require.Len(t, c.Failsafe, 2)
}

// TestBuildCluster checks the assembly rules of spec/dcs-layout.md §1, §2.3
// and §2.5 and the degradation of bad entries.
func TestBuildCluster(t *testing.T) {
	const primary = `{"conn_url":"c","api_url":"a","state":"running","role":"primary","version":"4.1.4"}`
	tests := []struct {
		name     string
		entries  []Entry
		check    func(t *testing.T, c *Cluster)
		problems []string // keys of the expected DecodeErrors, in order
	}{
		{
			name: "empty prefix",
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, &Cluster{}, c)
				require.False(t, c.IsLocked())
				require.False(t, c.IsPaused())
				require.Equal(t, 0, c.History.Timeline())
			},
		},
		{
			name:    "§2.3 leader without member key gets a name-only member",
			entries: []Entry{entry("leader", "ghost", "1"), entry("members/a", primary, "2")},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, &Member{Name: "ghost"}, c.Leader.Member)
				require.Nil(t, c.Member("ghost"))
			},
		},
		{
			name:    "empty leader value is no leader",
			entries: []Entry{entry("leader", "", "1")},
			check: func(t *testing.T, c *Cluster) {
				require.Nil(t, c.Leader)
				require.False(t, c.IsLocked())
			},
		},
		{
			name:    "§2.5 status absent falls back to optime/leader",
			entries: []Entry{entry("optime/leader", "67108960\n", "7")},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, Status{LastLSN: 67108960, Version: "7"}, c.Status)
			},
		},
		{
			name:     "§2.5 bad optime/leader reads as 0",
			entries:  []Entry{entry("optime/leader", "0/3000060", "7")},
			problems: []string{"optime/leader"},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, Status{Version: "7"}, c.Status)
			},
		},
		{
			name:     "§1 bad status does not fall back",
			entries:  []Entry{entry("status", "[]", "6"), entry("optime/leader", "5", "7")},
			problems: []string{"status"},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, Status{Version: "6"}, c.Status)
			},
		},
		{
			name:    "§2.7 failover {} is no request",
			entries: []Entry{entry("failover", "{}", "9")},
			check: func(t *testing.T, c *Cluster) {
				require.Nil(t, c.Failover)
			},
		},
		{
			name:    "§2.1 initialize race in progress",
			entries: []Entry{entry("initialize", "", "1")},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, &Initialize{Version: "1"}, c.Initialize)
				require.False(t, c.Initialize.Valid())
			},
		},
		{
			name:    "§2.6 empty history is timeline 1",
			entries: []Entry{entry("history", "[]", "8")},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, &TimelineHistory{Version: "8"}, c.History)
				require.Equal(t, 1, c.History.Timeline())
			},
		},
		{
			name: "unknown keys are ignored",
			entries: []Entry{
				entry("members/", primary, "1"), entry("members/a/b", primary, "1"), entry("0/leader", "x", "1"),
				entry("optime/other", "5", "1"), entry("sync/x", "{}", "1"), entry("mystery", "?", "1"),
			},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, &Cluster{}, c)
			},
		},
		{
			name:    "a later duplicate entry wins",
			entries: []Entry{entry("members/a", "garbage", "1"), entry("members/a", primary, "2")},
			check: func(t *testing.T, c *Cluster) {
				require.Len(t, c.Members, 1)
				require.Equal(t, Version("2"), c.Members[0].Version)
				require.Equal(t, "primary", c.Members[0].Role)
			},
		},
		{
			name: "§1 every bad entry degrades and is reported",
			entries: []Entry{
				entry("leader", "b", "1"),
				{Key: "members/b", Value: []byte("{oops"), Version: "2", Session: "s"},
				entry("members/a", primary, "3"),
				entry("config", "{oops", "4"),
				entry("status", "{oops", "5"),
				entry("history", "{oops", "6"),
				entry("failover", "{oops", "7"),
				entry("sync", "{oops", "8"),
				entry("failsafe", "{oops", "9"),
			},
			problems: []string{"config", "failover", "failsafe", "history", "members/b", "status", "sync"},
			check: func(t *testing.T, c *Cluster) {
				require.Equal(t, []string{"a", "b"}, []string{c.Members[0].Name, c.Members[1].Name})
				require.Equal(t, &Member{Name: "b", Version: "2", Session: "s"}, c.Members[1])
				require.Same(t, c.Members[1], c.Leader.Member)
				require.NotNil(t, c.Config)
				require.False(t, c.Config.Valid(), "a bad config is invalid")
				require.Empty(t, c.Config.Data)
				require.Equal(t, Status{Version: "5"}, c.Status)
				require.Equal(t, &TimelineHistory{Version: "6"}, c.History)
				require.Nil(t, c.Failover)
				require.Nil(t, c.Sync)
				require.Nil(t, c.Failsafe)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := BuildCluster(tt.entries)
			var keys []string
			for _, p := range c.Problems {
				var de *DecodeError
				require.ErrorAs(t, p, &de)
				keys = append(keys, de.Key)
			}
			require.Equal(t, tt.problems, keys)
			tt.check(t, c)
		})
	}
}
