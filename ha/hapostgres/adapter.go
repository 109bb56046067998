package hapostgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/postgres"
)

// Options configure an Adapter. The zero value is valid: no pg_rewind, no
// notifications, no timeline history for running replicas.
type Options struct {
	// Name is this member's name. TimelineHistory writes it as the
	// new_leader of the newest line (Patroni's history format).
	Name string
	// UseRewind is use_pg_rewind: State reports CanRewind only when it is
	// set and pg_rewind's prerequisites hold (the binary, wal_log_hints or
	// data checksums).
	UseRewind bool
	// Changed is called after Start or Promote succeeded, and by Notify,
	// so that a cached status (the REST API's) is refreshed at once. It is
	// called from the goroutine that ran the operation and must not block.
	Changed func()
	// Promoted is called after a promotion succeeded, before Changed: the
	// server has just been seen to accept writes, so a caller can publish
	// that it is a primary without querying a server busy with its
	// end-of-recovery checkpoint. Same goroutine rules as Changed.
	Promoted func()
	// History reads the cluster's timeline history (the leader's history
	// file as published in the DCS, dcs.Cluster.History). Diverged uses it
	// to check a running replica; nil means that check answers "unknown"
	// until the replica is stopped and pg_controldata can tell.
	History func(ctx context.Context) (*dcs.TimelineHistory, error)
}

// Adapter is the ha.Postgres on top of a postgres.Manager: a thin
// translation from the HA loop's small interface to the manager. It also
// implements ha.GracefulStopper, ha.DataDirRemover and ha.BasebackupCloner.
// Its methods are safe for concurrent use, as ha.Node requires (State runs
// while a long operation is in progress).
type Adapter struct {
	m    *postgres.Manager
	name string

	mu sync.Mutex
	// upstream is the member Postgres was last configured to follow ("" =
	// none); guarded by mu.
	upstream string
	// syncChangedLSN is the WAL position when synchronous_standby_names was
	// last changed; guarded by mu.
	syncChangedLSN dcs.LSN
	// canRewind caches the result of the pg_rewind prerequisites check
	// for the postmaster started at canRewindPM (zero: stopped); guarded
	// by mu. It is dropped while the data directory is empty, so a check
	// made before a clone or initdb is never reused after it.
	canRewind   *bool
	canRewindPM time.Time
	useRewind   bool

	// tlPostmaster and tlSeen remember the highest timeline observed in
	// recovery for one postmaster incarnation; guarded by mu. See
	// ReplicaTimeline.
	tlPostmaster time.Time
	tlSeen       int
	// versionNum is server_version_num of the postmaster started at
	// versionPM; guarded by mu.
	versionNum int
	versionPM  time.Time

	// changed is called after a start or promotion succeeded, so the
	// REST API's cached status is refreshed at once; promoted before it
	// after a promotion.
	changed, promoted func()

	// standby is set in a standby cluster, whose leader follows the
	// remote primary (ha.RemoteName) through standbySlot ("" = no slot);
	// guarded by mu.
	standby     bool
	standbySlot string

	// history reads the cluster's timeline history (the leader's history
	// file as published in the DCS); used to check a running replica.
	history func(ctx context.Context) (*dcs.TimelineHistory, error)
}

// New returns the Adapter of the data directory m manages. The caller
// keeps ownership of m (and closes it).
func New(m *postgres.Manager, opts Options) *Adapter {
	return &Adapter{m: m, name: opts.Name, useRewind: opts.UseRewind,
		changed: opts.Changed, promoted: opts.Promoted, history: opts.History}
}

// Upstream returns the name of the member Postgres was last configured to
// follow: "" for a primary, a stopped server or a replica without an
// upstream, ha.RemoteName for the leader of a standby cluster.
func (p *Adapter) Upstream() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream
}

