package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/callbacks"
	"github.com/pgwarden/pgwarden/internal/procfs"
)

// pollInterval is how often a start tries a connection while the
// postmaster does not report itself ready in postmaster.pid, and
// readyPoll how often that status line is read (a small file read): the
// start returns within moments of the server accepting connections.
const (
	pollInterval = 100 * time.Millisecond
	readyPoll    = 10 * time.Millisecond
)

// shmemRetry bounds how long a start is retried while backends of a killed
// postmaster still hold its shared memory, and shmemRetryDelay is the
// pause between attempts.
const (
	shmemRetry      = 10 * time.Second
	shmemRetryDelay = 50 * time.Millisecond
)

// shmemInUse is the server log message of a postmaster that refuses to
// start while an old shared memory block still has processes attached.
const shmemInUse = "pre-existing shared memory block"

// StartOptions tunes Start.
type StartOptions struct {
	// Role to start in; empty derives it from the data directory
	// (standby.signal -> replica, else primary).
	Role Role
	// Upstream is the primary a replica follows; nil streams nothing
	// (archive recovery only).
	Upstream *Upstream
	// Timeout overrides Config.StartTimeout.
	Timeout time.Duration
	// Callback is the event fired once running; zero means on_start.
	Callback callbacks.Event
	// NoCallback suppresses the callback.
	NoCallback bool
}

// Start writes the configuration, starts the postmaster and waits until it
// accepts connections (spec/postgres.md §4.1). An already running server
// is adopted and left alone.
func (m *Manager) Start(ctx context.Context, opts StartOptions) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepStart, func() error { return m.start(ctx, opts) })
}

func (m *Manager) start(ctx context.Context, opts StartOptions) error {
	m.closeConn()
	if m.IsRunning() {
		if opts.Role != "" {
			m.setRole(opts.Role)
		}
		return nil
	}
	pgBin, err := m.binary("postgres")
	if err != nil {
		return fmt.Errorf("postgres: start: %w", err)
	}
	if !m.IsInitialized() {
		return fmt.Errorf("postgres: start %s: %w", m.cfg.DataDir, ErrNoDataDir)
	}
	// After a kill -9 of the postmaster its backends exit on their own
	// within moments; a new postmaster refuses to start while they hold
	// the old shared memory.
	m.waitOrphans()
	if err := m.checkPortFree(); err != nil {
		return fmt.Errorf("postgres: start: %w", err)
	}
	role := opts.Role
	if role == "" {
		role = RolePrimary
		for _, f := range []string{"standby.signal", "recovery.signal"} {
			if _, err := os.Stat(filepath.Join(m.cfg.DataDir, f)); err == nil {
				role = RoleReplica
			}
		}
	}
	if role == RolePromoted {
		role = RolePrimary
	}
	if _, err := m.WriteConfig(ctx, role, opts.Upstream); err != nil {
		return fmt.Errorf("postgres: start: %w", err)
	}
	params, cmdline := m.Parameters()
	m.mu.Lock()
	if m.customRecovery != nil {
		params["hot_standby"] = "off"
	}
	m.mu.Unlock()
	if !role.IsPrimary() {
		m.raiseSharedMemoryParams(ctx, params)
	}
	args := []string{"-D", m.cfg.DataDir, "--config-file=" + m.confPath()}
	for _, k := range cmdline {
		args = append(args, "--"+k+"="+params[k])
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = m.cfg.StartTimeout
	}
	m.log.Debug("start: spawning postmaster", "role", role)
	retryUntil := time.Now().Add(shmemRetry)
	var proc *postmaster
	for {
		logOffset, err := m.spawn(pgBin, args)
		if err != nil {
			return err
		}
		m.mu.Lock()
		proc = m.proc
		m.mu.Unlock()
		err = m.waitAccepting(ctx, proc, timeout, logOffset)
		if err == nil {
			break
		}
		// Processes of the old postmaster that are not in its process
		// group (it was started by someone else) are not seen by
		// waitOrphans: retry quickly until they are gone.
		if !errors.Is(err, ErrStartFailed) || !strings.Contains(err.Error(), shmemInUse) || time.Now().After(retryUntil) {
			return err
		}
		m.log.Debug("start: old shared memory still in use; retrying", "pid", proc.pid)
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: start: %w", ctx.Err())
		case <-time.After(shmemRetryDelay):
		}
	}
	prev := m.Role()
	m.setRole(role)
	if !opts.NoCallback {
		ev := opts.Callback
		if ev == 0 {
			ev = callbacks.OnStart
			if prev != RoleUninitialized && prev.IsPrimary() != role.IsPrimary() {
				ev = callbacks.OnRoleChange
			}
		}
		m.cfg.Callbacks.Fire(ev, string(role))
	}
	m.backupConfigFiles()
	m.log.Info("postgres started", "role", role, "pid", proc.pid)
	return nil
}

