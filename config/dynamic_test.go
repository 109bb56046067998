package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// spec/config.md §1: the dynamic config round-trips with the user's key
// order, compact like Patroni writes it.
func TestDynamicJSONKeepsOrder(t *testing.T) {
	in := `{"loop_wait":10,"ttl":30,"postgresql":{"parameters":{"work_mem":"4MB","max_connections":100}},"pause":true,"x":[1,2.5,null,"s"]}`
	d, err := ParseDynamic([]byte(in))
	require.NoError(t, err)
	require.Equal(t, in, string(d.JSON()))

	for _, bad := range []string{``, `[]`, `1`, `{"a":1} {}`, `{"a":}`} {
		_, err := ParseDynamic([]byte(bad))
		require.Error(t, err, bad)
	}
}

// spec/rest-api.md §6 PATCH /config: null deletes, objects merge, scalars
// replace when their string forms differ.
func TestDynamicPatch(t *testing.T) {
	base := `{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"4MB","max_connections":100},"use_slots":true},"pause":true}`
	for _, tc := range []struct {
		name    string
		patch   string
		want    string
		changed bool
	}{
		{name: "nothing", patch: `{}`, want: base},
		{name: "same value", patch: `{"ttl":30,"postgresql":{"use_slots":true}}`, want: base},
		{name: "replace scalar", patch: `{"ttl":60}`, changed: true,
			want: `{"ttl":60,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"4MB","max_connections":100},"use_slots":true},"pause":true}`},
		{name: "string vs number same text", patch: `{"ttl":"30"}`, want: base},
		{name: "null deletes nested", patch: `{"postgresql":{"parameters":{"work_mem":null}},"pause":null}`, changed: true,
			want: `{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"max_connections":100},"use_slots":true}}`},
		{name: "new keys appended", patch: `{"synchronous_mode":"quorum","slots":{"s1":{"type":"physical","x":null}}}`, changed: true,
			want: `{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"4MB","max_connections":100},"use_slots":true},"pause":true,"synchronous_mode":"quorum","slots":{"s1":{"type":"physical"}}}`},
		{name: "delete absent key", patch: `{"nope":null}`, want: base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDynamic([]byte(base))
			require.NoError(t, err)
			out, changed, err := d.Patch([]byte(tc.patch))
			require.NoError(t, err)
			require.Equal(t, tc.changed, changed)
			require.Equal(t, tc.want, string(out.JSON()))
			require.Equal(t, base, string(d.JSON()), "Patch must not modify its receiver")
		})
	}
}

// spec/config.md §2 timeout sanity, except that values below Patroni's
// documented minimums (ttl 20, retry_timeout 3) are kept with a warning, as
// Patroni 3.0.2 runs with them; only values that cannot work are raised.
func TestSanitizeTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want [3]int
		warnings int
	}{
		{name: "defaults", in: [3]int{30, 10, 10}, want: [3]int{30, 10, 10}},
		{name: "anchor aggressive profile kept", in: [3]int{10, 1, 4}, want: [3]int{10, 1, 4}, warnings: 1},
		{name: "anchor floor profile kept", in: [3]int{5, 1, 2}, want: [3]int{5, 1, 2}, warnings: 2},
		{name: "unusable values raised", in: [3]int{0, 0, 0}, want: [3]int{3, 1, 1}, warnings: 5},
		{name: "negative ttl raised then rule", in: [3]int{-5, 1, 4}, want: [3]int{3, 1, 1}, warnings: 4},
		{name: "loop_wait shrinks", in: [3]int{30, 15, 10}, want: [3]int{30, 10, 10}, warnings: 1},
		{name: "retry_timeout shrinks", in: [3]int{20, 10, 10}, want: [3]int{20, 1, 9}, warnings: 1},
		{name: "exact fit", in: [3]int{40, 20, 10}, want: [3]int{40, 20, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, lw, rt, w := SanitizeTimeouts(tc.in[0], tc.in[1], tc.in[2])
			require.Equal(t, tc.want, [3]int{ttl, lw, rt})
			require.Len(t, w, tc.warnings)
			require.LessOrEqual(t, lw+2*rt, ttl, "a primary must demote before its key expires")
		})
	}
}