// ReplicaTimeline returns st's timeline, never lower than one already seen
// by the same postmaster while in recovery. postgres.State takes a replica's
// timeline from its WAL receiver, else from the last checkpoint; while the
// receiver is down (the primary is switching over) the checkpoint's older
// timeline would make a healthy candidate look behind the cluster. A
// replica's timeline never goes back while its postmaster runs.
func (p *Adapter) ReplicaTimeline(st postgres.State) int {
	if !st.InRecovery || st.PostmasterStart.IsZero() {
		return st.Timeline
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !st.PostmasterStart.Equal(p.tlPostmaster) {
		p.tlPostmaster, p.tlSeen = st.PostmasterStart, 0
	}
	p.tlSeen = max(p.tlSeen, st.Timeline)
	return p.tlSeen
}

var (
	_ ha.Postgres         = (*Adapter)(nil)
	_ ha.GracefulStopper  = (*Adapter)(nil)
	_ ha.DataDirRemover   = (*Adapter)(nil)
	_ ha.BasebackupCloner = (*Adapter)(nil)
)

// State reads the local state through postgres.Manager.State, its
// replication slots and pending restarts, and pg_control when stopped.
func (p *Adapter) State(ctx context.Context) (ha.PGState, error) {
	var out ha.PGState
	out.DataDir = ha.DataPresent
	if !p.m.IsInitialized() {
		out.DataDir = ha.DataEmpty
	}
	st, err := p.m.State(ctx)
	out.Running = st.Running
	out.Starting = st.Starting
	if err != nil && !st.Starting {
		return out, fmt.Errorf("postgres state: %w", err)
	}
	out.SysID = st.SystemID
	out.Timeline = p.ReplicaTimeline(st)
	out.LSN = st.LSN()
	out.PostmasterStart = st.PostmasterStart
	if st.Running && st.Accepting {
		out.Primary = !st.InRecovery
		out.Streaming = st.WALReceiver != nil && st.WALReceiver.Status == "streaming"
		if st.InRecovery {
			out.ReceiveLSN, out.ReplayLSN = st.ReceiveLSN, st.ReplayLSN
			p.mu.Lock()
			out.Upstream = p.upstream
			p.mu.Unlock()
		}
		spec, perr := postgres.ParseSyncStandbyNames(st.SynchronousStandbyNames)
		if perr == nil && len(spec.Names) > 0 {
			for _, n := range spec.Names {
				if n == config.ReservedName {
					out.SyncPlaceholder = true
					continue
				}
				out.SyncStandbyNames = append(out.SyncStandbyNames, n)
			}
			slices.Sort(out.SyncStandbyNames)
			out.SyncNum = max(spec.Num, 1)
		}
		for _, r := range st.Replication {
			out.Replicas = append(out.Replicas, ha.ReplicaStat{
				Name:      r.ApplicationName,
				Streaming: r.State == "streaming",
				SyncState: r.SyncState,
				LSN:       r.FlushLSN,
			})
		}
		if slots, serr := p.m.Slots(ctx); serr == nil {
			out.SlotLSNs = map[string]dcs.LSN{}
			for _, s := range slots {
				switch s.Type {
				case "physical":
					out.Slots = append(out.Slots, s.Name)
					out.SlotLSNs[s.Name] = s.RestartLSN
					if s.Xmin != 0 {
						out.SlotsWithXmin = append(out.SlotsWithXmin, s.Name)
					}
				case "logical":
					out.LogicalSlots = append(out.LogicalSlots, s.Name)
					out.SlotLSNs[s.Name] = s.ConfirmedFlush
				}
			}
		}
		out.ServerVersion = p.serverVersion(ctx, st.PostmasterStart)
		if reason, err := PendingRestart(ctx, p.m); err == nil && reason != nil {
			out.PendingRestart, out.PendingRestartReason = true, reason
		}
	}
	if !st.Running {
		if _, err := os.Stat(filepath.Join(p.m.DataDir(), "backup_label")); err == nil {
			out.BackupLabel = true
		}
	}
	if c := st.Control; c != nil {
		if out.SysID == "" {
			out.SysID = c.SystemID
		}
		out.CleanShutdown = c.CleanShutdown()
		out.WasPrimary = c.State == "in production" || (c.State == "shut down" && !st.StandbySignal)
		if out.Timeline == 0 {
			out.Timeline = c.CheckpointTimeline
		}
		if out.LSN == 0 {
			out.LSN = c.CheckpointLSN
		}
	} else if !st.Running {
		// Nothing to read: an empty or unreadable data directory.
		out.CleanShutdown = true
	}
	p.mu.Lock()
	out.SyncChangedLSN = p.syncChangedLSN
	p.mu.Unlock()
	out.CanRewind = p.rewindPossible(ctx, out.DataDir == ha.DataPresent, st.PostmasterStart)
	return out, nil
}

// serverVersion returns server_version_num, read once per postmaster.
func (p *Adapter) serverVersion(ctx context.Context, pmStart time.Time) int {
	p.mu.Lock()
	v, at := p.versionNum, p.versionPM
	p.mu.Unlock()
	if v != 0 && pmStart.Equal(at) {
		return v
	}
	var s string
	if err := p.m.QueryRow(ctx, "SELECT current_setting('server_version_num')", nil, &s); err != nil {
		return 0
	}
	v, _ = strconv.Atoi(s)
	p.mu.Lock()
	p.versionNum, p.versionPM = v, pmStart
	p.mu.Unlock()
	return v
}

// rewindPossible reports whether pg_rewind could run (use_pg_rewind, the
// binary, wal_log_hints or checksums in pg_control). The answer depends on
// the data directory, so it is cached per postmaster incarnation and only
// while a data directory exists; a "no" for a stopped server is not cached
// (pg_control may be mid-clone). A node that first looked before its clone
// must look again once the clone is there: caching that first "no" left a
// replica that needed a rewind after a failover stuck, never streaming.
func (p *Adapter) rewindPossible(ctx context.Context, initialized bool, pmStart time.Time) bool {
	if !p.useRewind {
		return false
	}
	p.mu.Lock()
	if !initialized {
		p.canRewind = nil
		p.mu.Unlock()
		return false
	}
	c, at := p.canRewind, p.canRewindPM
	p.mu.Unlock()
	if c != nil && at.Equal(pmStart) {
		return *c
	}
	ok := p.m.CanRewind(ctx) == nil
	if ok || !pmStart.IsZero() {
		p.mu.Lock()
		p.canRewind, p.canRewindPM = &ok, pmStart
		p.mu.Unlock()
	}
	return ok
}

func (p *Adapter) setUpstream(name string) {
	p.mu.Lock()
	p.upstream = name
	p.mu.Unlock()
}

// UpstreamOf returns how Postgres would follow member m (nil for a nil m):
// its address from conn_url, no streaming when m is tagged nostream, and
// for the remote primary of a standby cluster the slot set by SetStandby.
func (p *Adapter) UpstreamOf(m *dcs.Member) (*postgres.Upstream, error) {
	if m == nil {
		return nil, nil
	}
	up, err := postgres.UpstreamFromMember(m)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", m.Name, err)
	}
	if m.NoStream() {
		up.NoStream = true
	}
	p.mu.Lock()
	standby, slot := p.standby, p.standbySlot
	p.mu.Unlock()
	if standby && m.Name == ha.RemoteName {
		// The remote primary of a standby cluster has a slot for us only
		// when standby_cluster.primary_slot_name names it.
		up.Slot, up.NoSlot = slot, slot == ""
	}
	return &up, nil
}