// checkPortFree fails when something already listens on the port.
func (m *Manager) checkPortFree() error {
	addr := net.JoinHostPort(m.cfg.ConnectHost, strconv.Itoa(m.cfg.Port))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%w: %s accepts connections but no postmaster runs on %s", ErrPortInUse, addr, m.cfg.DataDir)
}

// raiseSharedMemoryParams uses pg_controldata values for shared-memory
// GUCs that are larger than configured (a replica cannot run with less
// than its primary; spec/config.md §5, last rule).
func (m *Manager) raiseSharedMemoryParams(ctx context.Context, params map[string]string) {
	cd, err := m.ControlData(ctx)
	if err != nil {
		return
	}
	for _, name := range []string{"max_connections", "max_prepared_transactions", "max_locks_per_transaction", "max_worker_processes", "max_wal_senders"} {
		theirs, err1 := strconv.Atoi(cd.Raw[name+" setting"])
		ours, err2 := strconv.Atoi(params[name])
		if err1 == nil && err2 == nil && theirs > ours {
			m.log.Info("raising shared memory parameter to the value in pg_control", "parameter", name, "configured", ours, "used", theirs)
			params[name] = strconv.Itoa(theirs)
		}
	}
}

// spawn starts the postmaster in its own session, stdout/stderr to the
// server log. The process is not tied to any ctx: it lives until Stop.
func (m *Manager) spawn(pgBin string, args []string) (int64, error) {
	if err := m.ensureDir(filepath.Dir(m.cfg.ServerLog), 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(m.cfg.ServerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, fmt.Errorf("postgres: open server log: %w", err)
	}
	defer logf.Close()
	_ = m.chown(m.cfg.ServerLog)
	off, _ := logf.Seek(0, 2)
	// The postmaster outlives the call that starts it, so it is started
	// with exec.Command and stopped by Stop with signals.
	cmd := exec.Command(pgBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: m.cred}
	cmd.Env = m.env()
	cmd.Dir = m.cfg.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("postgres: start %s: %w", pgBin, err)
	}
	p := &postmaster{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return off, nil
}

// waitAccepting waits until the server accepts connections.
func (m *Manager) waitAccepting(ctx context.Context, p *postmaster, timeout time.Duration, logOffset int64) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var lastPing time.Time
	for {
		st := m.pidFileStatus(p.pid)
		if st == "ready" || st == "standby" || time.Since(lastPing) >= pollInterval {
			lastPing = time.Now()
			if ok, _ := m.ping(ctx); ok {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: postmaster exited (%v); server log:\n%s", ErrStartFailed, p.err, m.readLogTail(logOffset, 20))
		case <-deadline.C:
			if processAlive(p.pid) {
				return fmt.Errorf("%w: not accepting connections after %s; server log:\n%s", ErrStillStarting, timeout, m.readLogTail(logOffset, 20))
			}
			return fmt.Errorf("%w: not accepting connections after %s; server log:\n%s", ErrStartFailed, timeout, m.readLogTail(logOffset, 20))
		case <-ctx.Done():
			return fmt.Errorf("postgres: start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// pidFileStatus returns the postmaster status line of postmaster.pid
// ("starting", "stopping", "ready", "standby") when the file belongs to
// pid, else "".
func (m *Manager) pidFileStatus(pid int) string {
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(pid) {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// ping reports whether the server accepts connections: any answer other
// than "starting up"/"shutting down" counts, like pg_isready's exit 0. A
// successful connection becomes the observation connection when there is
// none, so the first State after a start does not connect again.
func (m *Manager) ping(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := m.connect(ctx, m.cfg.Superuser, "heartbeat", nil)
	if err == nil {
		if !m.obs.adopt(c) {
			c.Close(ctx)
		}
		return true, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P03", "57P01", "57P02":
			return false, err
		}
		return true, nil
	}
	return false, err
}

// StopMode is how the postmaster is asked to stop.
type StopMode int

// Stop modes (spec/postgres.md §4.2).
const (
	StopFast StopMode = iota
	StopSmart
	StopImmediate
)

func (s StopMode) String() string {
	switch s {
	case StopSmart:
		return "smart"
	case StopImmediate:
		return "immediate"
	}
	return "fast"
}

func (s StopMode) signal() syscall.Signal {
	switch s {
	case StopSmart:
		return syscall.SIGTERM
	case StopImmediate:
		return syscall.SIGQUIT
	}
	return syscall.SIGINT
}

// StopOptions tunes Stop.
type StopOptions struct {
	Mode StopMode
	// Timeout overrides Config.StopTimeout: after it the stop escalates
	// to immediate (SIGQUIT), and 5 s later to SIGKILL.
	Timeout time.Duration
	// NoCheckpoint skips the CHECKPOINT before a fast or smart stop.
	NoCheckpoint bool
	// NoCallback suppresses on_stop.
	NoCallback bool
	// OnShutdown, for fast and smart stops, is called once pg_controldata
	// shows "shut down" (the shutdown checkpoint is written, walsenders may
	// still be sending it), with the shutdown checkpoint LSN: the moment
	// the HA loop may release the leader key early (spec/postgres.md §4.2
	// step 7). It is called from the stopping goroutine.
	OnShutdown func(checkpoint LSN)
	// OnSafepoint is called once no client backend runs any more (only
	// auxiliary processes, or nothing), bounded by the timeout: the point
	// where Patroni disables the watchdog (spec/postgres.md §4.2 step 6).
	// It is called from the stopping goroutine, at most once.
	OnSafepoint func()
	// BeforeSignal is called just before the postmaster is signalled,
	// once the backends that leave on their own (the CHECKPOINT's, the
	// manager's connections, the logical replication launcher) are gone;
	// clients can still write. It is called from the stopping goroutine.
	BeforeSignal func()
}

// escalateDelay is how long a SIGQUIT gets before SIGKILL: an immediate
// shutdown only signals children and exits, so seconds are plenty.
const escalateDelay = 5 * time.Second

// Stop stops the server (spec/postgres.md §4.2). Stopping a stopped
// server succeeds without callbacks.
func (m *Manager) Stop(ctx context.Context, opts StopOptions) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepStop, func() error { return m.stop(ctx, opts) })
}

func (m *Manager) stop(ctx context.Context, opts StopOptions) error {
	pid := m.PostmasterPID()
	if pid == 0 {
		m.closeConn()
		return nil
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = m.cfg.StopTimeout
	}
	var leaving []int // backends that exit on their own before the signal
	if opts.Mode != StopImmediate && !opts.NoCheckpoint {
		t0 := time.Now()
		pids, err := m.checkpointBeforeStop(ctx, timeout)
		if err != nil {
			m.log.Warn("checkpoint before stop failed", "error", err)
		}
		leaving = pids
		m.log.Debug("stop: checkpoint before stop done", "took", time.Since(t0))
	}
	if m.cfg.BeforeStop != "" {
		if err := m.runScript(ctx, m.cfg.BeforeStop, nil, nil); err != nil {
			m.log.Warn("before_stop script failed", "error", err)
		}
	}
	leaving = append(leaving, m.closeConn()...)
	if opts.Mode != StopImmediate {
		// A fast shutdown writes its checkpoint only once every backend
		// has exited, and clients cannot write from the signal on. A
		// backend's exit costs tens of milliseconds of CPU here
		// (copy-on-write faults in the library destructors), so those
		// that can leave before the signal do, while clients still write.
		t0 := time.Now()
		waitGone(leaving, quiesceTimeout)
		m.log.Debug("stop: own backends gone", "pids", leaving, "took", time.Since(t0))
	}
	role := m.Role()
	if opts.BeforeSignal != nil {
		opts.BeforeSignal()
	}
	if err := syscall.Kill(pid, opts.Mode.signal()); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("postgres: stop: signal %d: %w", pid, err)
	}
	m.log.Debug("stop: postmaster signalled", "mode", opts.Mode, "pid", pid)
	if opts.OnSafepoint != nil {
		m.waitBackends(ctx, pid, timeout)
		opts.OnSafepoint()
	}
	if opts.OnShutdown != nil && opts.Mode != StopImmediate {
		m.watchShutdown(ctx, pid, timeout, opts.OnShutdown)
	}
	if !m.waitExit(ctx, pid, timeout) {
		m.log.Warn("postgres did not stop in time; sending SIGQUIT", "mode", opts.Mode, "timeout", timeout)
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		if !m.waitExit(ctx, pid, escalateDelay) {
			m.log.Warn("postgres ignored SIGQUIT; killing the process group")
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !m.waitExit(ctx, pid, escalateDelay) {
				return fmt.Errorf("postgres: stop: postmaster %d survives SIGKILL", pid)
			}
		}
	}
	m.log.Debug("stop: postmaster exited", "pid", pid)
	m.waitGroupGone(pid, escalateDelay)
	m.log.Info("postgres stopped", "mode", opts.Mode)
	if !opts.NoCallback {
		m.cfg.Callbacks.Fire(callbacks.OnStop, string(role))
	}
	return nil
}

// auxiliaryTitles are the process titles of postmaster children that are
// not client backends.
var auxiliaryTitles = []string{
	"logger", "checkpointer", "background writer", "walwriter", "autovacuum launcher",
	"archiver", "stats collector", "logical replication launcher", "startup", "walreceiver",
	"walsender", "wal receiver", "wal sender", "io worker",
}

// clientBackends counts children of the postmaster that are client
// backends, by process title.
func clientBackends(ppid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procfs.ReadStat(procfs.Path(pid))
		if err != nil || st.PPID != ppid || pid == ppid {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		title := strings.TrimRight(strings.ReplaceAll(string(cmd), "\x00", " "), " ")
		aux := false
		for _, a := range auxiliaryTitles {
			if strings.Contains(title, ": "+a) {
				aux = true
				break
			}
		}
		if !aux {
			n++
		}
	}
	return n
}

// waitBackends waits until the postmaster has no client backend left, it
// exited, or timeout passed.
func (m *Manager) waitBackends(ctx context.Context, pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for processAlive(pid) && clientBackends(pid) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// shutdownPoll is how often pg_control is read during a stop: a 40-byte
// file read, and every millisecond saved here shortens a switchover.
const shutdownPoll = 2 * time.Millisecond

// watchShutdown polls pg_control until the cluster state says "shut
// down" (then calls fn with the shutdown checkpoint), the postmaster exits
// or timeout passes. A replica ("shut down in recovery") never reports.
func (m *Manager) watchShutdown(ctx context.Context, pid int, timeout time.Duration, fn func(LSN)) {
	deadline := time.Now().Add(timeout)
	for {
		alive := processAlive(pid)
		if down, ckpt, err := m.shutDownCheckpoint(); err == nil && down {
			m.log.Debug("stop: shutdown checkpoint written", "lsn", ckpt)
			fn(ckpt)
			return
		}
		if !alive || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(shutdownPoll)
	}
}

// waitExit waits until pid exits; false on timeout.
func (m *Manager) waitExit(ctx context.Context, pid int, timeout time.Duration) bool {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	var done <-chan struct{}
	if p != nil && p.pid == pid {
		done = p.done
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if done == nil && !processAlive(pid) {
			return true
		}
		select {
		case <-done:
			return true
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// waitGroupGone waits for leftover processes of the postmaster's process
// group (orphaned backends after a crash) to exit.
func (m *Manager) waitGroupGone(pgid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkpoint runs CHECKPOINT on a fresh connection without statement
// timeout, bounded by timeout, then then (if not nil) on the same
// connection.
func (m *Manager) checkpoint(ctx context.Context, timeout time.Duration, then func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := m.connect(ctx, m.cfg.Superuser, "checkpoint", map[string]string{"statement_timeout": "0"})
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil || then == nil {
		return err
	}
	return then(c)
}

// quiesceTimeout bounds the wait for the backends that leave before a
// fast or smart shutdown is signalled.
const quiesceTimeout = 500 * time.Millisecond

// checkpointBeforeStop runs CHECKPOINT while the server still takes
// writes, so that the shutdown checkpoint has little left to do, then asks
// the logical replication launcher to exit (its postmaster would start it
// again after 5 s; the shutdown comes first). It returns the process IDs of
// the backends that are about to exit: the one that served the checkpoint
// and the launcher.
func (m *Manager) checkpointBeforeStop(ctx context.Context, timeout time.Duration) ([]int, error) {
	var pids []int
	err := m.checkpoint(ctx, timeout, func(c *pgx.Conn) error {
		pids = append(pids, int(c.PgConn().PID()))
		rows, err := c.Query(ctx, `SELECT pid FROM (SELECT pid FROM pg_stat_activity
  WHERE backend_type = 'logical replication launcher' OFFSET 0) l WHERE pg_terminate_backend(pid)`)
		if err == nil {
			var launchers []int32
			launchers, err = pgx.CollectRows(rows, pgx.RowTo[int32])
			for _, p := range launchers {
				pids = append(pids, int(p))
			}
		}
		if err != nil { // before PostgreSQL 10, or not allowed: the shutdown stops it
			m.log.Debug("stop: logical replication launcher left running", "error", err)
		}
		return nil
	})
	return pids, err
}

// waitGone waits until none of pids is alive, at most timeout.
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// Checkpoint runs CHECKPOINT on a fresh connection without statement
// timeout; ctx bounds it. The HA loop runs it after a promotion
// (spec/ha-loop.md §7.3) so pg_rewind on the old primary sees the new
// timeline in pg_control.
func (m *Manager) Checkpoint(ctx context.Context) error {
	if err := m.checkpoint(ctx, time.Hour, nil); err != nil {
		return fmt.Errorf("postgres: checkpoint: %w", err)
	}
	return nil
}

// Restart stops (fast, with checkpoint) and starts the server in the same
// role, firing on_restart only (spec/postgres.md §4.3).
func (m *Manager) Restart(ctx context.Context, up *Upstream) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepRestart, func() error {
		role := m.Role()
		if role == RoleUninitialized {
			role = ""
		}
		if err := m.stop(ctx, StopOptions{NoCallback: true}); err != nil {
			return fmt.Errorf("postgres: restart: %w", err)
		}
		return m.start(ctx, StartOptions{Role: role, Upstream: up, Callback: callbacks.OnRestart})
	})
}

// Reload rewrites the configuration for the current role and sends SIGHUP
// (spec/postgres.md §4.4). It returns the change; NeedsRestart tells the
// caller a restart is still needed.
func (m *Manager) Reload(ctx context.Context, up *Upstream) (ConfigChange, error) {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	var ch ConfigChange
	err := m.hook(ctx, StepReload, func() error {
		var err error
		if ch, err = m.WriteConfig(ctx, m.Role(), up); err != nil {
			return err
		}
		return m.reload()
	})
	return ch, err
}

func (m *Manager) reload() error {
	pid := m.PostmasterPID()
	if pid == 0 {
		return fmt.Errorf("postgres: reload: %w", ErrNotRunning)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("postgres: reload: %w", err)
	}
	m.cfg.Callbacks.Fire(callbacks.OnReload, string(m.Role()))
	return nil
}

// repromoteAfter is how long a promotion may stay in recovery before the
// promote request is repeated.
const repromoteAfter = 500 * time.Millisecond

// ErrPrePromoteFailed is returned when the pre_promote script exits
// non-zero; the promotion is not attempted.
var ErrPrePromoteFailed = errors.New("postgres: pre_promote script failed")

// Promote promotes a replica and waits until it is out of recovery
// (spec/postgres.md §6). Promoting a primary does nothing.
func (m *Manager) Promote(ctx context.Context) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepPromote, func() error { return m.promote(ctx) })
}

// promoteSQL asks for a promotion over the open connection: what
// "pg_ctl promote -W" asks from a new process (the promote signal file
// and SIGUSR1 to the postmaster), without the cost of starting one in the
// middle of a switchover. warmPromote prepares it.
const promoteSQL = "SELECT pg_promote(false)"

// errNotInRecovery: pg_promote found the server out of recovery already.
var errNotInRecovery = errors.New("postgres: not in recovery")

// requestPromote asks Postgres to promote: pg_promote on the promotion
// connection, or pg_ctl promote for a role without the right to call it.
func (m *Manager) requestPromote(ctx context.Context) error {
	var sent bool
	err := m.run(ctx, &m.ctl, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, promoteSQL).Scan(&sent)
	})
	if err == nil && sent {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55000" { // recovery is not in progress
		return errNotInRecovery
	}
	m.log.Debug("promote: pg_promote failed; using pg_ctl promote", "error", err, "sent", sent)
	cmd, err := m.command(ctx, "pg_ctl", "promote", "-W", "-D", m.cfg.DataDir)
	if err != nil {
		return err
	}
	if _, err := run(cmd); err != nil {
		if in, qerr := m.inRecovery(ctx, &m.ctl); qerr == nil && !in {
			return errNotInRecovery
		}
		return err
	}
	return nil
}

func (m *Manager) promote(ctx context.Context) error {
	if !m.IsRunning() {
		return fmt.Errorf("postgres: promote: %w", ErrNotRunning)
	}
	// No query first: the loop asks only a server it saw in recovery, and
	// pg_promote itself says when it is not (a round trip saved in every
	// switchover). pre_promote runs unless the server is known primary.
	if m.cfg.PrePromote != "" && m.Role() != RolePrimary {
		if err := m.runScript(ctx, m.cfg.PrePromote, nil, nil); err != nil {
			return fmt.Errorf("%w: %w", ErrPrePromoteFailed, err)
		}
	}
	switch err := m.requestPromote(ctx); {
	case errors.Is(err, errNotInRecovery):
		m.setRole(RolePrimary)
		return nil
	case err != nil:
		return fmt.Errorf("postgres: promote: %w", err)
	}
	m.setRole(RolePromoted)
	m.cfg.Callbacks.Fire(callbacks.OnRoleChange, string(RolePrimary))
	deadline := time.Now().Add(m.cfg.PromoteTimeout)
	asked := time.Now()
	for {
		in, err := m.inRecovery(ctx, &m.ctl)
		if err == nil && !in {
			m.setRole(RolePrimary)
			m.log.Info("postgres promoted", "role", RolePrimary)
			return nil
		}
		// The startup process can take the request just as its WAL
		// receiver dies (the old primary finished its shutdown) and then
		// sleep wal_retrieve_retry_interval (5 s by default) before acting
		// on it. Asking again wakes it; a request left over after the
		// promotion is removed by the next postmaster start.
		if err == nil && time.Since(asked) >= repromoteAfter {
			asked = time.Now()
			m.log.Debug("promote: still in recovery; asking again")
			_ = m.requestPromote(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres: promote: still in recovery after %s (last error: %v)", m.cfg.PromoteTimeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: promote: %w", ctx.Err())
		case <-time.After(promotePoll):
		}
	}
}

// promotePoll is how often a promotion is checked for completion: one
// short query on the promotion's own connection, and the time between
// Postgres accepting writes and GET /primary saying so is half of it on
// average.
const promotePoll = 2 * time.Millisecond

func (m *Manager) inRecovery(ctx context.Context, s *session) (bool, error) {
	var in bool
	err := m.run(ctx, s, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&in)
	})
	return in, err
}

