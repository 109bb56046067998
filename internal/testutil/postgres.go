package testutil

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/postgres"
)

// PGBinDirEnv names the environment variable that overrides the
// PostgreSQL binaries directory used by tests.
const PGBinDirEnv = "PGWARDEN_PG_BIN"

// PGDefaultBinDir is where Debian's postgresql-15 package installs the
// binaries.
const PGDefaultBinDir = "/usr/lib/postgresql/15/bin"

// PGInstallHint says how to get the binaries.
const PGInstallHint = "scripts/install-deps.sh (or apt-get install postgresql-15)"

// PGBinDir returns the directory with the PostgreSQL binaries, failing the
// test (or skipping it with PGWARDEN_ALLOW_SKIP=1) when postgres, initdb
// or pg_ctl is missing there.
func PGBinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(PGBinDirEnv)
	if dir == "" {
		dir = PGDefaultBinDir
	}
	for _, b := range []string{"postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata"} {
		RequireBinary(t, filepath.Join(dir, b), PGInstallHint)
	}
	return dir
}

// PGRunAs returns the OS user Postgres must run as: "postgres" when the
// test runs as root (Postgres refuses root), else "" (the current user).
func PGRunAs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	if _, err := user.Lookup("postgres"); err != nil {
		t.Fatalf("running as root needs an OS user named postgres to run PostgreSQL: %v", err)
	}
	return "postgres"
}

// PGTempDir returns a fresh temporary directory that the Postgres user can
// traverse and write: t.TempDir and its parent are root-only (0700), so
// both are opened to 0755 and the directory is given to the user.
func PGTempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatalf("chmod %s: %v", p, err)
		}
	}
	if name := PGRunAs(t); name != "" {
		u, _ := user.Lookup(name)
		var uid, gid int
		_, _ = fmtSscan(u.Uid, &uid)
		_, _ = fmtSscan(u.Gid, &gid)
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", d, err)
		}
	}
	return d
}

// PGPasswords used by PGConfig.
const (
	PGSuperuser     = "postgres"
	PGSuperPassword = "su-secret"
	PGReplicator    = "replicator"
	PGReplPassword  = "repl-secret"
)

// PGConfig returns a postgres.Config for a test member named name in
// cluster scope: binaries from PGBinDir, data under a PGTempDir, a free
// port on 127.0.0.1, password authentication (scram) over TCP, slots on,
// pg_rewind allowed, short timeouts, and the test's logger. Callers adjust
// fields before postgres.New.
func PGConfig(t testing.TB, scope, name string) postgres.Config {
	t.Helper()
	dir := PGTempDir(t)
	return postgres.Config{
		Name:            name,
		Scope:           scope,
		BinDir:          PGBinDir(t),
		DataDir:         filepath.Join(dir, "data"),
		PgPass:          filepath.Join(dir, "pgpass"),
		ServerLog:       filepath.Join(dir, "server.log"),
		ListenAddresses: "127.0.0.1",
		Port:            FreePort(t),
		RunAs:           PGRunAs(t),
		Superuser:       postgres.User{Username: PGSuperuser, Password: PGSuperPassword},
		Replication:     postgres.User{Username: PGReplicator, Password: PGReplPassword},
		Parameters: map[string]string{
			"unix_socket_directories":      dir,
			"shared_buffers":               "16MB",
			"max_wal_size":                 "128MB",
			"min_wal_size":                 "32MB",
			"fsync":                        "off",
			"wal_level":                    "logical",
			"hot_standby_feedback":         "on",
			"wal_receiver_status_interval": "1s",
		},
		PgHBA: []string{
			"local all all trust",
			"host all all 127.0.0.1/32 scram-sha-256",
			"host replication all 127.0.0.1/32 scram-sha-256",
		},
		Bootstrap: postgres.BootstrapConfig{
			Initdb: postgres.Options{{Name: "encoding", Value: "UTF8", HasValue: true}, {Name: "data-checksums"}},
		},
		// fsync buys nothing in throw-away test clusters and costs seconds.
		Basebackup:    postgres.Options{{Name: "checkpoint", Value: "fast", HasValue: true}, {Name: "no-sync"}},
		RewindOptions: postgres.Options{{Name: "no-sync"}},
		UsePgRewind:   true,
		StartTimeout:  30 * time.Second,
		StopTimeout:   20 * time.Second,
		Logger:        Logger(t),
	}
}