// spec/config.md §3: defaults, aliases, units, lenient decoding.
func TestDynamicSettings(t *testing.T) {
	d, err := ParseDynamic([]byte(`{"master_start_timeout":60,"member_slots_ttl":"1h","synchronous_mode":"on",
		"synchronous_node_count":0,"maximum_lag_on_failover":"16MB","permanent_slots":{"a":null},"slots":{"b":{"type":"logical"}},
		"pause":"yes","ttl":"abc","postgresql":{"use_slots":false}}`))
	require.NoError(t, err)
	s, w := d.Settings()
	require.Len(t, w, 1) // ttl
	require.Equal(t, "ttl", w[0].Path)
	require.Equal(t, 30, s.TTL)
	require.Equal(t, 60, s.PrimaryStartTimeout)
	require.Equal(t, 3600, s.MemberSlotsTTL)
	require.Equal(t, SyncOn, s.SynchronousMode)
	require.Equal(t, 1, s.SynchronousNodeCount)
	require.Equal(t, int64(16<<20), s.MaximumLagOnFailover)
	require.Equal(t, map[string]Slot{"a": {Type: "physical"}}, s.Slots)
	require.True(t, s.Pause)
	require.False(t, s.UseSlots)

	s, w = NewDynamic().Settings()
	require.Empty(t, w)
	require.Equal(t, Settings{TTL: 30, LoopWait: 10, RetryTimeout: 10, MaximumLagOnFailover: 1048576,
		MaximumLagOnSyncnode: -1, PrimaryStartTimeout: 300, SynchronousMode: SyncOff, SynchronousNodeCount: 1,
		MemberSlotsTTL: 1800, UseSlots: true, Slots: map[string]Slot{}}, s)
}

// spec/config.md §3, §5: a diff tells reload from restart.
func TestDiff(t *testing.T) {
	a, err := ParseDynamic([]byte(`{"ttl":30,"postgresql":{"parameters":{"work_mem":"4MB","shared_buffers":"128MB","max_connections":100}}}`))
	require.NoError(t, err)
	b, err := ParseDynamic([]byte(`{"ttl":40,"postgresql":{"parameters":{"work_mem":"8MB","shared_buffers":"256MB","max_connections":100,"wal_level":"logical"}}}`))
	require.NoError(t, err)
	require.Equal(t, []Change{
		{Path: "postgresql.parameters.shared_buffers", Old: "128MB", New: "256MB", Restart: true},
		{Path: "postgresql.parameters.wal_level", Old: "", New: "logical", Restart: true},
		{Path: "postgresql.parameters.work_mem", Old: "4MB", New: "8MB"},
		{Path: "ttl", Old: "30", New: "40"},
	}, Diff(a, b))
	require.Empty(t, Diff(a, a))
}

