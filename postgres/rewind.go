package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Rewind errors.
var (
	// ErrRewindFailed is returned when pg_rewind ran and failed.
	ErrRewindFailed = errors.New("postgres: pg_rewind failed")
	// ErrCannotRewind is returned when pg_rewind is needed but not
	// possible (disabled, no wal_log_hints/checksums, binary missing).
	ErrCannotRewind = errors.New("postgres: cannot rewind")
	// ErrDiverged is returned when the local timeline diverged and cannot
	// be rewound: the node needs a new clone.
	ErrDiverged = errors.New("postgres: local timeline diverged from the leader")
)

// HistoryEntry is one line of a timeline history file: the parent
// timeline and the LSN where the next timeline forked off it.
type HistoryEntry struct {
	Timeline  int
	SwitchLSN LSN
	Reason    string
}

// ParseHistory parses a .history file ("tl<TAB>X/Y<TAB>reason" lines,
// spec/postgres.md §13).
func ParseHistory(data string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("postgres: parse history line %q", line)
		}
		tl, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("postgres: parse history line %q: %w", line, err)
		}
		lsn, err := ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("postgres: parse history line %q: %w", line, err)
		}
		out = append(out, HistoryEntry{Timeline: tl, SwitchLSN: lsn, Reason: strings.Join(f[2:], " ")})
	}
	return out, nil
}

// Diverged decides from the leader's timeline history whether a node that
// stopped at (localTL, localLSN) has WAL the leader on leaderTL does not:
// true when the node is on a timeline the leader left before the node's
// position, or on a newer timeline than the leader
// (spec/postgres.md §8).
func Diverged(localTL int, localLSN LSN, leaderTL int, history []HistoryEntry) bool {
	switch {
	case localTL == leaderTL:
		return false
	case localTL > leaderTL:
		return true
	}
	for _, h := range history {
		if h.Timeline == localTL {
			return localLSN > h.SwitchLSN
		}
	}
	// The leader's history does not mention our timeline: it never was on
	// it, so we cannot follow without rewinding.
	return true
}

// localPosition returns the timeline and the last WAL position of a
// stopped data directory from pg_controldata.
func (m *Manager) localPosition(ctx context.Context) (int, LSN, error) {
	cd, err := m.ControlData(ctx)
	if err != nil {
		return 0, 0, err
	}
	if !cd.CleanShutdown() {
		return 0, 0, fmt.Errorf("postgres: data directory was not shut down cleanly (state %q)", cd.State)
	}
	tl, lsn := cd.CheckpointTimeline, cd.CheckpointLSN
	if cd.State == "shut down in recovery" && cd.MinRecoveryLSN > lsn {
		lsn = cd.MinRecoveryLSN
		if cd.MinRecoveryTLI > 0 {
			tl = cd.MinRecoveryTLI
		}
	}
	return tl, lsn, nil
}

