package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/callbacks"
)

// ErrBootstrapFailed wraps every bootstrap method failure.
var ErrBootstrapFailed = errors.New("postgres: bootstrap failed")

// BootstrapMethod creates a new cluster in the (empty, existing, owned by
// RunAs) data directory of m. It is called by Manager.Bootstrap from the
// caller's goroutine. It must leave a data directory that Postgres can
// start as a primary; the Manager then writes its configuration and
// starts it.
type BootstrapMethod interface {
	Bootstrap(ctx context.Context, m *Manager) error
}

// BootstrapFunc adapts a function to BootstrapMethod.
type BootstrapFunc func(ctx context.Context, m *Manager) error

// Bootstrap calls f.
func (f BootstrapFunc) Bootstrap(ctx context.Context, m *Manager) error { return f(ctx, m) }

// Bootstrap creates a new cluster with the configured method and starts it
// as a primary (spec/postgres.md §10). The data directory must be missing
// or empty: anything else is ErrDataDirNotEmpty and nothing is touched. A
// failed method leaves its output renamed to <data_dir>.failed, as
// Patroni does, so nothing is deleted.
func (m *Manager) Bootstrap(ctx context.Context) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepBootstrap, func() error { return m.bootstrap(ctx) })
}

func (m *Manager) bootstrap(ctx context.Context) error {
	name := m.cfg.Bootstrap.Method
	method, custom, err := m.bootstrapMethod(name)
	if err != nil {
		return err
	}
	empty, err := m.dataDirEmpty()
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("postgres: bootstrap %s: %w", m.cfg.DataDir, ErrDataDirNotEmpty)
	}
	if _, err := m.binary("postgres"); err != nil {
		return fmt.Errorf("postgres: bootstrap: %w", err)
	}
	if err := m.ensureDataDir(); err != nil {
		return err
	}
	m.log.Info("bootstrapping a new cluster", "method", name)
	if err := method.Bootstrap(ctx, m); err != nil {
		m.moveFailed()
		return fmt.Errorf("%w: method %s: %w", ErrBootstrapFailed, name, err)
	}
	if !m.IsInitialized() {
		m.moveFailed()
		return fmt.Errorf("%w: method %s left no cluster in %s", ErrBootstrapFailed, name, m.cfg.DataDir)
	}
	if custom != nil {
		m.restoreConfigFiles()
		m.removeTriggerFile()
		switch {
		case custom.RecoveryConf != nil:
			m.removeRecoveryFiles()
			m.mu.Lock()
			m.customRecovery = custom.RecoveryConf
			m.mu.Unlock()
		case custom.KeepExistingRecoveryConf:
			m.mu.Lock()
			m.keepRecovery = true
			m.mu.Unlock()
		default:
			m.removeRecoveryFiles()
		}
		defer func() {
			m.mu.Lock()
			m.customRecovery = nil
			m.keepRecovery = false
			m.mu.Unlock()
		}()
	}
	if len(m.cfg.PgHBA) == 0 && len(m.cfg.Bootstrap.PgHBA) > 0 {
		f, err := os.OpenFile(m.hbaPath(), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("postgres: bootstrap: append pg_hba: %w", err)
		}
		_, err = io.WriteString(f, strings.Join(m.cfg.Bootstrap.PgHBA, "\n")+"\n")
		f.Close()
		if err != nil {
			return fmt.Errorf("postgres: bootstrap: append pg_hba: %w", err)
		}
		_ = m.chown(m.hbaPath())
	}
	if err := m.start(ctx, StartOptions{Role: RolePrimary}); err != nil {
		return fmt.Errorf("%w: start after bootstrap: %w", ErrBootstrapFailed, err)
	}
	return nil
}

// bootstrapMethod resolves a method: Go methods, then initdb, then
// configured scripts.
func (m *Manager) bootstrapMethod(name string) (BootstrapMethod, *ScriptMethod, error) {
	if bm := m.cfg.Bootstrap.Methods[name]; bm != nil {
		return bm, nil, nil
	}
	if name == "initdb" {
		return BootstrapFunc(initdb), nil, nil
	}
	if s, ok := m.cfg.Bootstrap.Scripts[name]; ok {
		return scriptBootstrap{name: name, s: s}, &s, nil
	}
	return nil, nil, fmt.Errorf("%w: bootstrap method %q", ErrUnknownMethod, name)
}

