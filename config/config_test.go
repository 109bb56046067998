package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fieldErrors returns the *FieldError values joined in err.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	for _, e := range unwrapJoin(err) {
		fe, ok := errors.AsType[*FieldError](e)
		require.True(t, ok, "not a FieldError: %v", e)
		out = append(out, fe)
	}
	return out
}

func paths(fes []*FieldError) []string {
	var out []string
	for _, fe := range fes {
		out = append(out, fe.Path)
	}
	return out
}

// spec/config.md §4: the sample configurations load and validate.
func TestLoadSampleConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		dcs  string
	}{
		{name: "etcd3", file: "testdata/postgres0.yml", dcs: "etcd3"},
		{name: "raft served by embedded etcd", file: "testdata/postgres1-raft.yml", dcs: "raft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warns, err := Load(tc.file, []string{})
			require.NoError(t, err)
			require.Empty(t, warns)
			require.NoError(t, cfg.Validate())
			require.Equal(t, tc.dcs, cfg.DCS())
			require.Equal(t, "batman", cfg.Scope)
			require.Equal(t, "postgresql0", cfg.Name)
			require.Equal(t, "data/postgresql0", cfg.PostgreSQL.DataDir)
			require.Equal(t, "replicator", cfg.PostgreSQL.Authentication.Replication.Username)
			require.Equal(t, 1, cfg.Tags.FailoverPriority())
			require.False(t, cfg.Tags.NoFailover())
			st, w := cfg.Bootstrap.DCS.Settings()
			require.Empty(t, w)
			require.Equal(t, 30, st.TTL)
			require.True(t, st.UsePgRewind)
			require.Equal(t, Slot{Type: "logical", Database: "postgres", Plugin: "test_decoding"}, st.Slots["logical_1"])
			// The bootstrap.dcs section is stored as compact JSON, keys in the order written.
			require.True(t, strings.HasPrefix(string(cfg.Bootstrap.DCS.JSON()),
				`{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"pg_hba":["host replication`))
			d := cfg.WithDefaults()
			require.Equal(t, "automatic", d.Watchdog.Mode)
			require.Equal(t, "postgres", d.PostgreSQL.Database)
			require.Equal(t, Seconds(60), *d.PostgreSQL.PgCtlTimeout)
			require.Equal(t, []string{"basebackup"}, d.PostgreSQL.CreateReplicaMethods)
			require.Equal(t, "none", d.RestAPI.VerifyClient)
			require.Empty(t, cfg.RestAPI.VerifyClient, "WithDefaults must not modify its receiver")
		})
	}
}

const minimal = `
name: n1
scope: demo
restapi: {listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /tmp/pg
  authentication:
    superuser: {username: postgres, password: x}
    replication: {username: rep, password: y}
`

