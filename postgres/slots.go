package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/jackc/pgx/v5"
)

// Slot is a replication slot pgwarden should keep.
type Slot struct {
	Name string
	// Type is "physical" or "logical".
	Type string
	// Plugin and Database are required for logical slots.
	Plugin, Database string
}

// SlotInfo is one pg_replication_slots row.
type SlotInfo struct {
	Name, Type, Plugin, Database string
	Active                       bool
	RestartLSN, ConfirmedFlush   LSN
	// Xmin is the slot's xmin (the oldest transaction it asks the server
	// to keep rows for, from hot_standby_feedback); 0 when unset.
	Xmin uint64
}

// SlotsResult reports what EnsureSlots did.
type SlotsResult struct {
	Created, Dropped []string
	// InUse lists unwanted slots that were kept because a walsender or
	// consumer uses them; they are retried next time.
	InUse []string
}

// Slots lists the replication slots of the server.
func (m *Manager) Slots(ctx context.Context) ([]SlotInfo, error) {
	var out []SlotInfo
	err := m.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT slot_name, slot_type, COALESCE(plugin, ''), COALESCE(database, ''), active,
			COALESCE(pg_wal_lsn_diff(restart_lsn, '0/0'), 0)::bigint,
			COALESCE(pg_wal_lsn_diff(confirmed_flush_lsn, '0/0'), 0)::bigint,
			COALESCE(xmin::text::bigint, 0)
			FROM pg_replication_slots ORDER BY slot_name`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SlotInfo, error) {
			var s SlotInfo
			var rl, cf, xmin int64
			err := r.Scan(&s.Name, &s.Type, &s.Plugin, &s.Database, &s.Active, &rl, &cf, &xmin)
			s.RestartLSN, s.ConfirmedFlush, s.Xmin = LSN(rl), LSN(cf), uint64(xmin)
			return s, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list slots: %w", err)
	}
	return out, nil
}

// EnsureSlots makes the slots of a primary match want: missing ones are
// created (physical with immediately reserved WAL; logical in their
// database), slots not in want are dropped unless in use, and a slot whose
// type, plugin or database differs is recreated. Only call it on a primary.
func (m *Manager) EnsureSlots(ctx context.Context, want []Slot) (SlotsResult, error) {
	var res SlotsResult
	have, err := m.Slots(ctx)
	if err != nil {
		return res, err
	}
	wanted := map[string]Slot{}
	for _, s := range want {
		if s.Type == "" {
			s.Type = "physical"
		}
		wanted[s.Name] = s
	}
	existing := map[string]SlotInfo{}
	var errs []error
	for _, h := range have {
		w, ok := wanted[h.Name]
		if ok && w.Type == h.Type && (w.Type == "physical" || (w.Plugin == h.Plugin && w.Database == h.Database)) {
			existing[h.Name] = h
			continue
		}
		if h.Active {
			res.InUse = append(res.InUse, h.Name)
			m.log.Warn("replication slot is not wanted but in use; keeping it", "slot", h.Name)
			existing[h.Name] = h
			continue
		}
		if err := m.Exec(ctx, "SELECT pg_drop_replication_slot($1)", h.Name); err != nil {
			errs = append(errs, fmt.Errorf("drop slot %s: %w", h.Name, err))
			continue
		}
		res.Dropped = append(res.Dropped, h.Name)
	}
	names := make([]string, 0, len(wanted))
	for n := range wanted {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := existing[n]; ok {
			continue
		}
		w := wanted[n]
		var err error
		if w.Type == "logical" {
			err = m.onDatabase(ctx, w.Database, func(c *pgx.Conn) error {
				_, err := c.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, $2)", w.Name, w.Plugin)
				return err
			})
		} else {
			err = m.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", w.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("create slot %s: %w", n, err))
			continue
		}
		res.Created = append(res.Created, n)
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("postgres: ensure slots: %w", errors.Join(errs...))
	}
	return res, nil
}

// onDatabase runs fn on a short-lived connection to database db, without
// statement timeout (slot creation and advance may take long).
func (m *Manager) onDatabase(ctx context.Context, db string, fn func(*pgx.Conn) error) error {
	cc, err := m.connConfig(m.cfg.Superuser, "slots")
	if err != nil {
		return err
	}
	if db != "" {
		cc.Database = db
	}
	cc.RuntimeParams["statement_timeout"] = "0"
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: connect to database %s: %w", db, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	return fn(c)
}

// CopyLogicalSlots copies the given permanent logical slots from the
// primary up into this replica (spec/postgres.md §12, PG11+ approach): it
// reads each slot's state file from the primary with
// pg_read_binary_file, and, because Postgres only loads slots at start,
// stops the replica, writes pg_replslot/<name>/state and starts it again
// following up. Slots already present locally are skipped. It returns the
// names copied.
func (m *Manager) CopyLogicalSlots(ctx context.Context, up Upstream, names []string) ([]string, error) {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	local := map[string]bool{}
	if m.IsRunning() {
		have, err := m.Slots(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range have {
			local[s.Name] = true
		}
	}
	c, err := m.connectUpstream(ctx, up, m.cfg.Rewind)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	states := map[string][]byte{}
	for _, n := range names {
		if local[n] {
			continue
		}
		var typ string
		if err := c.QueryRow(ctx, "SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1", n).Scan(&typ); err != nil {
			return nil, fmt.Errorf("postgres: copy slot %s: find on %s: %w", n, up.Name, err)
		}
		if typ != "logical" {
			continue
		}
		var data []byte
		if err := c.QueryRow(ctx, "SELECT pg_read_binary_file($1)", "pg_replslot/"+n+"/state").Scan(&data); err != nil {
			return nil, fmt.Errorf("postgres: copy slot %s: read state: %w", n, err)
		}
		states[n] = data
	}
	if len(states) == 0 {
		return nil, nil
	}
	wasRunning := m.IsRunning()
	if wasRunning {
		if err := m.stop(ctx, StopOptions{NoCallback: true}); err != nil {
			return nil, err
		}
	}
	var copied []string
	for n, data := range states {
		dir := filepath.Join(m.cfg.DataDir, "pg_replslot", n)
		if err := m.ensureDir(dir, 0o700); err != nil {
			return copied, err
		}
		if err := m.writeFile(filepath.Join(dir, "state"), data, 0o600); err != nil {
			return copied, err
		}
		if f, err := os.Open(dir); err == nil {
			_ = f.Sync()
			f.Close()
		}
		copied = append(copied, n)
	}
	sort.Strings(copied)
	m.log.Info("copied logical slots from the primary", "slots", copied, "leader", up.Name)
	// A replica keeping logical slots needs hot_standby_feedback so the
	// primary keeps the catalog rows they need (spec/config.md §5).
	m.mu.Lock()
	if m.overrides == nil {
		m.overrides = map[string]string{}
	}
	m.overrides["hot_standby_feedback"] = "on"
	m.mu.Unlock()
	if wasRunning {
		return copied, m.start(ctx, StartOptions{Role: RoleReplica, Upstream: &up, Callback: 0, NoCallback: true})
	}
	return copied, nil
}

// AdvanceSlots moves logical slots on this server forward to the given
// positions (the primary's confirmed_flush_lsn of each slot) with
// pg_replication_slot_advance, on a connection to each slot's database.
// Slots already at or past the position are left alone.
func (m *Manager) AdvanceSlots(ctx context.Context, to map[string]LSN) error {
	have, err := m.Slots(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range have {
		target, ok := to[s.Name]
		if !ok || s.Type != "logical" || s.ConfirmedFlush >= target {
			continue
		}
		err := m.onDatabase(ctx, s.Database, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", s.Name, target.String())
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("advance slot %s to %s: %w", s.Name, target, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("postgres: advance slots: %w", errors.Join(errs...))
	}
	return nil
}