// PGManager creates a Manager from cfg and registers a cleanup that stops
// its server (immediate) and, when the test failed, prints the tail of the
// server log.
func PGManager(t testing.TB, cfg postgres.Config) *postgres.Manager {
	t.Helper()
	m, err := postgres.New(cfg)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Stop(ctx, postgres.StopOptions{Mode: postgres.StopImmediate, NoCallback: true}); err != nil {
			t.Logf("stop %s: %v", cfg.Name, err)
		}
		m.Close()
		if t.Failed() {
			if b, err := os.ReadFile(m.Config().ServerLog); err == nil {
				t.Logf("server log of %s:\n%s", cfg.Name, tailString(string(b), 40))
			}
		}
	})
	return m
}

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pgTemplate caches one initdb output per process tree (and across runs, in
// the system temp dir) so tests that only need "a fresh cluster" copy it
// instead of running initdb (seconds of fsync on a busy machine).
var pgTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// pgTemplateVersion changes when PGConfig's initdb options or passwords
// change, so that stale templates are not reused.
const pgTemplateVersion = "v1"

// PGTemplateBootstrap returns a bootstrap method that copies a cached
// cluster made once with initdb (encoding UTF8, data checksums, superuser
// PGSuperuser/PGSuperPassword). Register it in
// Config.Bootstrap.Methods and set Config.Bootstrap.Method to its name.
func PGTemplateBootstrap(t testing.TB) postgres.BootstrapMethod {
	t.Helper()
	bin := PGBinDir(t)
	runAs := PGRunAs(t)
	pgTemplate.once.Do(func() {
		pgTemplate.dir, pgTemplate.err = buildPGTemplate(bin, runAs)
	})
	if pgTemplate.err != nil {
		t.Fatalf("build PostgreSQL template cluster: %v", pgTemplate.err)
	}
	return postgres.BootstrapFunc(func(ctx context.Context, m *postgres.Manager) error {
		out, err := exec.CommandContext(ctx, "cp", "-a", pgTemplate.dir+"/.", m.DataDir()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("copy template: %w: %s", err, out)
		}
		return nil
	})
}

// PGTemplateDir returns the cached template cluster directory used by
// PGTemplateBootstrap (building it on first use). Copy it; never start it.
func PGTemplateDir(t testing.TB) string {
	t.Helper()
	PGTemplateBootstrap(t)
	return pgTemplate.dir
}

func buildPGTemplate(bin, runAs string) (string, error) {
	dst := filepath.Join(os.TempDir(), fmt.Sprintf("pgwarden-template-%s-%s-%d", filepath.Base(filepath.Dir(bin)), pgTemplateVersion, os.Geteuid()))
	if _, err := os.Stat(filepath.Join(dst, "global", "pg_control")); err == nil {
		return dst, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "pgwarden-template-build")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	m, err := postgres.New(postgres.Config{
		Name: "template", Scope: "template", BinDir: bin, DataDir: filepath.Join(tmp, "data"), RunAs: runAs,
		Superuser:   postgres.User{Username: PGSuperuser, Password: PGSuperPassword},
		Replication: postgres.User{Username: PGReplicator, Password: PGReplPassword},
		Bootstrap: postgres.BootstrapConfig{
			Initdb: postgres.Options{{Name: "encoding", Value: "UTF8", HasValue: true}, {Name: "data-checksums"}},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", err
	}
	if err := m.Initdb(context.Background()); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "data"), dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, "global", "pg_control")); serr == nil {
			return dst, nil // another test process won the race
		}
		return "", err
	}
	return dst, nil
}
