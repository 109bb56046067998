package dcs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func lsn(n uint64) *LSN { l := LSN(n); return &l }

func intp(n int) *int { return &n }

func boolp(b bool) *bool { return &b }

func golden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	require.NoError(t, err)
	return data
}

// TestGoldenEncodings checks that every example of spec/dcs-layout.md §2
// (stored compact in testdata/golden, exactly as Patroni writes it) decodes
// without problems and encodes back byte for byte.
func TestGoldenEncodings(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		roundTrip func(data []byte) ([]byte, error)
	}{
		{name: "§2.4 member primary", file: "member-primary.json", roundTrip: func(d []byte) ([]byte, error) {
			m, err := DecodeMember("postgresql0", d)
			return EncodeMember(m), err
		}},
		{name: "§2.4 member replica", file: "member-replica.json", roundTrip: func(d []byte) ([]byte, error) {
			m, err := DecodeMember("postgresql1", d)
			return EncodeMember(m), err
		}},
		{name: "§2.5 status", file: "status.json", roundTrip: func(d []byte) ([]byte, error) {
			s, err := DecodeStatus(d)
			return EncodeStatus(&s), err
		}},
		{name: "§2.6 history", file: "history.json", roundTrip: func(d []byte) ([]byte, error) {
			h, err := DecodeHistory(d)
			return EncodeHistory(h), err
		}},
		{name: "§2.7 failover", file: "failover.json", roundTrip: func(d []byte) ([]byte, error) {
			f, err := DecodeFailover(d)
			return EncodeFailover(f), err
		}},
		{name: "§2.8 sync on", file: "sync-on.json", roundTrip: func(d []byte) ([]byte, error) {
			s, err := DecodeSync(d)
			return EncodeSync(s), err
		}},
		{name: "§2.8 sync quorum", file: "sync-quorum.json", roundTrip: func(d []byte) ([]byte, error) {
			s, err := DecodeSync(d)
			return EncodeSync(s), err
		}},
		{name: "§2.9 failsafe", file: "failsafe.json", roundTrip: func(d []byte) ([]byte, error) {
			f, err := DecodeFailsafe(d)
			return EncodeFailsafe(f), err
		}},
		{name: "§2.2 config keeps its order", file: "config.json", roundTrip: func(d []byte) ([]byte, error) {
			c, err := DecodeConfig(d)
			return c.Raw, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := golden(t, tt.file)
			got, err := tt.roundTrip(want)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}

// TestGoldenModels pins what the spec examples mean (spec/dcs-layout.md §2).
func TestGoldenModels(t *testing.T) {
	t.Run("§2.4 member primary", func(t *testing.T) {
		m, err := DecodeMember("postgresql0", golden(t, "member-primary.json"))
		require.NoError(t, err)
		require.Equal(t, &Member{
			Name:           "postgresql0",
			ConnURL:        "postgres://127.0.0.1:5432/postgres",
			APIURL:         "http://127.0.0.1:8008/patroni",
			State:          "running",
			Role:           "primary",
			PatroniVersion: "4.1.4",
			XLogLocation:   lsn(67108960),
			Timeline:       intp(3),
		}, m)
	})
	t.Run("§2.4 member replica", func(t *testing.T) {
		m, err := DecodeMember("postgresql1", golden(t, "member-replica.json"))
		require.NoError(t, err)
		require.Equal(t, &Member{
			Name:             "postgresql1",
			ConnURL:          "postgres://127.0.0.1:5433/postgres",
			APIURL:           "http://127.0.0.1:8009/patroni",
			State:            "running",
			Role:             "replica",
			PatroniVersion:   "4.1.4",
			Tags:             map[string]any{"clonefrom": true},
			XLogLocation:     lsn(67109144),
			ReplayLSN:        lsn(67109144),
			ReceiveLSN:       lsn(67109144),
			ReplicationState: "streaming",
			Timeline:         intp(3),
		}, m)
		require.True(t, m.CloneFrom())
	})
	t.Run("§2.5 status", func(t *testing.T) {
		s, err := DecodeStatus(golden(t, "status.json"))
		require.NoError(t, err)
		require.Equal(t, Status{
			LastLSN:     67108960,
			Slots:       map[string]LSN{"postgresql0": 67108960, "postgresql1": 67108800, "test_logical": 67100000},
			RetainSlots: []string{"postgresql0", "postgresql1"},
		}, s)
	})
	t.Run("§2.6 history", func(t *testing.T) {
		h, err := DecodeHistory(golden(t, "history.json"))
		require.NoError(t, err)
		require.Equal(t, []HistoryLine{
			{Timeline: 1, LSN: 25623960, Reason: "no recovery target specified", Timestamp: "2019-09-23T16:57:57+02:00", NewLeader: "postgresql0"},
			{Timeline: 2, LSN: 25624344, Reason: "no recovery target specified", Timestamp: "2019-09-24T09:22:33+02:00", NewLeader: "postgresql1"},
		}, h.Lines)
		require.Equal(t, 3, h.Timeline())
	})
	t.Run("§2.7 failover", func(t *testing.T) {
		f, err := DecodeFailover(golden(t, "failover.json"))
		require.NoError(t, err)
		at := time.Date(2023, 9, 13, 18, 0, 0, 0, time.FixedZone("", -3*3600))
		require.Equal(t, "postgresql0", f.Leader)
		require.Equal(t, "postgresql1", f.Candidate)
		require.True(t, at.Equal(*f.ScheduledAt))
		_, off := f.ScheduledAt.Zone()
		require.Equal(t, -3*3600, off)
	})
	t.Run("§2.8 sync quorum", func(t *testing.T) {
		s, err := DecodeSync(golden(t, "sync-quorum.json"))
		require.NoError(t, err)
		require.Equal(t, &SyncState{Leader: "node0", Quorum: 1, Standbys: []string{"node1", "node2", "node3"}}, s)
		require.True(t, s.Matches("NODE2"))
	})
	t.Run("§2.9 failsafe", func(t *testing.T) {
		f, err := DecodeFailsafe(golden(t, "failsafe.json"))
		require.NoError(t, err)
		require.Equal(t, Failsafe{
			"postgresql0": "http://127.0.0.1:8008/patroni",
			"postgresql1": "http://127.0.0.1:8009/patroni",
		}, f)
	})
	t.Run("§2.2 config numbers are json.Number", func(t *testing.T) {
		c, err := DecodeConfig(golden(t, "config.json"))
		require.NoError(t, err)
		require.Equal(t, json.Number("30"), c.Data["ttl"])
		pg := c.Data["postgresql"].(map[string]any)
		require.Equal(t, true, pg["use_slots"])
		require.Equal(t, json.Number("100"), pg["parameters"].(map[string]any)["max_connections"])
		require.False(t, c.Valid(), "a decoded config has no version until BuildCluster sets it")
	})
}

// TestLegacyForms checks the older encodings readers must accept
// (spec/dcs-layout.md §2.4, §2.5, §2.7, §2.8, §2.6) and what we write back.
func TestLegacyForms(t *testing.T) {
	t.Run("§2.4 member", func(t *testing.T) {
		tests := []struct {
			name string
			in   string
			want *Member
		}{
			{
				name: "role master reads as primary",
				in:   `{"conn_url":"postgres://h:5432/postgres","api_url":"http://h:8008/patroni","state":"running","role":"master","version":"2.0.2"}`,
				want: &Member{Name: "n", ConnURL: "postgres://h:5432/postgres", APIURL: "http://h:8008/patroni", State: "running", Role: "primary", PatroniVersion: "2.0.2"},
			},
			{
				name: "bare URL",
				in:   `postgres://replicator:secret@10.0.0.1:5432/postgres`,
				want: &Member{Name: "n", ConnURL: "postgres://replicator:secret@10.0.0.1:5432/postgres"},
			},
			{
				name: "bare URL with application_name",
				in:   `postgres://10.0.0.1:5432/postgres?application_name=http%3A%2F%2F10.0.0.1%3A8008%2Fpatroni`,
				want: &Member{Name: "n", ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni"},
			},
			{
				name: "bare URL with unescaped application_name among other parameters",
				in:   `postgres://10.0.0.1:5432/postgres?sslmode=disable&application_name=http://10.0.0.1:8008/patroni`,
				want: &Member{Name: "n", ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni"},
			},
			{
				name: "LSNs as floats and numeric strings, timeline as float",
				in:   `{"conn_url":"c","api_url":"a","state":"running","role":"replica","version":"4.1.4","xlog_location":67109144.0,"replay_lsn":"67109144","receive_lsn":6.7109144e7,"timeline":3.0}`,
				want: &Member{Name: "n", ConnURL: "c", APIURL: "a", State: "running", Role: "replica", PatroniVersion: "4.1.4",
					XLogLocation: lsn(67109144), ReplayLSN: lsn(67109144), ReceiveLSN: lsn(67109144), Timeline: intp(3)},
			},
			{
				name: "null fields read as absent, unknown fields ignored",
				in:   `{"conn_url":"c","api_url":null,"state":"running","role":"replica","version":"4.1.4","xlog_location":null,"tags":null,"pause":null,"future_field":{"x":1}}`,
				want: &Member{Name: "n", ConnURL: "c", State: "running", Role: "replica", PatroniVersion: "4.1.4"},
			},
			{
				name: "empty tags and reasons read as nil",
				in:   `{"conn_url":"c","api_url":"a","state":"s","role":"r","version":"v","tags":{},"pending_restart_reason":{}}`,
				want: &Member{Name: "n", ConnURL: "c", APIURL: "a", State: "s", Role: "r", PatroniVersion: "v"},
			},
			{
				name: "restart_pending is tested for truth, timeout kept as written",
				in:   `{"conn_url":"c","api_url":"a","state":"s","role":"r","version":"v","scheduled_restart":{"schedule":"2024-01-01T00:00:00+00:00","restart_pending":"yes","timeout":"30"}}`,
				want: &Member{Name: "n", ConnURL: "c", APIURL: "a", State: "s", Role: "r", PatroniVersion: "v",
					ScheduledRestart: &ScheduledRestart{Schedule: "2024-01-01T00:00:00+00:00", RestartPending: true, Timeout: "30"}},
			},
			{
				name: "pending_restart_reason numbers as text",
				in:   `{"conn_url":"c","api_url":"a","state":"s","role":"r","version":"v","pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":100,"new_value":"200"}}}`,
				want: &Member{Name: "n", ConnURL: "c", APIURL: "a", State: "s", Role: "r", PatroniVersion: "v", PendingRestart: true,
					PendingRestartReason: map[string]PendingParam{"max_connections": {OldValue: "100", NewValue: "200"}}},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m, err := DecodeMember("n", []byte(tt.in))
				require.NoError(t, err)
				require.Equal(t, tt.want, m)
				again, err := DecodeMember("n", EncodeMember(m))
				require.NoError(t, err)
				require.Equal(t, m, again)
			})
		}
	})

	t.Run("§2.5 status", func(t *testing.T) {
		tests := []struct {
			name string
			in   string
			want Status
			out  string
		}{
			{name: "bare integer optime", in: `67108960`, want: Status{LastLSN: 67108960}, out: `{"optime":67108960}`},
			{
				name: "string-encoded slots and retain_slots",
				in:   `{"optime":100,"slots":"{\"a\":90,\"b\":80}","retain_slots":"[\"a\",\"b\"]"}`,
				want: Status{LastLSN: 100, Slots: map[string]LSN{"a": 90, "b": 80}, RetainSlots: []string{"a", "b"}},
				out:  `{"optime":100,"slots":{"a":90,"b":80},"retain_slots":["a","b"]}`,
			},
			{name: "null and empty slots omitted", in: `{"optime":5,"slots":null,"retain_slots":[]}`, want: Status{LastLSN: 5}, out: `{"optime":5}`},
			{name: "optime as numeric string", in: `{"optime":"42"}`, want: Status{LastLSN: 42}, out: `{"optime":42}`},
			{name: "float optime", in: `{"optime":42.0}`, want: Status{LastLSN: 42}, out: `{"optime":42}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := DecodeStatus([]byte(tt.in))
				require.NoError(t, err)
				require.Equal(t, tt.want, s)
				require.Equal(t, tt.out, string(EncodeStatus(&s)))
			})
		}
	})

	t.Run("§2.7 failover", func(t *testing.T) {
		utc := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
		tests := []struct {
			name string
			in   string
			want *Failover
			out  string
		}{
			{name: "leader:candidate", in: `postgresql0:postgresql1`, want: &Failover{Leader: "postgresql0", Candidate: "postgresql1"}, out: `{"leader":"postgresql0","member":"postgresql1"}`},
			{name: "failover to a candidate", in: ` : postgresql1 `, want: &Failover{Candidate: "postgresql1"}, out: `{"member":"postgresql1"}`},
			{name: "leader only", in: `postgresql0`, want: &Failover{Leader: "postgresql0"}, out: `{"leader":"postgresql0"}`},
			{name: "colon only is empty", in: `:`, want: nil, out: `{}`},
			{name: "empty object is empty", in: `{}`, want: nil, out: `{}`},
			{name: "empty fields are empty", in: `{"leader":"","member":null}`, want: nil, out: `{}`},
			{name: "empty value is empty", in: ``, want: nil, out: `{}`},
			{name: "Z suffix", in: `{"member":"b","scheduled_at":"2024-05-01T10:00:00Z"}`, want: &Failover{Candidate: "b", ScheduledAt: &utc}, out: `{"member":"b","scheduled_at":"2024-05-01T10:00:00+00:00"}`},
			{name: "space separator, no zone is UTC", in: `{"member":"b","scheduled_at":"2024-05-01 10:00:00"}`, want: &Failover{Candidate: "b", ScheduledAt: &utc}, out: `{"member":"b","scheduled_at":"2024-05-01T10:00:00+00:00"}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f, err := DecodeFailover([]byte(tt.in))
				require.NoError(t, err)
				require.Equal(t, tt.want, f)
				require.Equal(t, tt.out, string(EncodeFailover(f)))
			})
		}
	})

	t.Run("§2.8 sync", func(t *testing.T) {
		tests := []struct {
			name string
			in   string
			want *SyncState
			out  string
		}{
			{name: "sync_standby null", in: `{"leader":"node0","quorum":0,"sync_standby":null}`, want: &SyncState{Leader: "node0"}, out: `{"leader":"node0","quorum":0,"sync_standby":null}`},
			{name: "quorum absent", in: `{"leader":"node0","sync_standby":"node1"}`, want: &SyncState{Leader: "node0", Standbys: []string{"node1"}}, out: `{"leader":"node0","quorum":0,"sync_standby":"node1"}`},
			{name: "quorum as string (Kubernetes)", in: `{"leader":"node0","quorum":"2","sync_standby":"node2,node1"}`, want: &SyncState{Leader: "node0", Quorum: 2, Standbys: []string{"node1", "node2"}}, out: `{"leader":"node0","quorum":2,"sync_standby":"node1,node2"}`},
			{name: "spaces and empty names dropped", in: `{"leader":"node0","sync_standby":" node2 ,,node1"}`, want: &SyncState{Leader: "node0", Standbys: []string{"node1", "node2"}}, out: `{"leader":"node0","quorum":0,"sync_standby":"node1,node2"}`},
			{name: "no leader is empty", in: `{"leader":null,"quorum":1,"sync_standby":"node1"}`, want: nil, out: `{}`},
			{name: "ZooKeeper deleted {}", in: `{}`, want: nil, out: `{}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := DecodeSync([]byte(tt.in))
				require.NoError(t, err)
				require.Equal(t, tt.want, s)
				require.Equal(t, tt.out, string(EncodeSync(s)))
			})
		}
	})

	t.Run("§2.6 history", func(t *testing.T) {
		tests := []struct {
			name string
			in   string
			want []HistoryLine
			out  string
		}{
			{name: "empty", in: `[]`, want: nil, out: `[]`},
			{name: "3 elements", in: `[[1,25623960,"no recovery target specified"]]`, want: []HistoryLine{{Timeline: 1, LSN: 25623960, Reason: "no recovery target specified"}}, out: `[[1,25623960,"no recovery target specified"]]`},
			{name: "4 elements", in: `[[1,100,"r","2019-09-23T16:57:57+02:00"]]`, want: []HistoryLine{{Timeline: 1, LSN: 100, Reason: "r", Timestamp: "2019-09-23T16:57:57+02:00"}}, out: `[[1,100,"r","2019-09-23T16:57:57+02:00"]]`},
			{name: "mixed lengths", in: `[[1,100,"r"],[2,200,"s","t","n"]]`, want: []HistoryLine{{Timeline: 1, LSN: 100, Reason: "r"}, {Timeline: 2, LSN: 200, Reason: "s", Timestamp: "t", NewLeader: "n"}}, out: `[[1,100,"r"],[2,200,"s","t","n"]]`},
			{name: "textual LSN", in: `[[1,"0/186FD98","r"]]`, want: []HistoryLine{{Timeline: 1, LSN: 0x186FD98, Reason: "r"}}, out: `[[1,25623960,"r"]]`},
			{name: "null timestamp", in: `[[1,100,"r",null,"n"]]`, want: []HistoryLine{{Timeline: 1, LSN: 100, Reason: "r", NewLeader: "n"}}, out: `[[1,100,"r","","n"]]`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h, err := DecodeHistory([]byte(tt.in))
				require.NoError(t, err)
				require.Equal(t, tt.want, h.Lines)
				require.Equal(t, tt.out, string(EncodeHistory(h)))
			})
		}
	})
}

// TestRoundTrip checks encode→decode gives the model back (spec/dcs-layout.md
// §2), including values Patroni never writes but our callers could build.
func TestRoundTrip(t *testing.T) {
	t.Run("§2.4 member", func(t *testing.T) {
		tests := []struct {
			name string
			m    *Member
		}{
			{name: "only name", m: &Member{Name: "n"}},
			{name: "every field", m: &Member{
				Name: "n", ConnURL: "postgres://[::1]:5432/postgres", APIURL: "https://h:8008/patroni", State: "running",
				Role: "primary", PatroniVersion: "4.1.4", ProxyURL: "postgres://proxy:6432/postgres",
				CheckpointAfterPromote: boolp(false),
				Tags: map[string]any{
					"nofailover": false, "failover_priority": json.Number("0"), "replicatefrom": "n2",
					"nested": map[string]any{"list": []any{json.Number("1.5"), "x", nil, true}},
				},
				PendingRestart:       true,
				PendingRestartReason: map[string]PendingParam{"shared_buffers": {OldValue: "128MB", NewValue: "1GB"}, "max_wal_senders": {OldValue: "10", NewValue: "20"}},
				XLogLocation:         lsn(1 << 40), ReplayLSN: lsn(0), ReceiveLSN: lsn(^uint64(0)),
				ReplicationState: "in archive recovery", Timeline: intp(12345),
				ScheduledRestart: &ScheduledRestart{
					Schedule: "2024-01-01T00:00:00+00:00", PostmasterStartTime: "2023-12-31 10:00:00.000 UTC",
					Role: "replica", PostgresVersion: "15.4", RestartPending: true, Timeout: "120",
				},
				Pause: true,
			}},
			{name: "checkpoint_after_promote true is kept", m: &Member{Name: "n", CheckpointAfterPromote: boolp(true)}},
			{name: "non-ASCII and control characters", m: &Member{Name: "n", State: "créating \"replica\"\n\t\x01", Tags: map[string]any{"zoné😀": "<&>"}}},
			{name: "timeout that is not a number", m: &Member{Name: "n", ScheduledRestart: &ScheduledRestart{Schedule: "s", Timeout: "30s"}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := DecodeMember(tt.m.Name, EncodeMember(tt.m))
				require.NoError(t, err)
				require.Equal(t, tt.m, got)
			})
		}
	})

	t.Run("§2.5 status", func(t *testing.T) {
		for name, s := range map[string]Status{
			"zero":        {},
			"optime only": {LastLSN: 1},
			"everything":  {LastLSN: ^LSN(0), Slots: map[string]LSN{"a": 0, "ü": 5}, RetainSlots: []string{"a", "b"}},
		} {
			t.Run(name, func(t *testing.T) {
				got, err := DecodeStatus(EncodeStatus(&s))
				require.NoError(t, err)
				require.Equal(t, s, got)
			})
		}
	})

	t.Run("§2.7 failover", func(t *testing.T) {
		tests := []struct {
			name string
			f    *Failover
			json string
		}{
			{name: "switchover now", f: &Failover{Leader: "a", Candidate: "b"}, json: `{"leader":"a","member":"b"}`},
			{name: "failover", f: &Failover{Candidate: "b"}, json: `{"member":"b"}`},
			{name: "scheduled, negative offset", f: &Failover{Leader: "a", ScheduledAt: new(time.Date(2023, 9, 13, 18, 0, 0, 0, time.FixedZone("", -3*3600)))},
				json: `{"leader":"a","scheduled_at":"2023-09-13T18:00:00-03:00"}`},
			{name: "scheduled, microseconds, UTC", f: &Failover{Leader: "a", ScheduledAt: new(time.Date(2023, 9, 13, 18, 0, 0, 1500000, time.UTC))},
				json: `{"leader":"a","scheduled_at":"2023-09-13T18:00:00.001500+00:00"}`},
			{name: "scheduled, half-hour offset", f: &Failover{Leader: "a", ScheduledAt: new(time.Date(2023, 9, 13, 18, 0, 0, 0, time.FixedZone("", 5*3600+1800)))},
				json: `{"leader":"a","scheduled_at":"2023-09-13T18:00:00+05:30"}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				data := EncodeFailover(tt.f)
				require.Equal(t, tt.json, string(data))
				got, err := DecodeFailover(data)
				require.NoError(t, err)
				require.Equal(t, tt.f, got)
			})
		}
		require.Equal(t, `{}`, string(EncodeFailover(nil)))
		require.Equal(t, `{}`, string(EncodeFailover(&Failover{})))
	})

	t.Run("§2.8 sync", func(t *testing.T) {
		for name, s := range map[string]*SyncState{
			"no standbys": {Leader: "a"},
			"quorum":      {Leader: "a", Quorum: 2, Standbys: []string{"b", "c", "d"}},
		} {
			t.Run(name, func(t *testing.T) {
				got, err := DecodeSync(EncodeSync(s))
				require.NoError(t, err)
				require.Equal(t, s, got)
			})
		}
		require.Equal(t, `{"leader":"a","quorum":0,"sync_standby":"b,c"}`, string(EncodeSync(&SyncState{Leader: "a", Standbys: []string{"c", "b"}})),
			"standbys are written sorted")
	})

	t.Run("§2.6 history", func(t *testing.T) {
		h := &TimelineHistory{Lines: []HistoryLine{
			{Timeline: 1, LSN: 1, Reason: "r"},
			{Timeline: 2, LSN: 2, Reason: "r", Timestamp: "t"},
			{Timeline: 3, LSN: 3, Reason: "r", Timestamp: "t", NewLeader: "n"},
		}}
		got, err := DecodeHistory(EncodeHistory(h))
		require.NoError(t, err)
		require.Equal(t, h, got)
		require.Equal(t, `[]`, string(EncodeHistory(nil)))
	})

	t.Run("§2.9 failsafe", func(t *testing.T) {
		for name, f := range map[string]Failsafe{"empty": {}, "two": {"b": "http://b", "a": "http://a"}} {
			t.Run(name, func(t *testing.T) {
				got, err := DecodeFailsafe(EncodeFailsafe(f))
				require.NoError(t, err)
				require.Equal(t, f, got)
			})
		}
		require.Equal(t, `{}`, string(EncodeFailsafe(nil)))
	})

	t.Run("§2.2 config", func(t *testing.T) {
		data := map[string]any{
			"ttl": 30, "loop_wait": json.Number("10"), "pause": true, "ratio": 0.5,
			"postgresql": map[string]any{"parameters": map[string]any{"wal_level": "replica"}},
		}
		enc := EncodeConfig(data)
		require.Equal(t, `{"loop_wait":10,"pause":true,"postgresql":{"parameters":{"wal_level":"replica"}},"ratio":0.5,"ttl":30}`, string(enc))
		c, err := DecodeConfig(enc)
		require.NoError(t, err)
		require.True(t, c.Paused())
		require.Equal(t, string(enc), string(c.Raw))
	})
}

// TestPythonJSON checks that strings and floats are written as Python's
// json.dumps writes them (spec/dcs-layout.md §2: compact JSON). The expected
// values were produced by CPython 3.
func TestPythonJSON(t *testing.T) {
	strs := []struct {
		name, in, want string
	}{
		{name: "non-ASCII and astral", in: "é😀", want: `"\u00e9\ud83d\ude00"`},
		{name: "DEL and control", in: "\x7f\x01\x1f", want: `"\u007f\u0001\u001f"`},
		{name: "slash and HTML unescaped", in: "/<>&", want: `"/<>&"`},
		{name: "short escapes", in: "\"\\\n\r\t\b\f", want: `"\"\\\n\r\t\b\f"`},
		{name: "line separator", in: "ü\u2028", want: `"\u00fc\u2028"`},
		{name: "invalid UTF-8", in: "a\xffb", want: `"a\ufffdb"`},
	}
	for _, tt := range strs {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, string(appendString(nil, tt.in)))
		})
	}
	floats := []struct {
		in   float64
		want string
	}{
		{1.0, "1.0"}, {0.5, "0.5"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {1e-5, "1e-05"},
		{0.0001, "0.0001"}, {123.456, "123.456"}, {1.5e300, "1.5e+300"}, {2.5e-7, "2.5e-07"}, {100.0, "100.0"},
	}
	for _, tt := range floats {
		t.Run("float "+tt.want, func(t *testing.T) {
			require.Equal(t, tt.want, string(appendFloat(nil, tt.in)))
		})
	}
}