// moveFailed renames a failed bootstrap's data directory to .failed.
func (m *Manager) moveFailed() {
	empty, err := m.dataDirEmpty()
	if err != nil || empty {
		return
	}
	dst := m.cfg.DataDir + ".failed"
	_ = os.RemoveAll(dst + ".old")
	if _, err := os.Stat(dst); err == nil {
		_ = os.Rename(dst, dst+".old")
	}
	if err := os.Rename(m.cfg.DataDir, dst); err != nil {
		m.log.Error("cannot move failed data directory aside", "error", err)
		return
	}
	m.log.Warn("moved failed bootstrap data directory aside", "to", dst)
}

// Initdb runs initdb with the configured options into the missing or
// empty data directory and does not start the server.
func (m *Manager) Initdb(ctx context.Context) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	empty, err := m.dataDirEmpty()
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("postgres: initdb %s: %w", m.cfg.DataDir, ErrDataDirNotEmpty)
	}
	if err := m.ensureDataDir(); err != nil {
		return err
	}
	if err := initdb(ctx, m); err != nil {
		return fmt.Errorf("%w: %w", ErrBootstrapFailed, err)
	}
	return nil
}

// initdb is the built-in "initdb" bootstrap method.
func initdb(ctx context.Context, m *Manager) error {
	if err := m.cfg.Bootstrap.Initdb.check(forbiddenInitdb); err != nil {
		return err
	}
	args := m.cfg.Bootstrap.Initdb.Args()
	if su := m.cfg.Superuser; su.Username != "" {
		args = append(args, "--username="+su.Username)
		if su.Password != "" {
			pw, cleanup, err := m.tempFile("pwfile", su.Password+"\n")
			if err != nil {
				return err
			}
			defer cleanup()
			args = append(args, "--pwfile="+pw)
		}
	}
	args = append(args, m.cfg.DataDir)
	cmd, err := m.command(ctx, "initdb", args...)
	if err != nil {
		return err
	}
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return nil
}

// tempFile writes content to a new private file readable by RunAs.
func (m *Manager) tempFile(prefix, content string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "pgwarden-"+prefix)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: temp file: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := m.chown(dir); err != nil {
		cleanup()
		return "", nil, err
	}
	p := filepath.Join(dir, prefix)
	if err := m.writeFile(p, []byte(content), 0o600); err != nil {
		cleanup()
		return "", nil, err
	}
	return p, cleanup, nil
}

// scriptBootstrap is a custom bootstrap method from configuration.
type scriptBootstrap struct {
	name string
	s    ScriptMethod
}

// Bootstrap runs `<command> --scope=<scope> --datadir=<data_dir>
// --key=value...` as RunAs (spec/postgres.md §10).
func (b scriptBootstrap) Bootstrap(ctx context.Context, m *Manager) error {
	cmdline := b.s.Command
	if cmdline == "" {
		cmdline = b.name
	}
	argv, err := callbacks.Split(cmdline)
	if err != nil || len(argv) == 0 {
		return fmt.Errorf("parse command %q: %v", cmdline, err)
	}
	if !b.s.NoParams {
		argv = append(argv, "--scope="+m.cfg.Scope, "--datadir="+m.cfg.DataDir)
	}
	for _, a := range b.s.Args {
		switch a.Key {
		case "command", "no_params", "keep_existing_recovery_conf", "recovery_conf", "scope", "datadir":
			continue
		}
		argv = append(argv, "--"+a.Key+"="+a.Value)
	}
	cmd := m.commandPath(ctx, argv[0], argv[1:]...)
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("custom bootstrap %s: %w", b.name, err)
	}
	return nil
}

// configFiles are the files backed up after a start and restored after a
// clone or custom bootstrap.
func (m *Manager) configFiles() []string {
	files := []string{m.confPath(), m.hbaPath(), m.identPath()}
	if m.cfg.CustomConf == "" {
		files = append(files, m.baseConfPath())
	}
	return files
}

// backupConfigFiles copies the config files to <data_dir>/<name>.backup
// (spec/postgres.md §2.4).
func (m *Manager) backupConfigFiles() {
	for _, f := range m.configFiles() {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		dst := filepath.Join(m.cfg.DataDir, filepath.Base(f)+".backup")
		if err := m.writeFile(dst, data, 0o600); err != nil {
			m.log.Warn("cannot back up config file", "file", f, "error", err)
		}
	}
}