// spec/config.md §4, §6: every problem is reported with key, value and what
// is allowed, all at once.
func TestBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		yaml     string
		loadErr  []string // paths of decode errors
		validate []string // paths of validation errors
		contains string   // part of the message a user acts on
	}{
		{
			name:     "wrong types",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nrestapi: {listen: 1, connect_address: [a], request_queue_size: many}\ntags: {nofailover: maybe}\n",
			loadErr:  []string{"restapi.connect_address", "restapi.request_queue_size", "tags.nofailover"},
			contains: "must be an integer",
		},
		{
			name:     "negative ttl",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nbootstrap: {dcs: {ttl: -5}}\n",
			validate: []string{"bootstrap.dcs.ttl"},
			contains: "must be an integer >= 3",
		},
		{
			name:     "zero ttl, loop_wait and retry_timeout",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nbootstrap: {dcs: {ttl: 0, loop_wait: 0, retry_timeout: 0}}\n",
			validate: []string{"bootstrap.dcs.ttl", "bootstrap.dcs.loop_wait", "bootstrap.dcs.retry_timeout"},
			contains: "bootstrap.dcs.loop_wait 0 must be an integer >= 1",
		},
		{
			name:     "ttl 5 with retry_timeout 4 breaks the rule",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nbootstrap: {dcs: {ttl: 5, loop_wait: 1, retry_timeout: 4}}\n",
			validate: []string{"bootstrap.dcs.ttl"},
			contains: "must be >= loop_wait + 2*retry_timeout (1 + 2*4 = 9), so that a primary demotes before its leader key expires",
		},
		{
			name:     "loop_wait + 2*retry_timeout > ttl",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nbootstrap: {dcs: {ttl: 30, loop_wait: 15, retry_timeout: 10}}\n",
			validate: []string{"bootstrap.dcs.ttl"},
			contains: "must be >= loop_wait + 2*retry_timeout (15 + 2*10 = 35)",
		},
		{
			name:     "unknown DCS section",
			yaml:     minimal + "etcd4: {host: 'h:2379'}\n",
			validate: []string{"dcs"},
			contains: "unknown section etcd4 is not a DCS",
		},
		{
			name:     "two DCS sections",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nzookeeper: {hosts: ['z:2181']}\n",
			validate: []string{"zookeeper"},
			contains: "several DCS sections (etcd3, zookeeper): keep exactly one",
		},
		{
			name:     "missing postgresql.data_dir",
			yaml:     strings.Replace(minimal, "  data_dir: /tmp/pg\n", "", 1) + "etcd3: {host: 'h:2379'}\n",
			validate: []string{"postgresql.data_dir"},
			contains: "postgresql.data_dir  is not defined.",
		},
		{
			name:     "bad enums and conflicting tags",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nrestapi: {listen: 'a:1', connect_address: 'a:1', verify_client: always}\ntags: {nofailover: true, failover_priority: 2}\n",
			validate: []string{"restapi.verify_client", "restapi.verify_client", "tags.failover_priority"},
			contains: "must be one of none, optional, required",
		},
		{
			name:     "forbidden initdb option",
			yaml:     minimal + "etcd3: {host: 'h:2379'}\nbootstrap: {initdb: [data-checksums, {pgdata: /x}]}\n",
			validate: []string{"bootstrap.initdb"},
			contains: "is set by pgwarden itself",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(tc.yaml))
			var all []*FieldError
			if tc.loadErr != nil {
				require.Error(t, err)
				fes := fieldErrors(t, err)
				require.Equal(t, tc.loadErr, paths(fes))
				for _, fe := range fes {
					require.NotZero(t, fe.Line, "decode errors carry the YAML line: %v", fe)
				}
				all = fes
			} else {
				require.NoError(t, err)
				verr := cfg.Validate()
				require.Error(t, verr)
				all = fieldErrors(t, verr)
				require.Equal(t, tc.validate, paths(all))
			}
			var msgs []string
			for _, fe := range all {
				msgs = append(msgs, fe.Error())
			}
			require.Contains(t, strings.Join(msgs, "\n"), tc.contains)
		})
	}
}

// spec/config.md §6: a config with nothing reports every required key.
func TestValidateReportsAllMissing(t *testing.T) {
	cfg, _, err := Parse([]byte("{}"))
	require.NoError(t, err)
	fes := fieldErrors(t, cfg.Validate())
	require.Equal(t, []string{"name", "scope", "restapi.listen", "restapi.connect_address",
		"postgresql.listen", "postgresql.connect_address", "postgresql.data_dir",
		"postgresql.authentication.superuser", "postgresql.authentication.replication", "dcs"}, paths(fes))
}