// SetStandby records the standby_cluster section (nil when the cluster is
// not a standby cluster): the leader of a standby cluster follows the
// remote primary (ha.RemoteName) through standby_cluster.primary_slot_name,
// or without a slot. Call it before Run and whenever the dynamic
// configuration changes.
func (p *Adapter) SetStandby(sc *config.StandbyCluster) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.standby = sc != nil && sc.Active()
	p.standbySlot = ""
	if p.standby && sc.PrimarySlotName != "" {
		p.standbySlot = postgres.SlotName(sc.PrimarySlotName)
	}
}

// Bootstrap runs the configured bootstrap method, then post_bootstrap.
func (p *Adapter) Bootstrap(ctx context.Context) error {
	if err := p.m.Bootstrap(ctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := p.m.PostBootstrap(ctx); err != nil {
		return fmt.Errorf("post-bootstrap: %w", err)
	}
	p.setUpstream("")
	return nil
}

// CreateReplica clones from with the configured replica creation methods.
func (p *Adapter) CreateReplica(ctx context.Context, from *dcs.Member) error {
	up, err := p.UpstreamOf(from)
	if err != nil {
		return err
	}
	if err := p.m.CreateReplica(ctx, up); err != nil {
		return fmt.Errorf("create replica: %w", err)
	}
	return nil
}

// CreateReplicaBasebackup is ha.BasebackupCloner: reinit --from-leader
// clones with pg_basebackup whatever create_replica_methods lists.
func (p *Adapter) CreateReplicaBasebackup(ctx context.Context, from *dcs.Member) error {
	up, err := p.UpstreamOf(from)
	if err != nil {
		return err
	}
	if err := p.m.CreateReplicaWith(ctx, up, []string{"basebackup"}); err != nil {
		return fmt.Errorf("create replica with basebackup: %w", err)
	}
	return nil
}

// Start starts Postgres as a primary or as a replica of upstream, then
// calls Options.Changed.
func (p *Adapter) Start(ctx context.Context, primary bool, upstream *dcs.Member) error {
	opts := postgres.StartOptions{Role: postgres.RoleReplica}
	if primary {
		opts.Role = postgres.RolePrimary
	} else {
		up, err := p.UpstreamOf(upstream)
		if err != nil {
			return err
		}
		opts.Upstream = up
	}
	if err := p.m.Start(ctx, opts); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if !primary && upstream != nil {
		p.setUpstream(upstream.Name)
	} else {
		p.setUpstream("")
	}
	p.Notify()
	return nil
}

// Notify calls Options.Changed, if set: for a change the Adapter cannot
// see itself, such as the postmaster exiting.
func (p *Adapter) Notify() {
	if p.changed != nil {
		p.changed()
	}
}

// Stop stops Postgres in fast mode, or immediate mode when immediate.
func (p *Adapter) Stop(ctx context.Context, immediate bool) error {
	opts := postgres.StopOptions{Mode: postgres.StopFast}
	if immediate {
		opts.Mode = postgres.StopImmediate
	}
	if err := p.m.Stop(ctx, opts); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	return nil
}

// StopGraceful implements ha.GracefulStopper: a fast stop that reports
// the shutdown checkpoint as soon as it is written.
func (p *Adapter) StopGraceful(ctx context.Context, onShutdown func(checkpoint dcs.LSN)) error {
	if err := p.m.Stop(ctx, postgres.StopOptions{Mode: postgres.StopFast, OnShutdown: onShutdown}); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	return nil
}

// Promote promotes Postgres (postgres.Manager.Promote), then calls
// Options.Promoted and Options.Changed, in that order.
func (p *Adapter) Promote(ctx context.Context) error {
	if err := p.m.Promote(ctx); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	p.setUpstream("")
	if p.promoted != nil {
		p.promoted()
	}
	p.Notify()
	return nil
}

// Follow points a replica at upstream (nil: none).
func (p *Adapter) Follow(ctx context.Context, upstream *dcs.Member) error {
	var up postgres.Upstream
	if upstream != nil {
		u, err := p.UpstreamOf(upstream)
		if err != nil {
			return err
		}
		up = *u
	}
	if _, err := p.m.Follow(ctx, up); err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	if upstream != nil {
		p.setUpstream(upstream.Name)
	} else {
		p.setUpstream("")
	}
	return nil
}

// errUnknown is returned by Diverged when the answer cannot be known yet
// (no history published for the leader's timeline).
var errUnknown = errors.New("divergence unknown")

// Diverged checks a stopped data directory with pg_controldata against the
// leader (postgres.Manager.NeedsRewind). For a running replica it compares
// its timeline and position with the leader's timeline history published in
// the DCS, which is what the leader's history file holds.
func (p *Adapter) Diverged(ctx context.Context, leader *dcs.Member) (bool, error) {
	up, err := p.UpstreamOf(leader)
	if err != nil || up == nil {
		return false, fmt.Errorf("diverged: %w", err)
	}
	if !p.m.IsRunning() {
		d, err := p.m.NeedsRewind(ctx, *up)
		if err != nil {
			return false, fmt.Errorf("diverged: %w", err)
		}
		return d, nil
	}
	st, err := p.m.State(ctx)
	if err != nil {
		return false, fmt.Errorf("diverged: %w", err)
	}
	if !st.InRecovery || leader.Timeline == nil || p.history == nil {
		return false, errUnknown
	}
	localTL, leaderTL := p.ReplicaTimeline(st), *leader.Timeline
	if localTL == leaderTL {
		return false, nil
	}
	h, err := p.history(ctx)
	if err != nil {
		return false, fmt.Errorf("diverged: %w", err)
	}
	var entries []postgres.HistoryEntry
	if h != nil {
		for _, l := range h.Lines {
			entries = append(entries, postgres.HistoryEntry{Timeline: l.Timeline, SwitchLSN: l.LSN, Reason: l.Reason})
		}
	}
	if localTL < leaderTL && (len(entries) == 0 || entries[len(entries)-1].Timeline < leaderTL-1) {
		return false, errUnknown
	}
	return postgres.Diverged(localTL, st.LSN(), leaderTL, entries), nil
}

// Rewind runs pg_rewind from leader.
func (p *Adapter) Rewind(ctx context.Context, leader *dcs.Member) error {
	up, err := p.UpstreamOf(leader)
	if err != nil || up == nil {
		return fmt.Errorf("rewind: %w", err)
	}
	if err := p.m.Rewind(ctx, *up); err != nil {
		return fmt.Errorf("rewind: %w", err)
	}
	return nil
}

// RemoveDataDir implements ha.DataDirRemover (reinitialize).
func (p *Adapter) RemoveDataDir(ctx context.Context) error {
	if err := p.m.RemoveDataDir(); err != nil {
		return fmt.Errorf("remove data directory: %w", err)
	}
	p.setUpstream("")
	return nil
}

// CrashRecovery runs single-user crash recovery.
func (p *Adapter) CrashRecovery(ctx context.Context) error {
	if err := p.m.CrashRecovery(ctx); err != nil {
		return fmt.Errorf("crash recovery: %w", err)
	}
	return nil
}

// SetSyncStandbyNames writes synchronous_standby_names (with the reserved
// placeholder name when s asks for it) and remembers the WAL position of
// a change, which State reports as SyncChangedLSN.
func (p *Adapter) SetSyncStandbyNames(ctx context.Context, s ha.SetSyncStandbyNames) error {
	spec := postgres.SyncSpec{Quorum: s.Quorum, Num: s.Num}
	if s.Names != "" {
		spec.Names = strings.Split(s.Names, ",")
	}
	if s.Placeholder {
		spec.Names = append(spec.Names, config.ReservedName)
	}
	changed, err := p.m.SetSynchronousStandbyNames(ctx, spec)
	if err != nil {
		return fmt.Errorf("set synchronous_standby_names: %w", err)
	}
	if changed {
		if st, err := p.m.State(ctx); err == nil {
			p.mu.Lock()
			p.syncChangedLSN = st.LSN()
			p.mu.Unlock()
		}
	}
	return nil
}

// TimelineHistory reads the history file of the current timeline; the
// newest line gets the current time and Options.Name as the new leader.
func (p *Adapter) TimelineHistory(ctx context.Context) ([]dcs.HistoryLine, error) {
	st, err := p.m.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("timeline history: %w", err)
	}
	entries, err := p.m.TimelineHistory(st.Timeline)
	if err != nil {
		return nil, fmt.Errorf("timeline history %d: %w", st.Timeline, err)
	}
	lines := make([]dcs.HistoryLine, 0, len(entries))
	for _, e := range entries {
		lines = append(lines, dcs.HistoryLine{Timeline: e.Timeline, LSN: e.SwitchLSN, Reason: e.Reason})
	}
	if n := len(lines); n > 0 {
		lines[n-1].Timestamp = time.Now().Format("2006-01-02T15:04:05.000000-07:00")
		lines[n-1].NewLeader = p.name
	}
	return lines, nil
}

