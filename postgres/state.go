package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// State is one observation of the local server (spec/postgres.md §12).
type State struct {
	// Running is true when a postmaster runs on the data directory.
	Running bool
	// Accepting is true when the query succeeded.
	Accepting bool
	// Starting is true when the postmaster runs but rejects connections
	// because it is starting up (or shutting down): pg_isready's
	// "rejecting" (spec/postgres.md §12, last paragraph).
	Starting bool
	// InRecovery is pg_is_in_recovery().
	InRecovery bool
	// Timeline is the current timeline: from the WAL file name on a
	// primary, from the WAL receiver (or the last checkpoint) on a replica.
	Timeline int
	// WALLSN is the flush LSN on a primary (0 in recovery).
	WALLSN LSN
	// ReceiveLSN and ReplayLSN are set on replicas.
	ReceiveLSN, ReplayLSN LSN
	// ReplayPaused reports pg_is_wal_replay_paused() in recovery.
	ReplayPaused bool
	// WALReceiver describes pg_stat_get_wal_receiver(); nil when no
	// receiver runs.
	WALReceiver *WALReceiver
	// Replication are the pg_stat_replication rows (on any role).
	Replication []Replica
	// PostmasterStart is pg_postmaster_start_time().
	PostmasterStart time.Time
	// SystemID is the database system identifier.
	SystemID string
	// SynchronousStandbyNames is current_setting('synchronous_standby_names');
	// ParseSyncStandbyNames decodes it.
	SynchronousStandbyNames string
	// Control holds pg_controldata facts; read only when the server is not
	// running and the data directory holds a cluster (nil otherwise).
	Control *ControlData
	// StandbySignal reports standby.signal or recovery.signal in the data
	// directory.
	StandbySignal bool
}

// LSN returns the position Patroni publishes: WAL LSN on a primary, the
// larger of receive and replay LSN on a replica.
func (s State) LSN() LSN {
	if !s.InRecovery {
		return s.WALLSN
	}
	return max(s.ReceiveLSN, s.ReplayLSN)
}

// WALReceiver is the state of the WAL receiver of a replica.
type WALReceiver struct {
	Status      string
	ReceivedTLI int
	SlotName    string
	Conninfo    string
}

// Replica is one pg_stat_replication row.
type Replica struct {
	PID             int
	ApplicationName string
	State           string
	SyncState       string
	WriteLSN        LSN
	FlushLSN        LSN
	ReplayLSN       LSN
}

// PendingParam is a parameter whose change needs a restart.
type PendingParam struct {
	Name     string
	Old, New string
}

// statementTimeout is the statement timeout of the observation
// connection: as Patroni (2 s), so a stuck server cannot stall the loop
// longer than that per query.
const statementTimeout = "2000"

// connectTimeout is libpq's connect_timeout Patroni uses (3 s).
const connectTimeout = 3 * time.Second

// connConfig builds a pgx configuration for the local server.
func (m *Manager) connConfig(u User, purpose string) (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("postgres: connection config: %w", err)
	}
	cc.Host = m.cfg.ConnectHost
	cc.Port = uint16(m.cfg.Port)
	cc.Database = m.cfg.Database
	cc.User = u.Username
	cc.Password = u.Password
	cc.ConnectTimeout = connectTimeout
	cc.TLSConfig = nil
	cc.Fallbacks = nil
	cc.RuntimeParams = map[string]string{
		"application_name":  "Patroni " + purpose,
		"statement_timeout": statementTimeout,
		"search_path":       "pg_catalog",
	}
	return cc, nil
}

func (m *Manager) connect(ctx context.Context, u User, purpose string, params map[string]string) (*pgx.Conn, error) {
	cc, err := m.connConfig(u, purpose)
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		cc.RuntimeParams[k] = v
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s:%d as %s: %w", cc.Host, cc.Port, u.Username, err)
	}
	return c, nil
}

// session is one long-lived connection to the local server. Its mutex is
// held for a whole query, so that queries on it never interleave.
type session struct {
	app  string // purpose, in application_name "Patroni <app>"
	mu   sync.Mutex
	conn *pgx.Conn
}