// spec/config.md §4: unknown keys are warned about, not fatal.
func TestUnknownKeysWarn(t *testing.T) {
	cfg, warns, err := Parse([]byte(minimal + "etcd3: {host: 'h:2379', hostz: x}\nrestapi: {listen: 'a:1', connect_address: 'a:1', lisen: x}\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Len(t, warns, 2)
	require.Equal(t, "etcd3.hostz", warns[0].Path)
	require.Equal(t, "restapi.lisen", warns[1].Path)
	require.NotZero(t, warns[0].Line)
}

// spec/config.md §1, §7: the environment is merged over the file.
func TestEnvOverridesYAML(t *testing.T) {
	env := []string{
		"PATRONI_NAME=fromenv",
		"PATRONI_RESTAPI_LISTEN=0.0.0.0:9008",
		"PATRONI_RESTAPI_USERNAME=admin",
		"PATRONI_RESTAPI_PASSWORD=secret",
		"PATRONI_RESTAPI_ALLOWLIST=10.0.0.0/8, 127.0.0.1",
		"PATRONI_REPLICATION_PASSWORD=newpass",
		"PATRONI_POSTGRESQL_DATA_DIR=/data/env",
		"PATRONI_POSTGRESQL_DATABASE=appdb",
		"PATRONI_POSTGRESQL_BIN_PG_CTL=pg_ctl15",
		"PATRONI_ETCD3_HOSTS=[e1:2379, e2:2379]",
		"PATRONI_ETCD3_USERNAME=etcduser",
		"PATRONI_LOG_LEVEL=DEBUG",
		"PATRONI_LOG_FILE_NUM=7",
		"PATRONI_LOGLEVEL=ERROR", // legacy: ignored because PATRONI_LOG_LEVEL is set
		"PATRONI_KUBERNETES_LABELS={app: pg, env: prod}",
		"PATRONI_CITUS_GROUP=2",
		"PATRONI_CITUS_HOST=ignored",
		"PATRONI_EMPTY_HOST=",
		"OTHER=1",
	}
	cfg, _, err := Load("testdata/postgres0.yml", env)
	require.NoError(t, err)
	require.Equal(t, "fromenv", cfg.Name)
	require.Equal(t, "0.0.0.0:9008", cfg.RestAPI.Listen)
	require.Equal(t, "127.0.0.1:8008", cfg.RestAPI.ConnectAddress, "file values not in env are kept")
	require.Equal(t, &BasicAuth{Username: "admin", Password: "secret"}, cfg.RestAPI.Authentication)
	require.Equal(t, []string{"10.0.0.0/8", "127.0.0.1"}, cfg.RestAPI.Allowlist)
	require.Equal(t, "newpass", cfg.PostgreSQL.Authentication.Replication.Password)
	require.Equal(t, "replicator", cfg.PostgreSQL.Authentication.Replication.Username)
	require.Equal(t, "/data/env", cfg.PostgreSQL.DataDir)
	require.Equal(t, "appdb", cfg.PostgreSQL.Database)
	require.Equal(t, "pg_ctl15", cfg.PostgreSQL.BinName["pg_ctl"])
	require.Equal(t, []string{"e1:2379", "e2:2379"}, cfg.Etcd3.Hosts)
	require.Equal(t, "127.0.0.1:2379", cfg.Etcd3.Host)
	require.Equal(t, "etcduser", cfg.Etcd3.Username)
	require.Equal(t, "DEBUG", cfg.Log.Level)
	require.Equal(t, 7, *cfg.Log.FileNum)
	require.Equal(t, map[string]string{"app": "pg", "env": "prod"}, cfg.Kubernetes.Labels)
	require.Equal(t, 2, *cfg.Citus.Group)
	require.Equal(t, []string{"etcd3", "kubernetes"}, cfg.DCSSections())
}

// spec/config.md §7: etcd credentials alone do not create an etcd section;
// PATRONI_CONFIGURATION is used without other variables when there is no file.
func TestEnvOnly(t *testing.T) {
	t.Run("credentials alone", func(t *testing.T) {
		cfg, _, err := Load("", []string{"PATRONI_ETCD_USERNAME=u", "PATRONI_SCOPE=s"})
		require.NoError(t, err)
		require.Nil(t, cfg.Etcd)
		require.Equal(t, "s", cfg.Scope)
	})
	t.Run("PATRONI_CONFIGURATION", func(t *testing.T) {
		cfg, _, err := Load(filepath.Join(t.TempDir(), "missing.yml"),
			[]string{"PATRONI_CONFIGURATION=" + minimal, "PATRONI_NAME=ignored"})
		require.NoError(t, err)
		require.Equal(t, "n1", cfg.Name)
	})
}

// spec/config.md §1: a directory is loaded in name order, deep-merged,
// null deletes.
func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "10-base.yml"), []byte(minimal+"etcd3: {host: 'h:2379'}\ntags: {clonefrom: true}\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20-over.yaml"), []byte("name: n2\ntags: null\npostgresql: {data_dir: /other}\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "30-ignored.txt"), []byte("name: n3\n"), 0o600))
	cfg, _, err := Load(dir, []string{})
	require.NoError(t, err)
	require.Equal(t, "n2", cfg.Name)
	require.Equal(t, "/other", cfg.PostgreSQL.DataDir)
	require.Equal(t, "127.0.0.1:5432", cfg.PostgreSQL.Listen)
	require.Empty(t, cfg.Tags.Keys)
}

func TestYAMLSyntaxErrorHasLine(t *testing.T) {
	_, _, err := Parse([]byte("name: a\nscope: b: c\n"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "line 2")
}

// spec/config.md §2 (post-processing): legacy credentials layout.
func TestLegacyLayout(t *testing.T) {
	cfg, _, err := Parse([]byte(`
postgresql:
  name: legacy
  replication: {username: rep, password: a}
  superuser: {username: su, password: b}
  pg_rewind: {username: rw, password: c}
`))
	require.NoError(t, err)
	require.Equal(t, "legacy", cfg.Name)
	require.Equal(t, "rep", cfg.PostgreSQL.Authentication.Replication.Username)
	require.Equal(t, "su", cfg.PostgreSQL.Authentication.Superuser.Username)
	require.True(t, *cfg.PostgreSQL.UsePgRewind)
}

// spec/config.md §4 tags.
func TestTags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		yaml       string
		noFailover bool
		prio       int
		noSync     bool
		published  map[string]any
	}{
		{name: "defaults", yaml: "{}", prio: 1, published: map[string]any{}},
		{name: "nofailover bool", yaml: "{nofailover: on, clonefrom: false, custom: x}", noFailover: true,
			published: map[string]any{"nofailover": true, "custom": "x"}},
		{name: "priority zero", yaml: "{failover_priority: 0, sync_priority: 3}", noFailover: true,
			published: map[string]any{"failover_priority": 0, "nofailover": true, "sync_priority": 3, "nosync": false}},
		{name: "bool wins", yaml: "{nofailover: false, failover_priority: 0, nosync: yes}", prio: 0, noSync: true,
			published: map[string]any{"failover_priority": 0, "nofailover": false, "nosync": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte("tags: " + tc.yaml))
			require.NoError(t, err)
			require.Equal(t, tc.noFailover, cfg.Tags.NoFailover())
			if !tc.noFailover {
				require.Equal(t, tc.prio, cfg.Tags.FailoverPriority())
			}
			require.Equal(t, tc.noSync, cfg.Tags.NoSync())
			require.Equal(t, tc.published, cfg.Tags.Published())
		})
	}
}

