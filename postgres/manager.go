package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/internal/procfs"
)

// Sentinel errors.
var (
	// ErrNotRunning is returned by operations that need a running server.
	ErrNotRunning = errors.New("postgres: not running")
	// ErrStartFailed is returned when the postmaster exits or does not
	// accept connections in time; the error text carries the last lines of
	// the server log.
	ErrStartFailed = errors.New("postgres: start failed")
	// ErrStillStarting is returned by Start when the timeout passed but the
	// postmaster is alive and still starting (for example replaying a lot
	// of WAL): the server is left running and State reports Starting.
	ErrStillStarting = errors.New("postgres: still starting")
	// ErrDataDirNotEmpty is returned when bootstrap or clone would have to
	// overwrite a data directory that holds something else.
	ErrDataDirNotEmpty = errors.New("postgres: data directory is not empty")
	// ErrNoDataDir is returned when the data directory holds no cluster.
	ErrNoDataDir = errors.New("postgres: data directory holds no cluster")
	// ErrBinary is returned when a PostgreSQL binary cannot be found.
	ErrBinary = errors.New("postgres: binary not found")
	// ErrPortInUse is returned by Start when another process listens on
	// the configured port.
	ErrPortInUse = errors.New("postgres: port already in use")
	// ErrAllMethodsFailed is returned when every replica creation method
	// failed.
	ErrAllMethodsFailed = errors.New("postgres: all replica creation methods failed")
	// ErrUnknownMethod is returned for a method name that is neither
	// registered nor configured.
	ErrUnknownMethod = errors.New("postgres: unknown method")
)

// Manager manages one data directory (spec/postgres.md). Its methods are
// safe for concurrent use, but lifecycle methods (Start, Stop, Promote,
// ...) are serialized: the HA loop is expected to be the only caller of
// those, the REST API may call State concurrently.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	cred *syscall.Credential // nil when running as ourselves

	// lifecycle serializes lifecycle operations.
	lifecycle sync.Mutex

	// obs is the observation connection (State and the queries of the HA
	// loop and REST API). ctl is used by promotion alone, so that a
	// promotion never queues behind a status refresh.
	obs, ctl session

	mu   sync.Mutex // guards the fields below
	role Role
	proc *postmaster
	// overrides are GUCs set at runtime (synchronous_standby_names).
	overrides map[string]string
	// customRecovery is the recovery_conf of a custom bootstrap while it
	// starts (spec/postgres.md §10); nil otherwise.
	customRecovery map[string]string
	// keepRecovery is set while a custom bootstrap with
	// keep_existing_recovery_conf starts: postgresql.auto.conf and the
	// signal files are left alone.
	keepRecovery bool
	// gucs maps every GUC name the server knows to its context, from
	// postgres --describe-config; nil until loaded.
	gucs map[string]string
	// params replaces cfg.Parameters once SetParameters was called.
	params map[string]string
	// upstream is the last primary a replica configuration named.
	upstream *Upstream
	major    int
}

// postmaster is a server process this Manager started.
type postmaster struct {
	pid  int
	done chan struct{} // closed when the process has been reaped
	err  error
}

// New checks the configuration and returns a Manager. It does no I/O
// besides resolving the RunAs user.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Manager{cfg: cfg, log: cfg.Logger.With("member", cfg.Name), obs: session{app: "heartbeat"}, ctl: session{app: "promote"}}
	if cfg.RunAs != "" {
		u, err := user.Lookup(cfg.RunAs)
		if err != nil {
			return nil, fmt.Errorf("postgres: look up RunAs user %q: %w", cfg.RunAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid != os.Geteuid() {
			m.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		}
	}
	return m, nil
}

// Config returns the effective configuration (defaults applied).
func (m *Manager) Config() Config { return m.cfg }

// DataDir returns the data directory.
func (m *Manager) DataDir() string { return m.cfg.DataDir }

// Role returns the role Postgres was last started, promoted or demoted
// into; RoleUninitialized before any of those.
func (m *Manager) Role() Role {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role == "" {
		return RoleUninitialized
	}
	return m.role
}

func (m *Manager) setRole(r Role) {
	m.mu.Lock()
	m.role = r
	m.mu.Unlock()
}

// SetParameters replaces the configured GUCs (a dynamic configuration
// change). Nothing is written until the next WriteConfig, Reload or start.
func (m *Manager) SetParameters(params map[string]string) {
	cp := make(map[string]string, len(params))
	for k, v := range params {
		cp[k] = v
	}
	m.mu.Lock()
	m.params = cp
	m.mu.Unlock()
}

// parameters returns the current configured GUCs (not to be modified).
func (m *Manager) parameters() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.params != nil {
		return m.params
	}
	return m.cfg.Parameters
}