// run runs fn on s, connecting when needed; a failure that is not a SQL
// error drops the connection so that the next call reconnects.
func (m *Manager) run(ctx context.Context, s *session, fn func(*pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.conn.IsClosed() {
		c, err := m.connect(ctx, m.cfg.Superuser, s.app, nil)
		if err != nil {
			return err
		}
		s.conn = c
	}
	err := fn(s.conn)
	var pgErr *pgconn.PgError
	if err != nil && !errors.As(err, &pgErr) {
		s.conn.Close(context.Background())
		s.conn = nil
	}
	return err
}

// adopt makes c the session's connection when it has none; it reports
// whether it did (otherwise the caller still owns c).
func (s *session) adopt(c *pgx.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && !s.conn.IsClosed() {
		return false
	}
	s.conn = c
	return true
}

// open reports whether the session holds a connection.
func (s *session) open() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil && !s.conn.IsClosed()
}

// close closes the session's connection, if any, and returns the
// process ID of the backend that served it (0 if none was open).
func (s *session) close() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return 0
	}
	pid := int(s.conn.PgConn().PID())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.conn.Close(ctx)
	cancel()
	s.conn = nil
	return pid
}

// withConn runs fn on the observation connection (State, queries of the
// HA loop and the REST API).
func (m *Manager) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	return m.run(ctx, &m.obs, fn)
}

// closeConn closes both long-lived connections and returns the process
// IDs of the backends that served them.
func (m *Manager) closeConn() []int {
	var pids []int
	for _, s := range []*session{&m.obs, &m.ctl} {
		if pid := s.close(); pid != 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Exec runs a statement on the local server over the observation
// connection.
func (m *Manager) Exec(ctx context.Context, sql string, args ...any) error {
	return m.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
}

// QueryRow runs a query on the local server and scans one row.
func (m *Manager) QueryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	return m.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, sql, args...).Scan(dest...)
	})
}

const stateQuery = `
SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN 0
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  CASE WHEN pg_is_in_recovery() THEN 0
       ELSE pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint END,
  COALESCE(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::bigint,
  COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0'), 0)::bigint,
  pg_is_in_recovery() AND pg_is_wal_replay_paused(),
  pg_postmaster_start_time(),
  (SELECT system_identifier::text FROM pg_control_system()),
  (SELECT timeline_id FROM pg_control_checkpoint()),
  current_setting('synchronous_standby_names'),
  w.status, COALESCE(w.received_tli, 0), COALESCE(w.slot_name, ''), COALESCE(w.conninfo, '')
FROM (SELECT 1) AS one LEFT JOIN pg_stat_get_wal_receiver() AS w ON w.pid IS NOT NULL`

const replicationQuery = `
SELECT pid, COALESCE(application_name, ''), COALESCE(state, ''), COALESCE(sync_state, ''),
  COALESCE(pg_wal_lsn_diff(write_lsn, '0/0'), 0)::bigint,
  COALESCE(pg_wal_lsn_diff(flush_lsn, '0/0'), 0)::bigint,
  COALESCE(pg_wal_lsn_diff(replay_lsn, '0/0'), 0)::bigint
FROM pg_stat_replication ORDER BY application_name, pid`

// State observes the server. A stopped server gives State{} and no error;
// a running one that does not answer gives Running true and the error.
func (m *Manager) State(ctx context.Context) (State, error) {
	var s State
	s.Running = m.IsRunning()
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if _, err := os.Stat(filepath.Join(m.cfg.DataDir, f)); err == nil {
			s.StandbySignal = true
		}
	}
	if !s.Running {
		m.closeConn()
		if m.IsInitialized() {
			cd, err := m.ControlData(ctx)
			if err != nil {
				return s, err
			}
			s.Control = &cd
			s.SystemID = cd.SystemID
			s.Timeline = cd.CheckpointTimeline
		}
		return s, nil
	}
	err := m.withConn(ctx, func(c *pgx.Conn) error {
		var (
			tl, ckptTL           int32
			wal, replay, receive int64
			status               *string
			recvTLI              int32
			slot, conninfo       string
		)
		if err := c.QueryRow(ctx, stateQuery).Scan(&s.InRecovery, &tl, &wal, &replay, &receive,
			&s.ReplayPaused, &s.PostmasterStart, &s.SystemID, &ckptTL, &s.SynchronousStandbyNames, &status, &recvTLI, &slot, &conninfo); err != nil {
			return err
		}
		s.Timeline = int(tl)
		s.WALLSN, s.ReplayLSN, s.ReceiveLSN = LSN(wal), LSN(replay), LSN(receive)
		if status != nil {
			s.WALReceiver = &WALReceiver{Status: *status, ReceivedTLI: int(recvTLI), SlotName: slot, Conninfo: conninfo}
		}
		if s.InRecovery {
			s.Timeline = int(ckptTL)
			if s.WALReceiver != nil && s.WALReceiver.ReceivedTLI > s.Timeline {
				s.Timeline = s.WALReceiver.ReceivedTLI
			}
		}
		rows, err := c.Query(ctx, replicationQuery)
		if err != nil {
			return err
		}
		s.Replication, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Replica, error) {
			var (
				rp       Replica
				pid      int32
				w, f, rl int64
			)
			err := r.Scan(&pid, &rp.ApplicationName, &rp.State, &rp.SyncState, &w, &f, &rl)
			rp.PID, rp.WriteLSN, rp.FlushLSN, rp.ReplayLSN = int(pid), LSN(w), LSN(f), LSN(rl)
			return rp, err
		})
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "57P03" || pgErr.Code == "57P01") {
			s.Starting = true
		}
		return s, fmt.Errorf("postgres: read state: %w", err)
	}
	s.Accepting = true
	if s.InRecovery {
		m.warmPromote(ctx)
	}
	return s, nil
}

