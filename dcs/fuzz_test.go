package dcs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fuzz targets check, for every decoder, the degradation rules of
// spec/dcs-layout.md §1 (never panic, bad data degrades and reports a
// *DecodeError) and that whatever decodes cleanly re-encodes to JSON that
// decodes to the same value and encodes to the same bytes (a fixed point).
// Seeds are the spec examples, the legacy forms and some garbage; crashers
// found by `go test -fuzz` are kept in testdata/fuzz.

func seedFiles(f *testing.F, files ...string) {
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
		require.NoError(f, err)
		f.Add(data)
	}
}

func seedStrings(f *testing.F, values ...string) {
	for _, v := range values {
		f.Add([]byte(v))
	}
}

func requireDecodeError(t *testing.T, err error) {
	t.Helper()
	var de *DecodeError
	require.ErrorAs(t, err, &de)
}

func FuzzDecodeMember(f *testing.F) {
	seedFiles(f, "member-primary.json", "member-replica.json")
	seedStrings(f,
		`postgres://u:p@h:5432/postgres?application_name=http%3A%2F%2Fh%3A8008%2Fpatroni#frag`,
		`{"role":"master","xlog_location":1.5e3,"timeline":"3","tags":{"a":[1,{"b":null}]}}`,
		`{"conn_url":"c","api_url":"a","state":"s","role":"r","version":"v","proxy_url":"p","checkpoint_after_promote":false,"pending_restart":true,"pending_restart_reason":{"x":{"old_value":"1","new_value":2}},"scheduled_restart":{"schedule":"2024-01-01T00:00:00+00:00","postmaster_start_time":"t","role":"replica","postgres_version":"15","restart_pending":1,"timeout":30},"pause":true}`,
		`{"state":"\u00e9\ud83d\ude00\u0000"}`, ``, `null`, `[]`, `{"tags":"x"}`,
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMember("n", data)
		require.NotNil(t, m)
		if err != nil {
			requireDecodeError(t, err)
			require.Equal(t, &Member{Name: "n"}, m)
			return
		}
		enc := EncodeMember(m)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeMember("n", enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, m, again)
		require.Equal(t, string(enc), string(EncodeMember(again)))
	})
}

func FuzzDecodeStatus(f *testing.F) {
	seedFiles(f, "status.json")
	seedStrings(f, `67108960`, `{"optime":"5","slots":"{\"a\":1}","retain_slots":"[\"a\"]"}`,
		`{"optime":1e3,"slots":{"a":"x"}}`, `{"slots":null}`, ``, `"1"`, `-1`, `1.5`)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeStatus(data)
		if err != nil {
			requireDecodeError(t, err)
		}
		// Even a partly decoded status is a valid model.
		enc := EncodeStatus(&s)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeStatus(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, s, again)
		require.Equal(t, string(enc), string(EncodeStatus(&again)))
	})
}

func FuzzDecodeFailover(f *testing.F) {
	seedFiles(f, "failover.json")
	seedStrings(f, `a:b`, `:b`, `a`, `:`, `{}`, ``, `{"member":"b","scheduled_at":"2024-05-01 10:00:00.1234567Z"}`,
		`{"leader":"a","scheduled_at":"2024-05-01T10:00+0530"}`, `{"leader":1}`, `[`, `5`)
	f.Fuzz(func(t *testing.T, data []byte) {
		fo, err := DecodeFailover(data)
		if err != nil {
			requireDecodeError(t, err)
			require.Nil(t, fo)
			return
		}
		enc := EncodeFailover(fo)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeFailover(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, fo, again)
		require.Equal(t, string(enc), string(EncodeFailover(again)))
	})
}

func FuzzDecodeSync(f *testing.F) {
	seedFiles(f, "sync-on.json", "sync-quorum.json")
	seedStrings(f, `{"leader":"a","quorum":"2","sync_standby":" c,,b "}`, `{"leader":"a","sync_standby":null}`,
		`{}`, `{"leader":null}`, ``, `null`, `{"leader":"a","quorum":1e400}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSync(data)
		if err != nil {
			requireDecodeError(t, err)
			require.Nil(t, s)
			return
		}
		enc := EncodeSync(s)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeSync(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, s, again)
		require.Equal(t, string(enc), string(EncodeSync(again)))
		if s != nil {
			require.True(t, slices.IsSorted(s.Standbys))
		}
	})
}

func FuzzDecodeHistory(f *testing.F) {
	seedFiles(f, "history.json")
	seedStrings(f, `[]`, `[[1,25623960,"no recovery target specified"]]`, `[[1,"0/186FD98","r","t"]]`,
		`[[1,100,"r",null,"n"]]`, `[[1.0,1e2,"r"]]`, `[[1,2]]`, ``, `null`, `{}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHistory(data)
		require.NotNil(t, h)
		if err != nil {
			requireDecodeError(t, err)
			require.Equal(t, &TimelineHistory{}, h)
			return
		}
		enc := EncodeHistory(h)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeHistory(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, h, again)
		require.Equal(t, string(enc), string(EncodeHistory(again)))
	})
}