// restoreConfigFiles restores missing config files from their backups.
func (m *Manager) restoreConfigFiles() {
	for _, f := range m.configFiles() {
		if _, err := os.Stat(f); err == nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.cfg.DataDir, filepath.Base(f)+".backup"))
		if err != nil {
			if f == m.identPath() {
				_ = m.writeFile(f, nil, 0o600)
			}
			continue
		}
		_ = m.writeFile(f, data, 0o600)
	}
}

// removeTriggerFile removes a leftover promote trigger file.
func (m *Manager) removeTriggerFile() {
	for _, k := range []string{"promote_trigger_file", "trigger_file"} {
		if p := m.cfg.RecoveryConf[k]; p != "" {
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(filepath.Join(m.cfg.DataDir, "promote"))
}

// PostBootstrap finishes a bootstrap once the node runs as primary
// (spec/postgres.md §10): sets the superuser password, runs the
// post_bootstrap script with a connection string and PGPASSFILE, and
// creates the replication and rewind roles.
func (m *Manager) PostBootstrap(ctx context.Context) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepPostBootstrap, func() error {
		su := m.cfg.Superuser
		if su.Username != "" && su.Password != "" {
			if err := m.ensureRole(ctx, su, "SUPERUSER LOGIN", nil); err != nil {
				return err
			}
		}
		if m.cfg.Bootstrap.PostBootstrap != "" {
			if err := m.WritePgPass(nil); err != nil {
				return err
			}
			dsn := formatDSN([][2]string{
				{"dbname", m.cfg.Database}, {"user", su.Username},
				{"host", m.cfg.ConnectHost}, {"port", fmt.Sprint(m.cfg.Port)},
			})
			env := []string{"PGPASSFILE=" + m.cfg.PgPass, "PGOPTIONS=-c synchronous_commit=local -c statement_timeout=0"}
			if err := m.runScript(ctx, m.cfg.Bootstrap.PostBootstrap, []string{dsn}, env); err != nil {
				return fmt.Errorf("%w: post_bootstrap: %w", ErrBootstrapFailed, err)
			}
		}
		if err := m.ensureRole(ctx, m.cfg.Replication, "REPLICATION LOGIN", nil); err != nil {
			return err
		}
		// After a custom bootstrap (PITR) the configuration still carries
		// its recovery settings: write the primary one and apply it.
		ch, err := m.WriteConfig(ctx, RolePrimary, nil)
		if err != nil {
			return err
		}
		switch {
		case ch.NeedsRestart:
			if err := m.stop(ctx, StopOptions{NoCallback: true}); err != nil {
				return err
			}
			if err := m.start(ctx, StartOptions{Role: RolePrimary, NoCallback: true}); err != nil {
				return err
			}
		case ch.NeedsReload:
			if err := m.reload(); err != nil {
				return err
			}
		}
		if rw := m.cfg.Rewind; rw.Username != "" && rw.Username != su.Username {
			grants := []string{
				"GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO %s",
				"GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO %s",
				"GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO %s",
				"GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO %s",
			}
			if err := m.ensureRole(ctx, rw, "LOGIN", grants); err != nil {
				return err
			}
		}
		return nil
	})
}

// ensureRole creates or alters a role with the given options and
// password, with statement logging suppressed so the password does not
// reach the server log.
func (m *Manager) ensureRole(ctx context.Context, u User, options string, grants []string) error {
	if u.Username == "" {
		return nil
	}
	ident := pgx.Identifier{u.Username}.Sanitize()
	pw := ""
	if u.Password != "" {
		pw = " PASSWORD '" + strings.ReplaceAll(u.Password, "'", "''") + "'"
	}
	c, err := m.connect(ctx, m.cfg.Superuser, "bootstrap", map[string]string{"statement_timeout": "0"})
	if err != nil {
		return fmt.Errorf("postgres: create role %s: %w", u.Username, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, s := range []string{
		"SET log_statement TO none", "SET log_min_duration_statement TO -1",
		"SET log_min_error_statement TO 'log'", "SET synchronous_commit TO 'local'",
	} {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("postgres: create role %s: %w", u.Username, err)
		}
	}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", u.Username).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: create role %s: %w", u.Username, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("%s ROLE %s WITH %s%s", verb, ident, options, pw)); err != nil {
		return fmt.Errorf("postgres: %s role %s: %w", strings.ToLower(verb), u.Username, err)
	}
	for _, g := range grants {
		if _, err := c.Exec(ctx, fmt.Sprintf(g, ident)); err != nil {
			return fmt.Errorf("postgres: grant to %s: %w", u.Username, err)
		}
	}
	return nil
}