// DemoteOptions tunes Demote.
type DemoteOptions struct {
	// Mode of the stop; default fast (with checkpoint).
	Mode StopMode
	// Rewind runs pg_rewind against Upstream when the local timeline
	// diverged (requires Config.UsePgRewind).
	Rewind bool
}

// Demote turns a primary into a replica of up: checkpoint, stop, rewind if
// asked and needed, rewrite as standby, start following up
// (spec/ha-loop.md demote; spec/postgres.md §4.2, §8). on_role_change fires
// with role replica once it runs.
func (m *Manager) Demote(ctx context.Context, up Upstream, opts DemoteOptions) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepDemote, func() error {
		if err := m.stop(ctx, StopOptions{Mode: opts.Mode, NoCallback: true}); err != nil {
			return fmt.Errorf("postgres: demote: %w", err)
		}
		m.setRole(RoleDemoted)
		if opts.Rewind {
			if err := m.rewindIfNeeded(ctx, up); err != nil {
				return fmt.Errorf("postgres: demote: %w", err)
			}
		}
		return m.start(ctx, StartOptions{Role: RoleReplica, Upstream: &up, Callback: callbacks.OnRoleChange})
	})
}

// Follow makes the server a replica of up: a stopped server is started, a
// running one gets its recovery configuration rewritten and is reloaded,
// or restarted when the change needs it (spec/postgres.md §5). It reports
// whether the server was (re)started.
func (m *Manager) Follow(ctx context.Context, up Upstream) (restarted bool, err error) {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	err = m.hook(ctx, StepFollow, func() error {
		prev := m.Role()
		if !m.IsRunning() {
			restarted = true
			return m.start(ctx, StartOptions{Role: RoleReplica, Upstream: &up})
		}
		ch, err := m.WriteConfig(ctx, RoleReplica, &up)
		if err != nil {
			return err
		}
		ev := callbacks.OnRestart
		if prev.IsPrimary() || prev == RoleDemoted {
			ev = callbacks.OnRoleChange
		}
		if ch.NeedsRestart {
			restarted = true
			if err := m.stop(ctx, StopOptions{NoCallback: true}); err != nil {
				return err
			}
			return m.start(ctx, StartOptions{Role: RoleReplica, Upstream: &up, Callback: ev})
		}
		m.setRole(RoleReplica)
		if ch.Changed() {
			return m.reload()
		}
		return nil
	})
	return restarted, err
}

