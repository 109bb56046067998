package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/hapostgres"
	"github.com/pgwarden/pgwarden/postgres"
)

func lsn(v uint64) *dcs.LSN { l := dcs.LSN(v); return &l }
func intp(v int) *int       { return &v }

func sampleCluster() *dcs.Cluster {
	leader := &dcs.Member{Name: "postgresql0", ConnURL: "postgres://127.0.0.1:5432/postgres", APIURL: "http://127.0.0.1:8008/patroni",
		State: "running", Role: "primary", Timeline: intp(5), XLogLocation: lsn(0x40004E8)}
	r1 := &dcs.Member{Name: "postgresql1", ConnURL: "postgres://127.0.0.1:5433/postgres", APIURL: "http://127.0.0.1:8009/patroni",
		State: "running", Role: "replica", Timeline: intp(5), ReplicationState: "streaming",
		XLogLocation: lsn(0x40004E8), ReceiveLSN: lsn(0x40004E8), ReplayLSN: lsn(0x40004E8)}
	r2 := &dcs.Member{Name: "postgresql2", ConnURL: "postgres://127.0.0.1:5434/postgres", APIURL: "http://127.0.0.1:8010/patroni",
		State: "running", Role: "replica", Timeline: intp(5), ReplicationState: "streaming",
		Tags: map[string]any{"nofailover": true}}
	return &dcs.Cluster{
		Initialize: &dcs.Initialize{SystemID: "7277694203142172922"},
		Leader:     &dcs.Leader{Name: "postgresql0", Member: leader},
		Status:     dcs.Status{LastLSN: 0x40004E8},
		Members:    []*dcs.Member{leader, r1, r2},
	}
}

// spec/patronictl.md §2: title with the system id, host:port when ports
// differ from 5432, Leader/Replica roles, LSNs right aligned, lag in MB,
// "unknown" for unreported LSNs, optional columns when a member has tags.
func TestClusterTablePretty(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printCluster(&b, sampleCluster(), "batman", "pretty", false))
	out := b.String()
	lines := strings.Split(out, "\n")
	require.True(t, strings.HasPrefix(lines[0], "+ Cluster: batman (7277694203142172922) -"), lines[0])
	require.Contains(t, lines[1], "| Member      | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart |")
	require.Contains(t, out, "| postgresql0 | 127.0.0.1:5432 | Leader  | running   |  5 |             |     |            |     |")
	require.Contains(t, out, "| postgresql1 | 127.0.0.1:5433 | Replica | streaming |  5 |   0/40004E8 |   0 |  0/40004E8 |   0 |")
	require.Contains(t, out, "|     unknown |     |    unknown |     |")
	require.Contains(t, out, "nofailover: true")
}

// spec/patronictl.md §2: json keeps Receive Lag/Replay Lag distinct and
// omits empty values.
func TestClusterTableJSON(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printCluster(&b, sampleCluster(), "batman", "json", false))
	var rows []map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &rows))
	require.Len(t, rows, 3)
	require.Equal(t, "Leader", rows[0]["Role"])
	require.NotContains(t, rows[0], "Receive LSN")
	require.Equal(t, "0/40004E8", rows[1]["Receive LSN"])
	require.EqualValues(t, 0, rows[1]["Receive Lag"])
	require.Equal(t, "batman", rows[1]["Cluster"])
}

// spec/patronictl.md §3.2: topology indents followers under the leader.
func TestTopology(t *testing.T) {
	cl := sampleCluster()
	cl.Members[2].Tags = map[string]any{"replicatefrom": "postgresql1"}
	var b bytes.Buffer
	require.NoError(t, printCluster(&b, cl, "batman", "topology", false))
	out := b.String()
	i0 := strings.Index(out, "| postgresql0")
	i1 := strings.Index(out, "| + postgresql1")
	i2 := strings.Index(out, "|   + postgresql2")
	require.True(t, i0 > 0 && i1 > i0 && i2 > i1, out)
}