// Close closes the connection. It does not stop Postgres.
func (m *Manager) Close() {
	m.closeConn()
}

func (m *Manager) hook(ctx context.Context, step Step, fn func() error) error {
	if m.cfg.Hooks.Before != nil {
		if err := m.cfg.Hooks.Before(ctx, step); err != nil {
			return fmt.Errorf("postgres: %s: before hook: %w", step, err)
		}
	}
	err := fn()
	if m.cfg.Hooks.After != nil {
		m.cfg.Hooks.After(ctx, step, err)
	}
	return err
}

// binary returns the path of a PostgreSQL program.
func (m *Manager) binary(name string) (string, error) {
	n := name
	if v := m.cfg.BinNames[name]; v != "" {
		n = v
	}
	if m.cfg.BinDir == "" {
		p, err := exec.LookPath(n)
		if err != nil {
			return "", fmt.Errorf("%w: %s in PATH: %w", ErrBinary, n, err)
		}
		return p, nil
	}
	p := filepath.Join(m.cfg.BinDir, n)
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s (bin dir %s): %w", ErrBinary, n, m.cfg.BinDir, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not executable", ErrBinary, p)
	}
	return p, nil
}

// environment for every Postgres program (spec/postgres.md §4.1 step 6).
func (m *Manager) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PATRONI_"), strings.HasPrefix(k, "KUBERNETES_"), k == "NOTIFY_SOCKET",
			strings.HasPrefix(k, "PG") && k != "PG_MALLOC_ARENA_MAX":
			continue
		case k == "PG_MALLOC_ARENA_MAX":
			_, v, _ := strings.Cut(kv, "=")
			env = append(env, "MALLOC_ARENA_MAX="+v)
			continue
		}
		env = append(env, kv)
	}
	if m.cred != nil {
		if u, err := user.LookupId(strconv.Itoa(int(m.cred.Uid))); err == nil {
			env = append(env, "HOME="+u.HomeDir, "USER="+u.Username)
		}
	}
	return append(env, extra...)
}

// waitDelay bounds how long an abandoned tool's pipes may stay open.
const waitDelay = 5 * time.Second

// command builds a command for a Postgres program, run as RunAs in its own
// process group; cancelling ctx sends SIGTERM to the group, and WaitDelay
// escalates to SIGKILL.
func (m *Manager) command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	p, err := m.binary(name)
	if err != nil {
		return nil, err
	}
	return m.commandPath(ctx, p, args...), nil
}

func (m *Manager) commandPath(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: m.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = waitDelay
	cmd.Env = m.env()
	cmd.Dir = "/"
	return cmd
}

// run runs a command and returns its combined output; an error carries the
// tail of the output.
func run(cmd *exec.Cmd) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.Bytes(), fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, tail(buf.String(), 10))
	}
	return buf.Bytes(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chown gives path to the RunAs user.
func (m *Manager) chown(path string) error {
	if m.cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(m.cred.Uid), int(m.cred.Gid)); err != nil {
		return fmt.Errorf("postgres: chown %s: %w", path, err)
	}
	return nil
}

// writeFile writes data atomically (temp file + rename) owned by RunAs.
func (m *Manager) writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("postgres: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("postgres: chmod %s: %w", path, err)
	}
	if err := m.chown(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("postgres: write %s: %w", path, err)
	}
	return nil
}