// spec/config.md §2: merge precedence of local and dynamic configuration.
func TestEffective(t *testing.T) {
	local, _, err := Parse([]byte(minimal + `
ttl: 99
etcd3: {host: 'h:2379'}
postgresql:
  use_slots: false
  pg_ctl_timeout: 30
  parameters:
    max_connections: 500
    work_mem: 16MB
    port: 1
watchdog: {mode: off}
citus: {group: 1}
`))
	require.NoError(t, err)
	dyn, err := ParseDynamic([]byte(`{"ttl":25,"loop_wait":10,"retry_timeout":10,"pause":true,
		"postgresql":{"use_slots":false,"pg_ctl_timeout":90,"data_dir":"/evil","parameters":{"max_connections":"300","max_wal_senders":1,"work_mem":"1MB","shared_buffers":"1GB"}},
		"standby_cluster":{"host":"remote","unknown":1}}`))
	require.NoError(t, err)
	eff, warns := Effective(local, dyn)
	require.Equal(t, 25, *eff.TTL, "ttl comes from the dynamic config")
	require.Equal(t, 5, *eff.LoopWait, "timeout sanity applied")
	require.Equal(t, "/tmp/pg", eff.PostgreSQL.DataDir, "local-only keys are never dynamic")
	require.Equal(t, Seconds(30), *eff.PostgreSQL.PgCtlTimeout, "local wins for other postgresql keys")
	require.False(t, *eff.PostgreSQL.UseSlots, "use_slots is global")
	p := eff.PostgreSQL.Parameters
	require.EqualValues(t, 300, toInt64(p["max_connections"]), "protected parameters are dynamic only")
	require.EqualValues(t, 10, toInt64(p["max_wal_senders"]), "invalid protected value keeps the default")
	require.Equal(t, "16MB", p["work_mem"], "local wins for ordinary parameters")
	require.Equal(t, "1GB", p["shared_buffers"])
	require.NotContains(t, p, "port")
	require.Equal(t, "remote", eff.StandbyCluster["host"])
	require.NotContains(t, eff.StandbyCluster, "unknown")
	require.Equal(t, "off", eff.Watchdog.Mode)
	require.Nil(t, eff.Citus)
	require.NotEmpty(t, warns)

	eff, _ = Effective(local, nil)
	require.Equal(t, 30, *eff.TTL, "local ttl is ignored")
	require.Equal(t, "hot_standby", eff.PostgreSQL.Parameters["wal_level"])
}

func toInt64(v any) int64 {
	n, _ := v.(json.Number).Int64()
	return n
}

func TestParseUnits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{{"1048576", 1048576, true}, {"16MB", 16 << 20, true}, {"1kB", 1024, true}, {"2 GB", 2 << 30, true},
		{"x", 0, false}, {"10XB", 0, false}, {"", 0, false}} {
		t.Run(tc.in, func(t *testing.T) {
			v, ok := ParseBytes(tc.in)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, v)
		})
	}
	s, ok := ParseSeconds("30min")
	require.True(t, ok)
	require.Equal(t, 1800.0, s)
}

// spec/config.md §2: role-specific overrides and the Citus default.
func TestRoleOverridesAndCitus(t *testing.T) {
	cfg, _, err := Parse([]byte(minimal + `
citus: {group: 0, database: citus}
bootstrap: {dcs: {ttl: 30}}
postgresql:
  parameters: {work_mem: 4MB, max_connections: 100}
  parameters_replica: {work_mem: 64MB, max_connections: 500}
  pg_hba: [host all all all md5]
  pg_hba_primary: [host all all 10.0.0.0/8 md5]
`))
	require.NoError(t, err)
	p := cfg.RoleParameters("demoted")
	require.Equal(t, "64MB", p["work_mem"])
	require.EqualValues(t, "100", toText(p["max_connections"]), "protected parameters are not overridden per role")
	require.Equal(t, "4MB", cfg.RoleParameters("primary")["work_mem"])
	require.Equal(t, []string{"host all all 10.0.0.0/8 md5"}, cfg.RoleHBA("promoted"))
	require.Equal(t, []string{"host all all all md5"}, cfg.RoleHBA("replica"))
	require.Equal(t, `{"ttl":30,"synchronous_mode":"quorum"}`, string(cfg.BootstrapDynamic().JSON()))
	require.Equal(t, `{"ttl":30}`, string(cfg.Bootstrap.DCS.JSON()))
}

func toText(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return ""
}

// spec/config.md §1 cache file.
func TestCacheFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o750))
	d, err := LoadCache(dir)
	require.NoError(t, err)
	require.Nil(t, d)
	in, err := ParseDynamic([]byte(`{"ttl":30,"b":1,"a":2}`))
	require.NoError(t, err)
	require.NoError(t, SaveCache(dir, in))
	require.NoError(t, SaveCache(dir, in))
	st, err := os.Stat(filepath.Join(dir, CacheFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	out, err := LoadCache(dir)
	require.NoError(t, err)
	require.Equal(t, `{"ttl":30,"b":1,"a":2}`, string(out.JSON()))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temp file left behind")
	require.NoError(t, os.WriteFile(filepath.Join(dir, CacheFile), []byte("nope"), 0o600))
	_, err = LoadCache(dir)
	require.Error(t, err)
}