// warmPromote opens the promotion connection of a replica ahead of time
// and runs the promotion's queries once: a new backend and its first
// queries cost tens of milliseconds on a busy host, too much to pay in the
// middle of a switchover. A failure is left to the promotion, which
// connects again.
func (m *Manager) warmPromote(ctx context.Context) {
	if m.ctl.open() {
		return
	}
	// The first queries of a new backend load its caches: run them now.
	err := m.run(ctx, &m.ctl, func(c *pgx.Conn) error {
		var in bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&in); err != nil {
			return err
		}
		_, err := c.Prepare(ctx, promoteSQL, promoteSQL)
		return err
	})
	if err != nil {
		m.log.Debug("promotion connection not opened", "error", err)
	}
}

// PendingRestart returns the parameters the server reports as
// pending_restart, with the running value and the value in the config file
// (read with postgres -C; spec/postgres.md §4.4).
func (m *Manager) PendingRestart(ctx context.Context) ([]PendingParam, error) {
	var out []PendingParam
	var unitOf []string
	err := m.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT name, setting, COALESCE(unit, '') FROM pg_settings WHERE pending_restart ORDER BY name`)
		if err != nil {
			return err
		}
		var units []string
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingParam, error) {
			var p PendingParam
			var unit string
			err := r.Scan(&p.Name, &p.Old, &unit)
			p.Old = humanValue(p.Old, unit)
			units = append(units, unit)
			return p, err
		})
		unitOf = units
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: pending restart: %w", err)
	}
	for i := range out {
		if v, err := m.OfflineSetting(ctx, out[i].Name); err == nil {
			out[i].New = humanValue(v, unitOf[i])
		}
	}
	return out, nil
}

// OfflineSetting reads a GUC from the configuration files with
// `postgres -C` (works whether or not the server runs).
func (m *Manager) OfflineSetting(ctx context.Context, name string) (string, error) {
	cmd, err := m.command(ctx, "postgres", "-D", m.cfg.DataDir, "--config-file="+m.confPath(), "-C", name)
	if err != nil {
		return "", err
	}
	var buf strings.Builder
	cmd.Stdout = &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("postgres: postgres -C %s: %w", name, err)
	}
	return strings.TrimSpace(buf.String()), nil
}

// humanValue converts a pg_settings value with a unit to a readable one
// ("16384" with unit "8kB" -> "128MB").
func humanValue(v, unit string) string {
	mult := map[string]int64{"B": 1, "kB": 1 << 10, "8kB": 8 << 10, "16kB": 16 << 10, "MB": 1 << 20, "16MB": 16 << 20}[unit]
	n, err := strconv.ParseInt(v, 10, 64)
	if mult == 0 || err != nil || n <= 0 {
		if unit == "ms" || unit == "s" || unit == "min" {
			return v + unit
		}
		return v
	}
	b := n * mult
	for _, u := range []struct {
		s string
		n int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if b%u.n == 0 {
			return strconv.FormatInt(b/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(b, 10) + "B"
}