// TestGarbage checks the degradation rules of spec/dcs-layout.md §1: bad
// values never fail, they degrade and report a *DecodeError naming the key.
func TestGarbage(t *testing.T) {
	t.Run("§1 member degrades to its name", func(t *testing.T) {
		for name, in := range map[string]string{
			"empty":                   ``,
			"not JSON":                `{"conn_url":`,
			"array":                   `[1,2]`,
			"null":                    `null`,
			"string":                  `"postgres"`,
			"trailing data":           `{} {}`,
			"role not a string":       `{"role":1}`,
			"tags not an object":      `{"conn_url":"c","tags":"nofailover"}`,
			"negative LSN":            `{"xlog_location":-1}`,
			"LSN not a number":        `{"xlog_location":"0/3000060"}`,
			"timeline too big":        `{"timeline":1e300}`,
			"pause not a bool":        `{"pause":"true"}`,
			"checkpoint not a bool":   `{"checkpoint_after_promote":0}`,
			"reason not an object":    `{"pending_restart_reason":[1]}`,
			"reason value an object":  `{"pending_restart_reason":{"x":{"old_value":{}}}}`,
			"scheduled not an object": `{"scheduled_restart":"now"}`,
			"timeout a bool":          `{"scheduled_restart":{"schedule":"s","timeout":true}}`,
		} {
			t.Run(name, func(t *testing.T) {
				m, err := DecodeMember("n1", []byte(in))
				require.Equal(t, &Member{Name: "n1"}, m)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, "members/n1", de.Key)
			})
		}
	})

	t.Run("§1 config degrades to an invalid {}", func(t *testing.T) {
		for name, in := range map[string]string{"empty": ``, "not JSON": `{ttl:30}`, "array": `[]`, "null": `null`, "number": `30`} {
			t.Run(name, func(t *testing.T) {
				c, err := DecodeConfig([]byte(in))
				require.Equal(t, &ClusterConfig{Raw: json.RawMessage("{}"), Data: map[string]any{}}, c)
				require.False(t, c.Valid())
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeyConfig, de.Key)
			})
		}
	})

	t.Run("§1 status degrades to zero", func(t *testing.T) {
		for name, in := range map[string]string{"empty": ``, "not JSON": `{"optime":`, "array": `[1]`, "string": `"1"`, "negative": `-5`, "null": `null`} {
			t.Run(name, func(t *testing.T) {
				s, err := DecodeStatus([]byte(in))
				require.Equal(t, Status{}, s)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeyStatus, de.Key)
			})
		}
	})

	t.Run("§2.5 status drops a bad field and keeps the rest", func(t *testing.T) {
		tests := []struct {
			name, in string
			want     Status
		}{
			{name: "bad optime", in: `{"optime":"x","retain_slots":["a"]}`, want: Status{RetainSlots: []string{"a"}}},
			{name: "bad slots", in: `{"optime":5,"slots":"{not json"}`, want: Status{LastLSN: 5}},
			{name: "bad slot value", in: `{"optime":5,"slots":{"a":"b"}}`, want: Status{LastLSN: 5}},
			{name: "bad retain_slots", in: `{"optime":5,"slots":{"a":1},"retain_slots":[1]}`, want: Status{LastLSN: 5, Slots: map[string]LSN{"a": 1}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := DecodeStatus([]byte(tt.in))
				require.Equal(t, tt.want, s)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
			})
		}
	})

	t.Run("§1 failover degrades to nil", func(t *testing.T) {
		for name, in := range map[string]string{
			"broken JSON":        `{"leader":"a"`,
			"array":              `["a","b"]`,
			"number":             `5`,
			"leader not string":  `{"leader":1,"member":"b"}`,
			"bad scheduled_at":   `{"leader":"a","scheduled_at":"tomorrow"}`,
			"scheduled_at a num": `{"leader":"a","scheduled_at":1700000000}`,
		} {
			t.Run(name, func(t *testing.T) {
				f, err := DecodeFailover([]byte(in))
				require.Nil(t, f)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeyFailover, de.Key)
			})
		}
	})

	t.Run("§1 sync degrades to nil", func(t *testing.T) {
		for name, in := range map[string]string{
			"broken JSON":         `{"leader":`,
			"array":               `[]`,
			"null":                `null`,
			"leader not a string": `{"leader":true}`,
			"quorum not a number": `{"leader":"a","quorum":"x"}`,
			"standbys an array":   `{"leader":"a","sync_standby":["b"]}`,
		} {
			t.Run(name, func(t *testing.T) {
				s, err := DecodeSync([]byte(in))
				require.Nil(t, s)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeySync, de.Key)
			})
		}
	})

	t.Run("§1 history degrades to an empty list", func(t *testing.T) {
		for name, in := range map[string]string{
			"empty":               ``,
			"broken JSON":         `[[1,2,"r"]`,
			"object":              `{}`,
			"null":                `null`,
			"line too short":      `[[1,2]]`,
			"line too long":       `[[1,2,"r","t","n","x"]]`,
			"line not an array":   `[1]`,
			"timeline a string":   `[["x",2,"r"]]`,
			"reason a number":     `[[1,2,3]]`,
			"one good, one bad":   `[[1,2,"r"],[2]]`,
			"LSN bad text":        `[[1,"zz","r"]]`,
			"LSN an object":       `[[1,{},"r"]]`,
			"leader not a string": `[[1,2,"r","t",5]]`,
		} {
			t.Run(name, func(t *testing.T) {
				h, err := DecodeHistory([]byte(in))
				require.Equal(t, &TimelineHistory{}, h)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeyHistory, de.Key)
			})
		}
	})

	t.Run("§1 failsafe degrades to nil", func(t *testing.T) {
		for name, in := range map[string]string{"empty": ``, "array": `[]`, "null": `null`, "value not a string": `{"a":1}`, "broken": `{"a":"b"`} {
			t.Run(name, func(t *testing.T) {
				f, err := DecodeFailsafe([]byte(in))
				require.Nil(t, f)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, KeyFailsafe, de.Key)
			})
		}
	})

	t.Run("DecodeError quotes a bounded value and unwraps", func(t *testing.T) {
		big := make([]byte, 10000)
		for i := range big {
			big[i] = 'x'
		}
		_, err := DecodeFailsafe(big)
		var de *DecodeError
		require.ErrorAs(t, err, &de)
		require.Less(t, len(de.Value), 300)
		require.Error(t, errors.Unwrap(err))
	})
}