// ensureDir creates dir (and missing parents) when it does not exist,
// giving the new directory mode and the RunAs owner. An existing directory
// is left as it is: pgwarden never changes the owner or mode of directories
// it did not create, except the data directory (ensureDataDir).
func (m *Manager) ensureDir(dir string, mode os.FileMode) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("postgres: %s exists and is not a directory", dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("postgres: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("postgres: chmod %s: %w", dir, err)
	}
	return m.chown(dir)
}

// ensureDataDir creates the data directory if needed and makes it 0700 and
// owned by RunAs, as PostgreSQL requires.
func (m *Manager) ensureDataDir() error {
	if err := m.ensureDir(m.cfg.DataDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(m.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("postgres: chmod %s: %w", m.cfg.DataDir, err)
	}
	return m.chown(m.cfg.DataDir)
}

// IsInitialized reports whether the data directory holds a cluster
// (PG_VERSION and global/pg_control exist).
func (m *Manager) IsInitialized() bool {
	_, err1 := os.Stat(filepath.Join(m.cfg.DataDir, "PG_VERSION"))
	_, err2 := os.Stat(filepath.Join(m.cfg.DataDir, "global", "pg_control"))
	return err1 == nil && err2 == nil
}

// dataDirEmpty reports whether the data directory is missing or empty.
func (m *Manager) dataDirEmpty() (bool, error) {
	entries, err := os.ReadDir(m.cfg.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres: read data dir: %w", err)
	}
	return len(entries) == 0, nil
}

// MajorVersion returns the major version from PG_VERSION, or from
// `postgres --version` when there is no cluster yet.
func (m *Manager) MajorVersion(ctx context.Context) (int, error) {
	m.mu.Lock()
	v := m.major
	m.mu.Unlock()
	if v != 0 {
		return v, nil
	}
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "PG_VERSION"))
	if err == nil {
		v, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil {
		cmd, cerr := m.command(ctx, "postgres", "--version")
		if cerr != nil {
			return 0, cerr
		}
		out, rerr := run(cmd)
		if rerr != nil {
			return 0, fmt.Errorf("postgres: version: %w", rerr)
		}
		// "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)"
		f := strings.Fields(string(out))
		if len(f) < 3 {
			return 0, fmt.Errorf("postgres: version: unexpected output %q", out)
		}
		major, _, _ := strings.Cut(f[2], ".")
		if v, err = strconv.Atoi(major); err != nil {
			return 0, fmt.Errorf("postgres: version: unexpected output %q", out)
		}
	}
	m.mu.Lock()
	m.major = v
	m.mu.Unlock()
	return v, nil
}

// PostmasterPID returns the pid of a live postmaster running on the data
// directory, from postmaster.pid (or the process this Manager started), or
// 0.
func (m *Manager) PostmasterPID() int {
	if pid := m.pidFromFile(); pid != 0 {
		return pid
	}
	// A postmaster we just spawned may not have written its pid file yet.
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		default:
			return p.pid
		}
	}
	return 0
}

func (m *Manager) pidFromFile() int {
	f, err := os.Open(filepath.Join(m.cfg.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 {
		return 0
	}
	if !processAlive(pid) {
		return 0
	}
	// A reused pid of another program does not count.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		if b := filepath.Base(exe); b != "postgres" && b != "postmaster" && !strings.HasPrefix(b, "postgres") {
			return 0
		}
	}
	return pid
}

// IsRunning reports whether a postmaster runs on the data directory.
func (m *Manager) IsRunning() bool { return m.PostmasterPID() != 0 }

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st, err := procfs.ReadStat(procfs.Path(pid))
	if err != nil {
		return true
	}
	return st.State != 'Z' // a zombie has exited
}

// readLogTail returns the last n lines of the server log written after
// offset.
func (m *Manager) readLogTail(offset int64, n int) string {
	f, err := os.Open(m.cfg.ServerLog)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return tail(string(b), n)
}