// leaderTimeline reads the upstream's current timeline and history over a
// normal connection with the rewind credentials.
func (m *Manager) leaderTimeline(ctx context.Context, up Upstream) (int, []HistoryEntry, error) {
	c, err := m.connectUpstream(ctx, up, m.cfg.Rewind)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	var tl int32
	err = c.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
		ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END`).Scan(&inRecovery, &tl)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: read leader timeline: %w", err)
	}
	if inRecovery {
		return 0, nil, fmt.Errorf("postgres: leader %s is still in recovery", up.Name)
	}
	if err := m.leaderCheckpoint(ctx, up, int(tl)); err != nil {
		return 0, nil, err
	}
	if tl <= 1 {
		return int(tl), nil, nil
	}
	var data []byte
	if err := c.QueryRow(ctx, "SELECT pg_read_binary_file($1)", fmt.Sprintf("pg_wal/%08X.history", tl)).Scan(&data); err != nil {
		return 0, nil, fmt.Errorf("postgres: read leader timeline history: %w", err)
	}
	h, err := ParseHistory(string(data))
	return int(tl), h, err
}

// leaderCheckpoint makes sure the leader's control file shows its current
// timeline: right after a promotion it does not until the first
// checkpoint, and pg_rewind would then see no divergence. Like Patroni for
// a leader that does not say it checkpointed, it issues CHECKPOINT with
// the superuser credentials.
func (m *Manager) leaderCheckpoint(ctx context.Context, up Upstream, tl int) error {
	c, err := m.connectUpstream(ctx, up, m.cfg.Superuser)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var ckptTL int32
	if err := c.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&ckptTL); err != nil {
		return fmt.Errorf("postgres: read leader checkpoint timeline: %w", err)
	}
	if int(ckptTL) == tl {
		return nil
	}
	m.log.Info("leader has not run a checkpoint on its new timeline yet; requesting one", "leader", up.Name, "timeline", tl)
	if _, err := c.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("postgres: checkpoint on leader %s: %w", up.Name, err)
	}
	return nil
}

func (m *Manager) connectUpstream(ctx context.Context, up Upstream, u User) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc.Host, cc.Port = up.Host, uint16(up.Port)
	cc.Database = up.Database
	if cc.Database == "" {
		cc.Database = m.cfg.Database
	}
	cc.User, cc.Password = u.Username, u.Password
	cc.ConnectTimeout = connectTimeout
	cc.TLSConfig, cc.Fallbacks = nil, nil
	cc.RuntimeParams = map[string]string{"statement_timeout": statementTimeout, "search_path": "pg_catalog"}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s (%s): %w", up.Name, up.Address(), err)
	}
	return c, nil
}

// NeedsRewind reports whether the stopped local data directory diverged
// from up.
func (m *Manager) NeedsRewind(ctx context.Context, up Upstream) (bool, error) {
	tl, lsn, err := m.localPosition(ctx)
	if err != nil {
		return false, err
	}
	ltl, hist, err := m.leaderTimeline(ctx, up)
	if err != nil {
		return false, err
	}
	d := Diverged(tl, lsn, ltl, hist)
	m.log.Info("checked timeline divergence", "timeline", tl, "lsn", lsn, "leader_timeline", ltl, "diverged", d)
	return d, nil
}

// CanRewind checks pg_rewind's prerequisites: enabled, pg_rewind present,
// and wal_log_hints or data checksums (spec/postgres.md §8).
func (m *Manager) CanRewind(ctx context.Context) error {
	if !m.cfg.UsePgRewind {
		return fmt.Errorf("%w: use_pg_rewind is off", ErrCannotRewind)
	}
	cmd, err := m.command(ctx, "pg_rewind", "--help")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCannotRewind, err)
	}
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("%w: %w", ErrCannotRewind, err)
	}
	cd, err := m.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCannotRewind, err)
	}
	if !cd.WALLogHints && cd.ChecksumVersion == 0 {
		return fmt.Errorf("%w: neither wal_log_hints nor data checksums are on", ErrCannotRewind)
	}
	return nil
}

// Rewind stops the server if needed, makes sure it was shut down cleanly,
// and runs pg_rewind against up with Config.RewindTimeout. On failure the
// data directory is kept unless RemoveDataDirectoryOnRewindFailure.
func (m *Manager) Rewind(ctx context.Context, up Upstream) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	return m.hook(ctx, StepRewind, func() error { return m.rewind(ctx, up) })
}

func (m *Manager) rewind(ctx context.Context, up Upstream) error {
	if err := m.CanRewind(ctx); err != nil {
		return err
	}
	if err := m.stop(ctx, StopOptions{NoCheckpoint: true, NoCallback: true}); err != nil {
		return fmt.Errorf("postgres: rewind: %w", err)
	}
	m.archiveReadyWAL(ctx)
	if err := m.crashRecovery(ctx); err != nil {
		return fmt.Errorf("postgres: rewind: %w", err)
	}
	if err := m.WritePgPass(&up); err != nil {
		return err
	}
	args := []string{}
	if rc := m.RecoveryParameters(nil)["restore_command"]; rc != "" {
		args = append(args, "--restore-target-wal")
		if m.cfg.ConfigDir != m.cfg.DataDir {
			args = append(args, "--config-file="+m.confPath())
		}
	}
	args = append(args, "-D", m.cfg.DataDir, "--source-server", m.cloneDSN(&up, m.cfg.Rewind))
	opts, _ := m.cfg.RewindOptions.without(forbiddenRewind)
	args = append(args, opts.Args()...)
	rctx, cancel := context.WithTimeout(ctx, m.cfg.RewindTimeout)
	defer cancel()
	cmd, err := m.command(rctx, "pg_rewind", args...)
	if err != nil {
		return err
	}
	cmd.Env = append(cmd.Env, "PGPASSFILE="+m.cfg.PgPass, "PGOPTIONS=-c statement_timeout=0", "LANG=C", "LC_ALL=C")
	m.log.Info("running pg_rewind", "leader", up.Name)
	out, err := run(cmd)
	if err != nil {
		var ee *exec.ExitError
		_ = errors.As(err, &ee)
		if m.cfg.RemoveDataDirectoryOnRewindFailure {
			if rerr := m.RemoveDataDir(); rerr != nil {
				m.log.Error("cannot remove data directory after failed rewind", "error", rerr)
			}
		}
		return fmt.Errorf("%w: %w", ErrRewindFailed, err)
	}
	m.log.Info("pg_rewind finished", "output", tail(string(out), 3))
	return nil
}

// rewindIfNeeded rewinds when the stopped data directory diverged from up.
func (m *Manager) rewindIfNeeded(ctx context.Context, up Upstream) error {
	if err := m.crashRecovery(ctx); err != nil {
		return err
	}
	need, err := m.NeedsRewind(ctx, up)
	if err != nil {
		return err
	}
	if !need {
		return nil
	}
	if cerr := m.CanRewind(ctx); cerr != nil {
		if m.cfg.RemoveDataDirectoryOnDivergedTimelines {
			if rerr := m.RemoveDataDir(); rerr != nil {
				m.log.Error("cannot remove diverged data directory", "error", rerr)
			}
		}
		return fmt.Errorf("%w: %w", ErrDiverged, cerr)
	}
	return m.rewind(ctx, up)
}

// archiveReadyWAL archives WAL segments still marked .ready, with the
// configured archive_command through a shell, when archive_mode is on or
// always (spec/postgres.md §8, §9): a crashed or rewound primary must not
// lose segments the archive never got. A failure stops at that segment
// and is logged; the remaining segments stay .ready.
func (m *Manager) archiveReadyWAL(ctx context.Context) {
	mode, err := m.OfflineSetting(ctx, "archive_mode")
	if err != nil || (mode != "on" && mode != "always") {
		return
	}
	tmpl, err := m.OfflineSetting(ctx, "archive_command")
	if err != nil || tmpl == "" || tmpl == "(disabled)" {
		return
	}
	status := filepath.Join(m.cfg.DataDir, "pg_wal", "archive_status")
	entries, err := os.ReadDir(status)
	if err != nil {
		return
	}
	for _, e := range entries {
		f, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || len(f) != 24 {
			continue
		}
		cmdline := strings.NewReplacer("%p", filepath.Join("pg_wal", f), "%f", f, "%%", "%").Replace(tmpl)
		cmd := m.commandPath(ctx, "/bin/sh", "-c", cmdline)
		cmd.Dir = m.cfg.DataDir
		if _, err := run(cmd); err != nil {
			m.log.Warn("cannot archive WAL segment marked .ready", "segment", f, "error", err)
			return
		}
		if err := os.Rename(filepath.Join(status, e.Name()), filepath.Join(status, f+".done")); err != nil {
			m.log.Warn("cannot mark WAL segment archived", "segment", f, "error", err)
			return
		}
		m.log.Info("archived WAL segment left by the stopped server", "segment", f)
	}
}

// TimelineHistory returns the history of the local current timeline from
// pg_wal/<timeline>.history (empty on timeline 1). timeline is the current
// timeline (State.Timeline).
func (m *Manager) TimelineHistory(timeline int) ([]HistoryEntry, error) {
	if timeline <= 1 {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "pg_wal", fmt.Sprintf("%08X.history", timeline)))
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline history: %w", err)
	}
	return ParseHistory(string(b))
}