// spec/config.md §6: validate-config machine checks.
func TestValidateFull(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	busy := ln.Addr().String()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	freeAddr := free.Addr().String()
	require.NoError(t, free.Close())
	dataDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dataDir, "junk"), nil, 0o600))

	y := strings.NewReplacer("127.0.0.1:8008", busy, "/tmp/pg", dataDir, "127.0.0.1:5432", "10.1.1.1:5432").Replace(minimal) +
		"etcd3: {hosts: ['" + freeAddr + "']}\n"
	cfg, _, err := Parse([]byte(y))
	require.NoError(t, err)
	err = cfg.ValidateFull(context.Background(), ValidateOptions{
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if !strings.HasPrefix(addr, "127.0.0.1:") {
				return nil, errors.New("unreachable in this test")
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		LookPath: func(f string) (string, error) {
			if f == "pg_isready" {
				return "", errors.New("missing")
			}
			return "/usr/bin/" + f, nil
		},
	})
	msgs := []string{}
	for _, fe := range fieldErrors(t, err) {
		msgs = append(msgs, fe.Error())
	}
	require.ElementsMatch(t, []string{
		"restapi.listen " + busy + " Port " + busy[strings.LastIndex(busy, ":")+1:] + " is already in use.",
		"restapi.connect_address " + busy + " must not contain 127.0.0.1: other members could not reach it",
		"postgresql.data_dir " + dataDir + " is not empty, but doesn't look like a data directory (no PG_VERSION)",
		"postgresql.bin_dir  'pg_isready' was not found in PATH; set postgresql.bin_dir",
		"etcd3.hosts " + freeAddr + " " + freeAddr + " is not reachable",
	}, msgs)
}