// SyncSlots makes the replication slots exactly physical plus logical
// (postgres.Manager.EnsureSlots).
func (p *Adapter) SyncSlots(ctx context.Context, physical []string, logical []ha.LogicalSlot) error {
	want := make([]postgres.Slot, 0, len(physical)+len(logical))
	for _, n := range physical {
		want = append(want, postgres.Slot{Name: n, Type: "physical"})
	}
	var have map[string]postgres.SlotInfo
	for _, l := range logical {
		if l.Database == "" || l.Plugin == "" {
			// A slot kept as it is (pause): take its definition from the
			// server so it is not dropped and recreated.
			if have == nil {
				have = map[string]postgres.SlotInfo{}
				infos, err := p.m.Slots(ctx)
				if err != nil {
					return fmt.Errorf("sync slots: %w", err)
				}
				for _, i := range infos {
					have[i.Name] = i
				}
			}
			if i, ok := have[l.Name]; ok {
				l.Database, l.Plugin = i.Database, i.Plugin
			}
		}
		want = append(want, postgres.Slot{Name: l.Name, Type: "logical", Database: l.Database, Plugin: l.Plugin})
	}
	if _, err := p.m.EnsureSlots(ctx, want); err != nil {
		return fmt.Errorf("sync slots: %w", err)
	}
	return nil
}