// spec/patronictl.md §3.3: a nonexistent or nofailover candidate is refused
// before anything is sent, with patronictl's message followed by the case
// that applies.
func TestSwitchoverCandidateValidation(t *testing.T) {
	tests := []struct {
		name, candidate, want string
	}{
		{"nonexistent", "nobody", "Member nobody does not exist in cluster batman or is tagged as nofailover: " +
			"no member named nobody is registered (members: postgresql0, postgresql1, postgresql2); candidates: postgresql1"},
		{"nofailover", "postgresql2", "Member postgresql2 does not exist in cluster batman or is tagged as nofailover: " +
			"postgresql2 is tagged nofailover (or failover_priority 0), so it never becomes the leader; candidates: postgresql1"},
		{"leader", "postgresql0", "Member postgresql0 is already the leader of cluster batman"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			x := &ctl{cfg: &config.Config{Scope: "batman"}, out: &out, in: nil}
			x.h = &dcsHandle{store: fixedStore{cl: sampleCluster()}}
			err := x.switchover([]string{"--candidate", tc.candidate, "--force"}, false)
			require.EqualError(t, err, tc.want)
		})
	}
}

// spec/patronictl.md §1: --dcs-url schemes, default ports, namespace.
func TestApplyDCSURL(t *testing.T) {
	tests := []struct {
		name, url, wantErr string
		check              func(t *testing.T, c *config.Config)
	}{
		{name: "etcd default", url: "localhost", check: func(t *testing.T, c *config.Config) {
			require.Equal(t, "localhost:2379", c.Etcd3.Host)
		}},
		{name: "etcd3 with namespace", url: "etcd3://10.0.0.1:2389/ns", check: func(t *testing.T, c *config.Config) {
			require.Equal(t, "10.0.0.1:2389", c.Etcd3.Host)
			require.Equal(t, "/ns", c.Namespace)
		}},
		{name: "consul guessed from port", url: "h:8500", check: func(t *testing.T, c *config.Config) {
			require.Nil(t, c.Etcd3)
			require.Equal(t, "h:8500", c.Consul.Host)
		}},
		{name: "zookeeper", url: "zookeeper://z", check: func(t *testing.T, c *config.Config) {
			require.Equal(t, []string{"z:2181"}, c.ZooKeeper.Hosts)
		}},
		{name: "unknown scheme", url: "foo://x", wantErr: "Unknown dcs scheme: foo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &config.Config{Raft: &config.Raft{}}
			err := applyDCSURL(c, tc.url)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Nil(t, c.Raft)
			tc.check(t, c)
		})
	}
}

// spec/patronictl.md §3.10: -s dotted paths, GUC names with dots, null
// removes and prunes emptied parents, malformed pairs are refused.
func TestSetPath(t *testing.T) {
	m := map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"a": 1}}}
	require.NoError(t, setPath(m, "ttl=40", "ttl=40"))
	require.NoError(t, setPath(m, "postgresql.parameters.pg_stat_statements.max=100", ""))
	require.NoError(t, setPath(m, "postgresql.parameters.a=null", ""))
	require.Equal(t, map[string]any{"ttl": 40, "postgresql": map[string]any{"parameters": map[string]any{"pg_stat_statements.max": 100}}}, m)
	require.NoError(t, setPath(m, "postgresql.parameters.pg_stat_statements.max=null", ""))
	require.Equal(t, map[string]any{"ttl": 40}, m)
	require.EqualError(t, setPath(m, "novalue", "novalue"), "Invalid parameter setting novalue")
}

// Issue 7 acceptance: a second daemon on the same data directory is
// refused.
func TestLockDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f, err := lockDataDir(dir)
	require.NoError(t, err)
	_, err = lockDataDir(dir)
	require.ErrorContains(t, err, "in use by another daemon")
	require.NoError(t, f.Close())
	f, err = lockDataDir(dir)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// Issue 7 acceptance: a missing file and bad YAML give a clear error (with
// the line number for YAML).
func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("scope: x\nname: a\nrestapi:\n  listen: [1\n"), 0o600))
	tests := []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "none.yml"), "no such file"},
		{"bad yaml", bad, "line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadConfig(tc.path)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.Equal(t, 1, run([]string{filepath.Join(dir, "none.yml")}))
}