// spec/config.md §6: sample and generated configs load and name #FIXME.
func TestSampleAndGenerate(t *testing.T) {
	out, err := Sample(SampleOptions{Hostname: "host1", IP: "10.0.0.5", PGMajor: 15,
		Environ: []string{"PATRONI_SCOPE=prod"}})
	require.NoError(t, err)
	cfg, warns, err := Parse(out)
	require.NoError(t, err)
	require.Empty(t, warns)
	require.Equal(t, "prod", cfg.Scope)
	require.Equal(t, "host1", cfg.Name)
	require.Equal(t, Fixme, cfg.PostgreSQL.DataDir)
	require.Equal(t, "10.0.0.5:8008", cfg.RestAPI.ConnectAddress)
	require.NotNil(t, cfg.PostgreSQL.Authentication.Rewind)
	require.Contains(t, string(out), "wal_keep_size")
	require.NotContains(t, string(out), "wal_keep_segments")

	_, err = Generate(RunningPostgres{Superuser: User{Username: "app"}})
	require.Error(t, err)
	out, err = Generate(RunningPostgres{IsSuperuser: true, Superuser: User{Username: "postgres"},
		Settings: map[string]string{"cluster_name": "c1", "port": "5433", "listen_addresses": "*",
			"archive_command": "cp %p /a", "shared_buffers": "128MB"},
		DataDirectory: "/d", BinDir: "/usr/lib/postgresql/15/bin", Name: "n", IP: "10.0.0.2",
		HBA: []string{"local all all trust"}})
	require.NoError(t, err)
	cfg, _, err = Parse(out)
	require.NoError(t, err)
	require.Equal(t, "c1", cfg.Scope)
	require.Equal(t, "*:5433", cfg.PostgreSQL.Listen)
	require.Equal(t, "cp %p /a", cfg.PostgreSQL.Parameters["archive_command"])
	require.Equal(t, "128MB", cfg.Bootstrap.DCS.Map()["postgresql"].(map[string]any)["parameters"].(map[string]any)["shared_buffers"])
	require.Equal(t, Fixme, cfg.PostgreSQL.Authentication.Replication.Password)
}

// Issue 7: ttl below Patroni's documented minimum 20 (the anchor benchmark
// ran Patroni 3.0.2 at 10/1/4 and 5/1/2) is accepted with a warning that
// names the line, and the node runs with the value given.
func TestShortTimingsAccepted(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ttl, lw, rt  int
		warningPaths []string
	}{
		{name: "aggressive 10/1/4", ttl: 10, lw: 1, rt: 4, warningPaths: []string{"bootstrap.dcs.ttl"}},
		{name: "floor 5/1/2", ttl: 5, lw: 1, rt: 2, warningPaths: []string{"bootstrap.dcs.ttl", "bootstrap.dcs.retry_timeout"}},
		{name: "patroni minimums 20/1/3", ttl: 20, lw: 1, rt: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("%setcd3: {host: 'h:2379'}\nbootstrap:\n  dcs:\n    ttl: %d\n    loop_wait: %d\n    retry_timeout: %d\n",
				minimal, tc.ttl, tc.lw, tc.rt)
			cfg, warns, err := Parse([]byte(doc))
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
			var got []string
			for _, w := range warns {
				got = append(got, w.Path)
				require.NotZero(t, w.Line, "warning %v carries its line", w)
				require.Contains(t, w.Message, "below Patroni's documented minimum")
			}
			require.Equal(t, tc.warningPaths, got)
			s, _ := cfg.BootstrapDynamic().Settings()
			require.Equal(t, [3]int{tc.ttl, tc.lw, tc.rt}, [3]int{s.TTL, s.LoopWait, s.RetryTimeout})
		})
	}
}