// CrashRecovery brings an uncleanly stopped data directory to a clean
// shutdown by running Postgres in single-user mode (spec/postgres.md §9).
// It does nothing when the server runs or the last shutdown was clean.
func (m *Manager) CrashRecovery(ctx context.Context) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepCrashRecovery, func() error { return m.crashRecovery(ctx) })
}

func (m *Manager) crashRecovery(ctx context.Context) error {
	if m.IsRunning() {
		return nil
	}
	cd, err := m.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("postgres: crash recovery: %w", err)
	}
	if cd.CleanShutdown() {
		return nil
	}
	if _, err := os.Stat(filepath.Join(m.cfg.DataDir, "backup_label")); err == nil {
		m.log.Info("backup_label present; skipping single-user crash recovery")
		return nil
	}
	m.waitOrphans()
	opts := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "postmaster.opts")); err == nil {
		opts = parsePostmasterOpts(string(b))
	}
	opts["archive_mode"] = "on"
	opts["archive_command"] = "false"
	if _, ok := opts["config_file"]; !ok {
		opts["config_file"] = m.confPath()
	}
	m.archiveReadyWAL(ctx)
	_ = os.RemoveAll(filepath.Join(m.cfg.DataDir, "pg_wal", "archive_status"))
	_ = m.ensureDir(filepath.Join(m.cfg.DataDir, "pg_wal", "archive_status"), 0o700)
	m.removeRecoveryFiles()
	names := make([]string, 0, len(opts))
	for k := range opts {
		names = append(names, k)
	}
	sort.Strings(names)
	args := []string{"--single", "-D", m.cfg.DataDir}
	for _, k := range names {
		args = append(args, "-c", k+"="+opts[k])
	}
	args = append(args, "template1")
	cmd, err := m.command(ctx, "postgres", args...)
	if err != nil {
		return fmt.Errorf("postgres: crash recovery: %w", err)
	}
	cmd.Stdin = strings.NewReader("")
	m.log.Info("running crash recovery in single-user mode", "state", cd.State)
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("postgres: crash recovery: %w", err)
	}
	return nil
}

