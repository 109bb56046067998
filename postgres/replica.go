package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/callbacks"
)

// ReplicaMethod creates a replica's data directory from a source
// (spec/postgres.md §7). It is called by Manager.CreateReplica from the
// caller's goroutine with an empty data directory; src is nil for methods
// allowed to run without a leader. The Manager writes the configuration
// afterwards; the caller then starts the replica.
type ReplicaMethod interface {
	CreateReplica(ctx context.Context, m *Manager, src *Upstream) error
}

// ReplicaFunc adapts a function to ReplicaMethod.
type ReplicaFunc func(ctx context.Context, m *Manager, src *Upstream) error

// CreateReplica calls f.
func (f ReplicaFunc) CreateReplica(ctx context.Context, m *Manager, src *Upstream) error {
	return f(ctx, m, src)
}

// noLeaderMethod is implemented by Go methods that can run without a
// source.
type noLeaderMethod interface{ NoLeader() bool }

// MethodError is one failed replica creation method.
type MethodError struct {
	Method string
	Err    error
}

func (e *MethodError) Error() string { return fmt.Sprintf("method %s: %v", e.Method, e.Err) }
func (e *MethodError) Unwrap() error { return e.Err }

// CreateReplica clones the data directory from src with the configured
// methods, in order, until one succeeds (spec/postgres.md §7). The data
// directory must be missing or empty (ErrDataDirNotEmpty otherwise, and
// nothing is touched). What a failed method leaves behind is removed
// unless the method says keep_data.
func (m *Manager) CreateReplica(ctx context.Context, src *Upstream) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepCreateReplica, func() error { return m.createReplica(ctx, src, m.cfg.CreateReplicaMethods) })
}

// CreateReplicaWith is CreateReplica with the methods to try given instead
// of Config.CreateReplicaMethods: `reinit --from-leader` clones with
// []string{"basebackup"} whatever the configuration lists
// (spec/postgres.md §7).
func (m *Manager) CreateReplicaWith(ctx context.Context, src *Upstream, methods []string) error {
	if len(methods) == 0 {
		return fmt.Errorf("postgres: create replica: no replica creation method given")
	}
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepCreateReplica, func() error { return m.createReplica(ctx, src, methods) })
}

func (m *Manager) createReplica(ctx context.Context, src *Upstream, methods []string) error {
	empty, err := m.dataDirEmpty()
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("postgres: create replica in %s: %w", m.cfg.DataDir, ErrDataDirNotEmpty)
	}
	if err := m.WritePgPass(src); err != nil {
		return err
	}
	var errs []error
	tried := 0
	for _, name := range methods {
		method, keep, noLeader, err := m.replicaMethod(name)
		if err != nil {
			errs = append(errs, &MethodError{Method: name, Err: err})
			continue
		}
		if src == nil && !noLeader {
			continue
		}
		tried++
		if err := m.ensureDataDir(); err != nil {
			return err
		}
		m.log.Info("creating replica", "method", name, "leader", upstreamName(src))
		start := time.Now()
		err = method.CreateReplica(ctx, m, src)
		if err == nil && !m.IsInitialized() {
			err = errors.New("left no cluster in the data directory")
		}
		if err == nil {
			m.log.Info("replica created", "method", name, "took", time.Since(start).Round(time.Millisecond))
			m.restoreConfigFiles()
			m.removeTriggerFile()
			_ = os.Remove(filepath.Join(m.cfg.DataDir, "postmaster.pid"))
			return nil
		}
		m.log.Warn("replica creation method failed", "method", name, "error", err)
		errs = append(errs, &MethodError{Method: name, Err: err})
		if !keep {
			m.emptyDataDir()
		}
		if ctx.Err() != nil {
			break
		}
	}
	if tried == 0 && src == nil {
		errs = append(errs, errors.New("no source and no method with no_leader"))
	}
	return fmt.Errorf("%w: %w", ErrAllMethodsFailed, errors.Join(errs...))
}

func upstreamName(u *Upstream) string {
	if u == nil {
		return ""
	}
	return u.Name
}

// replicaMethod resolves a method by name: Go methods, basebackup, then
// configured scripts.
func (m *Manager) replicaMethod(name string) (ReplicaMethod, bool, bool, error) {
	if rm := m.cfg.ReplicaMethods[name]; rm != nil {
		nl, _ := rm.(noLeaderMethod)
		return rm, false, nl != nil && nl.NoLeader(), nil
	}
	if name == "basebackup" {
		return ReplicaFunc(basebackup), false, false, nil
	}
	if s, ok := m.cfg.ReplicaScripts[name]; ok {
		return scriptReplica{name: name, s: s}, s.KeepData, s.NoLeader, nil
	}
	return nil, false, false, fmt.Errorf("%w: replica method %q", ErrUnknownMethod, name)
}

// emptyDataDir removes the contents of the data directory (not the
// directory itself); used only on what a clone attempt created.
func (m *Manager) emptyDataDir() {
	entries, err := os.ReadDir(m.cfg.DataDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(m.cfg.DataDir, e.Name()))
	}
}

// RemoveDataDir deletes the data directory. Only call it when the
// configuration or an operator asked for it.
func (m *Manager) RemoveDataDir() error {
	if m.IsRunning() {
		return fmt.Errorf("postgres: remove data dir: server is running")
	}
	m.log.Warn("removing data directory", "dir", m.cfg.DataDir)
	if err := os.RemoveAll(m.cfg.DataDir); err != nil {
		return fmt.Errorf("postgres: remove data dir: %w", err)
	}
	return nil
}