// TestStartupWarningsOnce checks that a ttl or retry_timeout below
// Patroni's documented minimum (accepted, spec/config.md §2) is logged once
// at startup: config.Load reports bootstrap.dcs with its line, and the
// settings the daemon derives from the same section, then from the DCS's
// copy of it, say the same again. A different value in the DCS is news and
// is logged.
func TestStartupWarningsOnce(t *testing.T) {
	dir := t.TempDir()
	path := writeNodeConfig(t, dir, "bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 1\n    retry_timeout: 2\n")
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	count := func(s string) int { return strings.Count(out.String(), s) }

	// What runDaemon does up to the DCS, which is not reached: ctx is
	// already cancelled.
	wl := newWarnLog(log)
	c, warns, err := loadConfig(path)
	require.NoError(t, err)
	wl.warn("config", warns)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, serveDaemon(ctx, cancel, path, c, log, wl), context.Canceled)
	require.Equal(t, 1, count("10 is below Patroni's documented minimum 20"), out.String())
	require.Equal(t, 1, count("2 is below Patroni's documented minimum 3"), out.String())
	require.Contains(t, out.String(), "line 10: bootstrap.dcs.ttl", "the first report names the file's line")

	// The DCS holds the same: nothing new.
	same, err := config.ParseDynamic([]byte(`{"ttl":10,"loop_wait":1,"retry_timeout":2}`))
	require.NoError(t, err)
	dynamicSettings(same, wl)
	require.Equal(t, 1, count("10 is below Patroni's documented minimum 20"), out.String())
	require.Equal(t, 1, count("2 is below Patroni's documented minimum 3"), out.String())

	// The DCS holds another ttl: logged.
	other, err := config.ParseDynamic([]byte(`{"ttl":8,"loop_wait":1,"retry_timeout":2}`))
	require.NoError(t, err)
	require.Equal(t, 8, dynamicSettings(other, wl).TTL)
	require.Equal(t, 1, count("8 is below Patroni's documented minimum 20"), out.String())
	require.Equal(t, 1, count("2 is below Patroni's documented minimum 3"), out.String())
}

// TestApplyConfigWithWarnings checks spec/config.md §2-§3: a dynamic
// configuration that carries a warning (ttl below Patroni's documented
// minimum) still has its standby_cluster section applied; the warnings
// were once read as an error and the section skipped.
func TestApplyConfigWithWarnings(t *testing.T) {
	dir := t.TempDir()
	path := writeNodeConfig(t, dir, "")
	c, _, err := loadConfig(path)
	require.NoError(t, err)
	m, err := postgres.New(postgres.Config{Name: "n1", Scope: "t", DataDir: filepath.Join(dir, "data"), Port: 15999,
		Superuser: postgres.User{Username: "postgres"}, Replication: postgres.User{Username: "rep"}})
	require.NoError(t, err)
	d := &daemon{log: nullLogger(), pg: m, pga: hapostgres.New(m, hapostgres.Options{Name: "n1"})}
	d.cfg.Store(c)
	raw := []byte(`{"ttl":10,"loop_wait":1,"retry_timeout":2,"standby_cluster":{"host":"10.0.0.9","port":5432,"primary_slot_name":"standby"}}`)
	d.applyConfig(t.Context(), &dcs.Cluster{Config: &dcs.ClusterConfig{Raw: raw}})
	up, err := d.pga.UpstreamOf(&dcs.Member{Name: ha.RemoteName, ConnURL: "postgres://10.0.0.9:5432/postgres"})
	require.NoError(t, err)
	require.Equal(t, "standby", up.Slot, "standby_cluster applied")
	require.Equal(t, raw, d.lastRaw)
}

// Issue 7: readiness under systemd (Type=notify) is one datagram on
// NOTIFY_SOCKET; without the variable nothing is sent.
func TestSDNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	require.NoError(t, sdNotify("READY=1"))

	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	t.Setenv("NOTIFY_SOCKET", path)
	require.NoError(t, sdNotify("READY=1"))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "READY=1", string(buf[:n]))
}