// waitOrphans waits for backends left behind by a killed postmaster; a new
// postmaster refuses to start while they hold the shared memory.
func (m *Manager) waitOrphans() {
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 && !processAlive(pid) {
		m.waitGroupGone(pid, m.cfg.StopTimeout)
	}
}

// parsePostmasterOpts turns postmaster.opts ("/bin/postgres" "-D" "dir"
// "--port=5432" ...) into GUC name -> value.
func parsePostmasterOpts(s string) map[string]string {
	out := map[string]string{}
	words, err := callbacks.Split(strings.TrimSpace(s))
	if err != nil || len(words) < 2 {
		return out
	}
	for i := 1; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-D" || w == "-c":
			if w == "-c" && i+1 < len(words) {
				if k, v, ok := strings.Cut(words[i+1], "="); ok {
					out[strings.ReplaceAll(k, "-", "_")] = v
				}
			}
			i++
		case strings.HasPrefix(w, "--"):
			if k, v, ok := strings.Cut(w[2:], "="); ok {
				out[strings.ReplaceAll(k, "-", "_")] = v
			}
		}
	}
	return out
}

// Recover brings back a server that is not running after a crash, as a
// replica of up: it waits for orphaned backends, runs single-user crash
// recovery when the data directory was a primary that crashed, and starts
// it following up.
func (m *Manager) Recover(ctx context.Context, up Upstream) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepCrashRecovery, func() error {
		if m.IsRunning() {
			return nil
		}
		m.waitOrphans()
		cd, err := m.ControlData(ctx)
		if err != nil {
			return fmt.Errorf("postgres: recover: %w", err)
		}
		if cd.State == "in production" {
			if err := m.crashRecovery(ctx); err != nil {
				return err
			}
		}
		return m.start(ctx, StartOptions{Role: RoleReplica, Upstream: &up})
	})
}

// runScript runs a user script line (shell-split, no shell) as the
// current user, with extra args and env.
func (m *Manager) runScript(ctx context.Context, cmdline string, args []string, env []string) error {
	argv, err := callbacks.Split(cmdline)
	if err != nil || len(argv) == 0 {
		return fmt.Errorf("postgres: parse command %q: %v", cmdline, err)
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	cmd.Env = append(os.Environ(), env...)
	_, err = run(cmd)
	return err
}