// cloneDSN is the connection string of a clone source: dbname user host
// port then the SSL settings, without password or application_name.
func (m *Manager) cloneDSN(src *Upstream, u User) string {
	if src == nil {
		return ""
	}
	db := src.Database
	if db == "" {
		db = m.cfg.Database
	}
	kv := [][2]string{{"dbname", db}, {"user", u.Username}, {"host", src.Host}, {"port", strconv.Itoa(src.Port)}}
	return formatDSN(mergeSSL(kv, u.SSL))
}

// basebackupAttempts and basebackupRetryDelay follow Patroni: a second
// attempt after 5 s rides out a leader that is briefly not accepting
// replication connections.
const (
	basebackupAttempts   = 2
	basebackupRetryDelay = 5 * time.Second
)

var progressRe = regexp.MustCompile(`^\s*(\d+)/(\d+) kB`)

// basebackup is the built-in "basebackup" replica method.
func basebackup(ctx context.Context, m *Manager, src *Upstream) error {
	opts, dropped := m.cfg.Basebackup.without(forbiddenBasebackup)
	for _, d := range dropped {
		m.log.Error("basebackup option is not allowed and is skipped", "option", d)
	}
	args := []string{"--pgdata=" + m.cfg.DataDir, "-X", "stream", "--dbname=" + m.cloneDSN(src, m.cfg.Replication), "--progress"}
	args = append(args, opts.Args()...)
	var err error
	for attempt := 1; attempt <= basebackupAttempts; attempt++ {
		if attempt > 1 {
			m.emptyDataDir()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(basebackupRetryDelay):
			}
		}
		var cmd interface{ Run() error }
		c, cerr := m.command(ctx, "pg_basebackup", args...)
		if cerr != nil {
			return cerr
		}
		c.Env = append(c.Env, "PGPASSFILE="+m.cfg.PgPass, "PGCONNECT_TIMEOUT=5")
		pr, pw := io.Pipe()
		c.Stdout, c.Stderr = pw, pw
		var last strings.Builder
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.readProgress(pr, &last)
		}()
		cmd = c
		err = cmd.Run()
		pw.Close()
		<-done
		if err == nil {
			return nil
		}
		err = fmt.Errorf("pg_basebackup (attempt %d): %w: %s", attempt, err, tail(last.String(), 5))
		m.log.Warn("pg_basebackup failed", "attempt", attempt, "error", err)
	}
	return err
}

// readProgress scans pg_basebackup output, reporting progress lines and
// keeping the others for error messages.
func (m *Manager) readProgress(r io.Reader, rest *strings.Builder) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, b := range data {
			if b == '\n' || b == '\r' {
				return i + 1, data[:i], nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	lastLog := time.Time{}
	for sc.Scan() {
		line := sc.Text()
		if mm := progressRe.FindStringSubmatch(line); mm != nil {
			done, _ := strconv.ParseInt(mm[1], 10, 64)
			total, _ := strconv.ParseInt(mm[2], 10, 64)
			if m.cfg.OnCloneProgress != nil {
				m.cfg.OnCloneProgress(done, total)
			}
			if time.Since(lastLog) > 5*time.Second {
				lastLog = time.Now()
				m.log.Info("basebackup progress", "done_kb", done, "total_kb", total)
			}
			continue
		}
		if strings.TrimSpace(line) != "" {
			rest.WriteString(line + "\n")
		}
	}
}

// scriptReplica is a custom replica creation method from configuration.
type scriptReplica struct {
	name string
	s    ScriptMethod
}

// CreateReplica runs the script with Patroni's argument conventions
// (spec/postgres.md §7).
func (r scriptReplica) CreateReplica(ctx context.Context, m *Manager, src *Upstream) error {
	cmdline := r.s.Command
	if cmdline == "" {
		cmdline = r.name
	}
	argv, err := callbacks.Split(cmdline)
	if err != nil || len(argv) == 0 {
		return fmt.Errorf("parse command %q: %v", cmdline, err)
	}
	argv = append(argv, ScriptReplicaArgs(r.s, m.cfg.Scope, m.cfg.DataDir, m.cloneDSN(src, m.cfg.Replication))...)
	cmd := m.commandPath(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+m.cfg.PgPass)
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}

// ScriptReplicaArgs returns the arguments after the command of a custom
// replica method: the user keys as --key=value in config order, then
// --scope --role --datadir --connstring (a user key with one of those
// names is overwritten in place). With NoParams only the user keys minus
// no_params, no_leader and keep_data.
func ScriptReplicaArgs(s ScriptMethod, scope, dataDir, connstring string) []string {
	fixed := [][2]string{{"scope", scope}, {"role", "replica"}, {"datadir", dataDir}, {"connstring", connstring}}
	var keys []Arg
	for _, a := range s.Args {
		if a.Key == "command" {
			continue
		}
		if s.NoParams && (a.Key == "no_params" || a.Key == "no_leader" || a.Key == "keep_data") {
			continue
		}
		keys = append(keys, a)
	}
	if !s.NoParams {
	outer:
		for _, f := range fixed {
			for i := range keys {
				if keys[i].Key == f[0] {
					keys[i].Value = f[1]
					continue outer
				}
			}
			keys = append(keys, Arg{Key: f[0], Value: f[1]})
		}
	}
	out := make([]string, 0, len(keys))
	for _, a := range keys {
		out = append(out, "--"+a.Key+"="+a.Value)
	}
	return out
}