// spec/ha-loop.md §16: timeout ttl − safety_margin (−1: ttl/2), modes,
// and a missing device is not usable.
func TestWatchdogConfig(t *testing.T) {
	s := config.Settings{TTL: 30, LoopWait: 10}
	margin := -1
	tests := []struct {
		name    string
		c       *config.Watchdog
		mode    string
		timeout int
	}{
		{name: "absent section is automatic", c: nil, mode: "automatic", timeout: 25},
		{name: "off", c: &config.Watchdog{Mode: "off"}, mode: "off"},
		{name: "required with half ttl", c: &config.Watchdog{Mode: "required", SafetyMargin: &margin}, mode: "required", timeout: 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, mode := newWatchdog(tc.c, s, nullLogger())
			require.Equal(t, tc.mode, mode.String())
			if tc.mode == "off" {
				require.Nil(t, w)
				return
			}
			require.Equal(t, tc.timeout, w.timeout)
		})
	}
	w, _ := newWatchdog(&config.Watchdog{Mode: "required", Device: filepath.Join(t.TempDir(), "none")}, s, nullLogger())
	require.False(t, w.Usable())
	require.Error(t, w.Arm(25*time.Second))
	require.NoError(t, w.Arm(0), "a keepalive never activates")
	require.NoError(t, w.Disarm())
}

// TestWatchdogKeepalive checks spec/ha-loop.md §16 on the device side,
// with a plain file standing in for /dev/watchdog (its ioctls fail, so
// every keepalive is a written byte): an armed device is fed on every
// Arm, also when the loop passes a timeout below the loop_wait of startup
// (the loop checked it against the current one) and when it passes 0
// because ttl − safety_margin no longer suits loop_wait (the device keeps
// its timeout, as Patroni's keepalive does). Arm(0) never activates.
func TestWatchdogKeepalive(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	require.NoError(t, os.WriteFile(dev, nil, 0o600))
	written := func() int {
		st, err := os.Stat(dev)
		require.NoError(t, err)
		return int(st.Size())
	}
	w, mode := newWatchdog(&config.Watchdog{Device: dev}, config.Settings{TTL: 30, LoopWait: 10}, nullLogger())
	require.Equal(t, ha.WatchdogAutomatic, mode)
	require.True(t, w.Usable())

	require.NoError(t, w.Arm(0))
	require.Nil(t, w.f, "a keepalive never activates")
	require.Zero(t, written())

	require.NoError(t, w.Arm(25*time.Second))
	require.NotNil(t, w.f, "activated")
	require.Equal(t, 1, written(), "activation sends a keepalive")

	// ttl 12, loop_wait 2 since: timeout 7 is below the startup loop_wait.
	require.NoError(t, w.Arm(7*time.Second))
	require.Equal(t, 7, w.timeout)
	require.Equal(t, 2, written(), "fed")

	// ttl 5 since: 0 s is no timeout; keep 7 and feed.
	require.NoError(t, w.Arm(0))
	require.Equal(t, 7, w.timeout)
	require.Equal(t, 3, written(), "fed")

	require.NoError(t, w.Disarm())
	b, err := os.ReadFile(dev)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 'V'}, b, "disarmed with the magic character")
}

// spec/patronictl.md §3.10: edit-config shows a unified diff of the YAML,
// removed lines before added ones.
func TestUnifiedDiff(t *testing.T) {
	got := unifiedDiff("a: 1\nttl: 20\n", "a: 1\nb: 2\nttl: 25\n")
	require.Equal(t, "--- \n+++ \n a: 1\n-ttl: 20\n+b: 2\n+ttl: 25\n", got)
}

// writeNodeConfig writes the configuration of node n1 of scope t into dir,
// with bootstrap (a YAML section, may be "") after the etcd3 section, and
// returns its path. Its DCS (port 1) never answers.
func writeNodeConfig(t *testing.T, dir, bootstrap string) string {
	t.Helper()
	path := filepath.Join(dir, "n1.yml")
	require.NoError(t, os.WriteFile(path, []byte(`scope: t
name: n1
restapi:
  listen: 127.0.0.1:18999
  connect_address: 127.0.0.1:18999
etcd3:
  hosts: 127.0.0.1:1
`+bootstrap+`postgresql:
  listen: 127.0.0.1:15999
  connect_address: 127.0.0.1:15999
  data_dir: `+filepath.Join(dir, "data")+`
  authentication:
    superuser: {username: postgres, password: x}
    replication: {username: rep, password: x}
`), 0o600))
	return path
}