func FuzzDecodeFailsafe(f *testing.F) {
	seedFiles(f, "failsafe.json")
	seedStrings(f, `{}`, `{"a":"\u00e9"}`, `{"a":1}`, ``, `null`)
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := DecodeFailsafe(data)
		if err != nil {
			requireDecodeError(t, err)
			require.Nil(t, fs)
			return
		}
		require.NotNil(t, fs)
		enc := EncodeFailsafe(fs)
		require.True(t, json.Valid(enc), "invalid JSON %q", enc)
		again, err := DecodeFailsafe(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, fs, again)
		require.Equal(t, string(enc), string(EncodeFailsafe(again)))
	})
}

func FuzzDecodeConfig(f *testing.F) {
	seedFiles(f, "config.json")
	seedStrings(f, `{}`, `{"pause":true,"x":[1.0,-0,1e400,"\u00e9"],"y":{"z":null}}`, ` { "a" : 1 } `, ``, `[]`, `null`)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeConfig(data)
		require.NotNil(t, c)
		require.Empty(t, c.Version)
		if err != nil {
			requireDecodeError(t, err)
			require.Equal(t, &ClusterConfig{Raw: json.RawMessage("{}"), Data: map[string]any{}}, c)
			return
		}
		// Raw is the same object, compact.
		fromRaw, err := DecodeConfig(c.Raw)
		require.NoError(t, err)
		require.Equal(t, c, fromRaw)
		// EncodeConfig writes the same data.
		enc := EncodeConfig(c.Data)
		again, err := DecodeConfig(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, c.Data, again.Data)
		require.Equal(t, string(enc), string(EncodeConfig(again.Data)))
	})
}

// reencode writes a snapshot back as entries, with the encoders.
func reencode(c *Cluster) []Entry {
	var es []Entry
	if c.Initialize != nil {
		es = append(es, Entry{Key: KeyInitialize, Value: []byte(c.Initialize.SystemID), Version: c.Initialize.Version})
	}
	if c.Config != nil {
		es = append(es, Entry{Key: KeyConfig, Value: c.Config.Raw, Version: c.Config.Version})
	}
	if c.Leader != nil {
		es = append(es, Entry{Key: KeyLeader, Value: []byte(c.Leader.Name), Version: c.Leader.Version, Session: c.Leader.Session})
	}
	for _, m := range c.Members {
		es = append(es, Entry{Key: KeyMembers + m.Name, Value: EncodeMember(m), Version: m.Version, Session: m.Session})
	}
	if !reflect.DeepEqual(c.Status, Status{}) {
		es = append(es, Entry{Key: KeyStatus, Value: EncodeStatus(&c.Status), Version: c.Status.Version})
	}
	if c.History != nil {
		es = append(es, Entry{Key: KeyHistory, Value: EncodeHistory(c.History), Version: c.History.Version})
	}
	if c.Failover != nil {
		es = append(es, Entry{Key: KeyFailover, Value: EncodeFailover(c.Failover), Version: c.Failover.Version})
	}
	if c.Sync != nil {
		es = append(es, Entry{Key: KeySync, Value: EncodeSync(c.Sync), Version: c.Sync.Version})
	}
	if c.Failsafe != nil {
		es = append(es, Entry{Key: KeyFailsafe, Value: EncodeFailsafe(c.Failsafe)})
	}
	return es
}

func FuzzBuildCluster(f *testing.F) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
		require.NoError(f, err)
		return data
	}
	f.Add("leader", read("leader.txt"), "members/postgresql0", read("member-primary.json"), "members/postgresql1", read("member-replica.json"))
	f.Add("config", read("config.json"), "status", read("status.json"), "history", read("history.json"))
	f.Add("failover", read("failover.json"), "sync", read("sync-quorum.json"), "failsafe", read("failsafe.json"))
	f.Add("initialize", read("initialize.txt"), "optime/leader", []byte("42"), "leader", []byte("ghost"))
	f.Add("members/a", []byte("postgres://h/db?application_name=x"), "failover", []byte("a:b"), "status", []byte("7"))
	f.Add("members/b", []byte("{oops"), "leader", []byte("b"), "members/b", []byte(`{"role":"master"}`))
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, k2 string, v2 []byte, k3 string, v3 []byte) {
		entries := []Entry{
			{Key: k1, Value: v1, Version: "1", Session: "s1"},
			{Key: k2, Value: v2, Version: "2"},
			{Key: k3, Value: v3, Version: "3", Session: "s3"},
		}
		c := BuildCluster(entries)
		for _, p := range c.Problems {
			requireDecodeError(t, p)
		}
		require.True(t, slices.IsSortedFunc(c.Members, func(a, b *Member) int {
			if a.Name < b.Name {
				return -1
			}
			if a.Name > b.Name {
				return 1
			}
			t.Fatalf("duplicate member %q", a.Name)
			return 0
		}))
		if c.Leader != nil {
			require.NotEmpty(t, c.Leader.Name)
			require.NotNil(t, c.Leader.Member)
			require.Equal(t, c.Leader.Name, c.Leader.Member.Name)
			if m := c.Member(c.Leader.Name); m != nil {
				require.Same(t, m, c.Leader.Member)
			}
		}
		require.Equal(t, c, BuildCluster(entries), "BuildCluster is deterministic")
		if len(c.Problems) > 0 {
			return
		}
		again := BuildCluster(reencode(c))
		require.Empty(t, again.Problems)
		require.Equal(t, c, again)
	})
}