// Restart restarts Postgres in its role (postgres.Manager.Restart fires
// on_restart), following upstream when not primary.
func (p *Adapter) Restart(ctx context.Context, primary bool, upstream *dcs.Member) error {
	var up *postgres.Upstream
	if !primary {
		u, err := p.UpstreamOf(upstream)
		if err != nil {
			return err
		}
		up = u
	}
	if !p.m.IsRunning() {
		return p.Start(ctx, primary, upstream)
	}
	if err := p.m.Restart(ctx, up); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if !primary && upstream != nil {
		p.setUpstream(upstream.Name)
	}
	return nil
}

// CopyLogicalSlots copies permanent logical slots from the leader
// (postgres.Manager.CopyLogicalSlots, which restarts the replica).
func (p *Adapter) CopyLogicalSlots(ctx context.Context, leader *dcs.Member, names []string) error {
	up, err := p.UpstreamOf(leader)
	if err != nil || up == nil {
		return fmt.Errorf("copy logical slots: %w", err)
	}
	if _, err := p.m.CopyLogicalSlots(ctx, *up, names); err != nil {
		return fmt.Errorf("copy logical slots: %w", err)
	}
	return nil
}

// Checkpoint runs the post-promote CHECKPOINT (spec/ha-loop.md §7.3).
func (p *Adapter) Checkpoint(ctx context.Context) error {
	if err := p.m.Checkpoint(ctx); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// AdvanceSlots moves a replica's slots forward (spec/ha-loop.md §10):
// logical ones through postgres.Manager.AdvanceSlots, physical ones with
// pg_replication_slot_advance, which Postgres clamps to what this node
// replayed. Slots in use or already further are left alone.
func (p *Adapter) AdvanceSlots(ctx context.Context, to map[string]dcs.LSN) error {
	have, err := p.m.Slots(ctx)
	if err != nil {
		return fmt.Errorf("advance slots: %w", err)
	}
	logical := map[string]postgres.LSN{}
	var errs []error
	for _, s := range have {
		target, ok := to[s.Name]
		if !ok || s.Active {
			continue
		}
		switch s.Type {
		case "logical":
			logical[s.Name] = target
		case "physical":
			if s.RestartLSN == 0 || s.RestartLSN >= target {
				continue
			}
			if err := p.m.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", s.Name, target.String()); err != nil {
				errs = append(errs, fmt.Errorf("advance slot %s to %s: %w", s.Name, target, err))
			}
		}
	}
	if len(logical) > 0 {
		if err := p.m.AdvanceSlots(ctx, logical); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("advance slots: %w", err)
	}
	return nil
}

// PendingRestart returns the parameters whose new value waits for a
// restart, as the member key and GET /patroni publish them
// (pending_restart_reason), or nil when none does. A parameter whose old and
// new values are the same (a recovery setting removed from a primary's
// file) changes nothing and is left out.
func PendingRestart(ctx context.Context, m *postgres.Manager) (map[string]dcs.PendingParam, error) {
	pend, err := m.PendingRestart(ctx)
	if err != nil {
		return nil, err
	}
	var reason map[string]dcs.PendingParam
	for _, x := range pend {
		if x.Old == x.New {
			continue
		}
		if reason == nil {
			reason = map[string]dcs.PendingParam{}
		}
		reason[x.Name] = dcs.PendingParam{OldValue: x.Old, NewValue: x.New}
	}
	return reason, nil
}
