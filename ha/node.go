package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
)

// Postgres is what the HA loop needs from the local PostgreSQL. Node calls
// it from its loop goroutine, and for long operations (Bootstrap,
// CreateReplica, Start, Promote, Rewind, CrashRecovery) from one background
// goroutine at a time; implementations must allow State to be called while
// such an operation runs.
type Postgres interface {
	// State reads the local state (pg_controldata, pg_stat_replication,
	// pg_is_in_recovery, ...). An error means "cannot talk to Postgres".
	State(ctx context.Context) (PGState, error)
	// Bootstrap initializes a new cluster (initdb or custom method, start,
	// post_bootstrap).
	Bootstrap(ctx context.Context) error
	// CreateReplica wipes the data directory and clones from; from is nil
	// for methods that need no leader.
	CreateReplica(ctx context.Context, from *dcs.Member) error
	// Start starts Postgres, as a primary (no recovery) when primary, else
	// as a replica of upstream (nil: no upstream), and waits until it
	// accepts connections.
	Start(ctx context.Context, primary bool, upstream *dcs.Member) error
	// Stop stops Postgres (fast mode with a checkpoint, or immediate).
	Stop(ctx context.Context, immediate bool) error
	// Promote runs pg_ctl promote and waits for the end of recovery.
	Promote(ctx context.Context) error
	// Follow points a replica at upstream (nil: none), reloading or
	// restarting as needed.
	Follow(ctx context.Context, upstream *dcs.Member) error
	// Diverged reports whether the local timeline diverged from leader's
	// (spec/ha-loop.md §6.2).
	Diverged(ctx context.Context, leader *dcs.Member) (bool, error)
	// Rewind runs pg_rewind from leader.
	Rewind(ctx context.Context, leader *dcs.Member) error
	// CrashRecovery runs single-user crash recovery.
	CrashRecovery(ctx context.Context) error
	// SetSyncStandbyNames writes synchronous_standby_names and reloads.
	SetSyncStandbyNames(ctx context.Context, s SetSyncStandbyNames) error
	// TimelineHistory reads the local timeline history file of the current
	// timeline.
	TimelineHistory(ctx context.Context) ([]dcs.HistoryLine, error)
	// SyncSlots makes the replication slots exactly the physical names
	// plus the logical slots (create missing, drop others; an active slot
	// that cannot be dropped is retried next cycle). On a replica logical
	// lists only slots that exist (copies), which must be kept.
	SyncSlots(ctx context.Context, physical []string, logical []LogicalSlot) error
	// Restart restarts Postgres in its current role: as a primary when
	// primary, else as a replica of upstream (spec/ha-loop.md §9.1).
	Restart(ctx context.Context, primary bool, upstream *dcs.Member) error
	// CopyLogicalSlots copies the named logical slots from the leader into
	// this replica (spec/ha-loop.md §10 step 6); Postgres is restarted to
	// load them.
	CopyLogicalSlots(ctx context.Context, leader *dcs.Member, names []string) error
	// Checkpoint runs CHECKPOINT (after a promotion, spec/ha-loop.md §7.3).
	Checkpoint(ctx context.Context) error
	// AdvanceSlots moves existing replication slots forward to the given
	// positions (pg_replication_slot_advance; spec/ha-loop.md §10). A slot
	// in use or already further is left alone.
	AdvanceSlots(ctx context.Context, to map[string]dcs.LSN) error
}

// GracefulStopper is optionally implemented by a Postgres whose fast stop
// can report the shutdown checkpoint before the postmaster exits. A
// switchover then releases the leader key at that moment instead of after
// the exit (WAL senders finishing, processes ending), which shortens the
// write outage; the candidate waits until it has replayed past that
// checkpoint before it takes the key.
type GracefulStopper interface {
	// StopGraceful stops Postgres like Stop(ctx, false) and calls
	// onShutdown (at most once, from the calling goroutine) with the
	// location of the shutdown checkpoint once it is written.
	StopGraceful(ctx context.Context, onShutdown func(checkpoint dcs.LSN)) error
}

// DataDirRemover is optionally implemented by a Postgres that can delete
// its data directory. Reinit (POST /reinitialize, diverged timelines with
// remove_data_directory_on_diverged_timelines) stops Postgres, removes the
// data directory through it, then clones (spec/ha-loop.md §9.3: the old
// data directory goes before the clone); without it the clone must cope
// with the old data directory itself.
type DataDirRemover interface {
	// RemoveDataDir deletes the data directory of the stopped Postgres.
	RemoveDataDir(ctx context.Context) error
}

// BasebackupCloner is an optional extension of Postgres: a reinitialize
// request with from_leader clones through it with pg_basebackup from the
// leader, ignoring the configured replica creation methods, as
// `reinit --from-leader` does in Patroni. Without it CreateReplica is used.
type BasebackupCloner interface {
	// CreateReplicaBasebackup clones from with pg_basebackup only.
	CreateReplicaBasebackup(ctx context.Context, from *dcs.Member) error
}

// Peers asks other members' REST APIs. Called from the loop goroutine; each
// call must return within ctx's deadline.
type Peers interface {
	// Probe queries GET /patroni of every member in parallel. Members that
	// did not answer are absent or have Reachable false.
	Probe(ctx context.Context, members []*dcs.Member) map[string]PeerStatus
	// Failsafe POSTs hb to /failsafe of every member of fs other than
	// hb.Name and reports whether all accepted, with the WAL positions
	// (header lsn) the members returned, by member name (spec/ha-loop.md
	// §11). A list without hb.Name fails; one naming only hb.Name passes.
	Failsafe(ctx context.Context, fs dcs.Failsafe, hb FailsafeHeartbeat) (map[string]dcs.LSN, bool)
}

// Watchdog is the optional watchdog device.
type Watchdog interface {
	// Arm activates the device with timeout, or sends a keepalive (and
	// sets the new timeout when it changed since activation). Timeout 0
	// comes only after an activation: a keepalive that keeps the device's
	// timeout (ArmWatchdog).
	Arm(timeout time.Duration) error
	Disarm() error
	Usable() bool
}

// Options configure a Node.
type Options struct {
	Config   Config
	Store    dcs.Store
	Postgres Postgres
	Peers    Peers
	// Watchdog may be nil (no device).
	Watchdog Watchdog
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// APIURL and ConnURL are published in the member key.
	APIURL  string
	ConnURL string
	// Version is the daemon version published as the member key's
	// "version" (Patroni's version string; tools derive the cluster's
	// minimum version from it).
	Version string
	// DynamicConfig is written into an empty "config" key (bootstrap.dcs).
	DynamicConfig []byte
	// Inline runs long operations on the loop goroutine instead of in the
	// background; deterministic simulations use it.
	Inline bool
}

// Status is a snapshot of the node's last published state, for the REST
// API. It is immutable once published.
type Status struct {
	Name     string
	Role     string
	State    string
	Message  string
	Leader   string
	Paused   bool
	Timeline int
	LSN      dcs.LSN
	// LeaseValidUntil is when this node stops acting as the leader unless
	// it renews (zero when not leader).
	LeaseValidUntil time.Time
	DCSReachable    bool
	// WatchdogFailed: the watchdog is required but the device is not
	// usable or ttl − safety_margin does not suit loop_wait
	// (spec/ha-loop.md §16); the REST API reports watchdog_failed.
	WatchdogFailed bool
	Decision       Decision
	UpdatedAt      time.Time
}

// LogEntry is one changed decision in the decision log.
type LogEntry struct {
	Time     time.Time
	Decision Decision
	// Inputs summarises the observation the decision was made from
	// ("why did / didn't this node fail over").
	Inputs string
}

// Summary renders the inputs of a decision on one line.
func (o Observation) Summary() string {
	var b strings.Builder
	if o.DCSError || o.Cluster == nil {
		b.WriteString("dcs=unreachable")
	} else {
		c := o.Cluster
		l := "-"
		if c.IsLocked() {
			l = c.Leader.Name
		}
		fmt.Fprintf(&b, "leader=%s members=%d paused=%v", l, len(c.Members), c.IsPaused())
		if c.Sync != nil {
			fmt.Fprintf(&b, " sync=%s:%v/q%d", c.Sync.Leader, c.Sync.Standbys, c.Sync.Quorum)
		}
		if f := c.Failover; !f.IsEmpty() {
			fmt.Fprintf(&b, " failover=%s->%s", f.Leader, f.Candidate)
		}
		fmt.Fprintf(&b, " status=%s", c.Status.LastLSN)
	}
	p := o.PG
	fmt.Fprintf(&b, " pg.running=%v primary=%v tl=%d lsn=%s upstream=%s streaming=%v", p.Running, p.Primary, p.Timeline, p.LSN, p.Upstream, p.Streaming)
	if o.Lease.Held {
		fmt.Fprintf(&b, " lease.renewed=%s", o.Lease.RenewedAt.Format(time.RFC3339Nano))
	}
	if o.Op.Running {
		fmt.Fprintf(&b, " op=%s", o.Op.Kind)
	}
	if o.Peers != nil {
		names := make([]string, 0, len(o.Peers))
		for n := range o.Peers {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			p := o.Peers[n]
			fmt.Fprintf(&b, " peer.%s=%v/%v/%s/tl%d", n, p.Reachable, p.InRecovery, p.LSN, p.Timeline)
		}
	}
	if o.Failure != nil {
		fmt.Fprintf(&b, " failed=%s", o.Failure.Action)
	}
	return b.String()
}

// ErrExit is wrapped by Run's error when a decision asks the daemon to exit.
var ErrExit = errors.New("ha: exit requested")

// Node runs the HA loop of one member.
type Node struct {
	opts  Options
	cfg   Config
	clk   clock.WithTicker
	log   *slog.Logger
	wake  chan struct{}
	state atomic.Pointer[Status]
	// ttl is the ttl of the last cycle's settings (for failsafe
	// heartbeats received on API goroutines).
	ttl atomic.Int64
	// changed is signalled when a published status differs from the
	// previous one in what health checks look at (see StatusChanged).
	changed chan struct{}

	mu     sync.Mutex // guards hist, op fields used by the background goroutine
	hist   []LogEntry
	op     Operation
	opDone *Operation // finished operation, seen once by the next cycle
	cancel context.CancelFunc
	// opFinished is closed when the running background operation returns.
	opFinished chan struct{}
	opWG       sync.WaitGroup
	lastMsg    string
	// req is the manual request waiting for the loop.
	req       *pendingRequest
	scheduled *ScheduledRestart
	failsafe  *FailsafeLeader
	// pgStart is the postmaster start time seen by the last cycle.
	pgStart time.Time
	// ckpt is the post-promote checkpoint state (§7.3): ckptNone,
	// ckptNeeded after a promotion, ckptRunning while it runs.
	ckpt int

	// Loop goroutine only.
	lease         Lease
	lastCluster   *dcs.Cluster
	lastConfig    *dcs.ClusterConfig
	bootstrapping bool
	recovery      bool
	firstCycle    bool
	unlockedSince time.Time
	exit          string
	lastDecision  string
	prevLSN       dcs.LSN
	wdArmed       bool
	leavingSince  time.Time
	// slotSeen is when each member's slot was last seen in the cluster
	// while this node held the lock (member_slots_ttl, spec §10).
	slotSeen map[string]time.Time
	retain   []string
	// settingsCache holds effective(cfg, settingsFor).
	settingsCache Settings
	settingsFor   *dcs.ClusterConfig
	settingsOK    bool
}

// Post-promote checkpoint states (spec §7.3).
const (
	ckptNone = iota
	ckptNeeded
	ckptRunning
)

// pendingRequest is a manual request and where to send its answer.
type pendingRequest struct {
	r     Request
	reply chan error // buffered 1
}

// New validates the options and returns a Node.
func New(opts Options) (*Node, error) {
	cfg := opts.Config.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Store == nil || opts.Postgres == nil || opts.Peers == nil {
		return nil, errors.New("ha: Store, Postgres and Peers are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	n := &Node{
		opts:       opts,
		cfg:        cfg,
		clk:        opts.Clock,
		log:        cfg.Logger.With("member", cfg.Name),
		wake:       make(chan struct{}, 1),
		changed:    make(chan struct{}, 1),
		firstCycle: true,
	}
	n.state.Store(&Status{Name: cfg.Name, State: "stopped"})
	n.ttl.Store(int64(cfg.TTL))
	return n, nil
}

// Status returns the last published status without blocking on the loop.
func (n *Node) Status() *Status { return n.state.Load() }

// StatusChanged is signalled (coalesced, never blocking the loop) when the
// published status changes in role, state, leader, timeline or leadership:
// a REST API that caches the status refreshes it at once instead of on its
// next tick, so health checks follow a switchover without delay.
func (n *Node) StatusChanged() <-chan struct{} { return n.changed }

// History returns the last changed decisions, oldest first.
func (n *Node) History() []LogEntry {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]LogEntry(nil), n.hist...)
}

// Wake makes the loop run a cycle now: a manual request arrived (REST
// switchover, restart, config change), or the Postgres manager saw the
// postmaster exit, so the loop reacts without waiting for loop_wait. Safe
// from any goroutine.
func (n *Node) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Lease returns the node's lease bookkeeping (loop goroutine or tests
// driving Step).
func (n *Node) Lease() Lease { return n.lease }

// CanAcceptWrites reports whether this node may act as a writable primary
// at now: it holds the leader key by its own bookkeeping and the lease has
// not expired by its own clock minus the safety margin. Only valid from the
// loop goroutine or a test driving Step.
func (n *Node) CanAcceptWrites(now time.Time) bool {
	return n.lease.Held && now.Before(n.lease.ValidUntil(n.cfg.SafetyMargin))
}

// settings returns the effective settings for the last valid dynamic
// configuration, computed once per configuration (loop goroutine).
func (n *Node) settings() Settings {
	if n.settingsFor != n.lastConfig || !n.settingsOK {
		n.settingsCache, n.settingsFor, n.settingsOK = effective(n.cfg, n.lastConfig), n.lastConfig, true
	}
	return n.settingsCache
}

// refreshing is called before every call that refreshes this member's
// lease (TouchMember, AcquireLeader, TakeLeader, UpdateLeader), whatever
// its outcome: if the DCS applies it, the lease then ends at the latest
// at issue time + the current ttl, which is earlier than what we believed
// when ttl was lowered since the last renewal. Keeping the earlier bound
// means the belief never outlives the DCS's lease.
func (n *Node) refreshing(now time.Time, ttl time.Duration) {
	if !n.lease.Held {
		return
	}
	if now.Add(ttl).Before(n.lease.RenewedAt.Add(n.lease.TTL)) {
		n.lease.RenewedAt, n.lease.TTL = now, ttl
	}
}

// Run runs the loop until ctx is cancelled, then shuts down cleanly: a
// primary stops Postgres and releases the leader key at once so that a
// replica takes over without waiting for ttl.
func (n *Node) Run(ctx context.Context) error {
	defer n.opWG.Wait()
	for {
		start := n.clk.Now()
		d := n.Step(ctx)
		if n.exit != "" {
			n.cancelOp()
			return fmt.Errorf("%w: %s", ErrExit, n.exit)
		}
		if ctx.Err() != nil {
			return n.Shutdown(context.WithoutCancel(ctx))
		}
		nap := n.settings().LoopWait - n.clk.Since(start)
		if !d.WakeAt.IsZero() {
			nap = min(nap, d.WakeAt.Sub(n.clk.Now()))
		}
		if nap <= 0 {
			continue
		}
		t := n.clk.NewTimer(nap)
		select {
		case <-ctx.Done():
			t.Stop()
			return n.Shutdown(context.WithoutCancel(ctx))
		case <-t.C():
		case <-n.opts.Store.Changes():
			t.Stop()
			n.log.Debug("loop woken by a DCS change")
		case <-n.wake:
			t.Stop()
			n.log.Debug("loop woken")
		}
	}
}

// Shutdown is the clean stop of §15: cancel background work; unless paused,
// stop Postgres and release the leader key. ctx bounds each DCS call.
func (n *Node) Shutdown(ctx context.Context) error {
	n.cancelOp()
	n.opWG.Wait()
	s := n.settings()
	if s.Paused {
		if n.opts.Watchdog != nil {
			_ = n.opts.Watchdog.Disarm()
		}
		return nil
	}
	held := n.lease.Held
	n.lease = Lease{}
	if n.opts.Watchdog != nil {
		_ = n.opts.Watchdog.Disarm()
	}
	n.leaveSyncForShutdown(ctx, s, held)
	pctx, cancel := context.WithTimeout(ctx, max(s.RetryTimeout, 10*time.Second))
	defer cancel()
	var last *dcs.Status
	if st, err := n.opts.Postgres.State(pctx); err == nil && st.Primary {
		last = &dcs.Status{LastLSN: st.LSN}
	}
	if err := n.opts.Postgres.Stop(pctx, false); err != nil {
		n.log.Warn("PostgreSQL shutdown failed, leader key not removed.", "err", err)
		return fmt.Errorf("shutdown %s: %w", n.cfg.Name, err)
	}
	if st, err := n.opts.Postgres.State(pctx); err == nil && last != nil && st.LSN > last.LastLSN {
		last.LastLSN = st.LSN
	}
	if held || n.lastCluster != nil {
		dctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
		defer cancel()
		if err := n.opts.Store.ReleaseLeader(dctx, last); err != nil {
			n.log.Warn("release leader key on shutdown", "err", err)
		}
		_ = n.opts.Store.TouchMember(dctx, n.member(PGState{DataDir: DataPresent}, Decision{Role: "replica", State: "stopped"}))
	}
	n.publish(Decision{Message: "shut down", Role: "replica", State: "stopped"}, PGState{}, true, Observation{})
	return nil
}

// leaveSyncForShutdown is §7.6 before the stop of §15: a synchronous
// replica publishes nosync and waits (polling every 2 s, at most
// 2 × loop_wait) until /sync no longer lists it, so the primary's commits
// do not hang on a standby that is going away. DCS errors end the wait.
func (n *Node) leaveSyncForShutdown(ctx context.Context, s Settings, held bool) {
	cl := n.lastCluster
	if held || s.SyncMode == SyncOff || cl == nil || cl.Sync.IsEmpty() || n.cfg.member().NoSync() {
		return
	}
	listed := func(c *dcs.Cluster) bool {
		return c.Sync != nil && (strings.EqualFold(c.Sync.Leader, n.cfg.Name) || c.Sync.Matches(n.cfg.Name))
	}
	if !listed(cl) || strings.EqualFold(cl.Sync.Leader, n.cfg.Name) {
		return
	}
	pg, err := n.opts.Postgres.State(ctx)
	if err != nil || !pg.Running || pg.Primary {
		return
	}
	n.leavingSince = n.clk.Now()
	dctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
	err = n.opts.Store.TouchMember(dctx, n.member(pg, Decision{Role: "replica", State: "running"}))
	cancel()
	if err != nil || n.opts.Inline {
		return
	}
	deadline := n.clk.Now().Add(2 * s.LoopWait)
	for n.clk.Now().Before(deadline) {
		t := n.clk.NewTimer(min(2*time.Second, deadline.Sub(n.clk.Now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		dctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
		c, err := n.opts.Store.Cluster(dctx)
		cancel()
		if err != nil || !listed(c) {
			return
		}
	}
}

func (n *Node) cancelOp() {
	n.mu.Lock()
	if n.cancel != nil {
		n.cancel()
	}
	n.mu.Unlock()
}

// Step runs one cycle: observe, decide, act. It is exported for
// simulations that drive many nodes on one goroutine; Run calls it.
func (n *Node) Step(ctx context.Context) Decision {
	s := n.settings()
	now := n.clk.Now()
	o := Observation{
		Now:             now,
		Config:          n.cfg,
		LastCluster:     n.lastCluster,
		LastConfig:      n.lastConfig,
		Lease:           n.lease,
		Bootstrapping:   n.bootstrapping,
		RecoveryAttempt: false,
		FirstCycle:      n.firstCycle,
		WatchdogUsable:  n.opts.Watchdog != nil && n.opts.Watchdog.Usable(),
	}
	n.mu.Lock()
	o.Op = n.op
	done := n.opDone
	if done != nil {
		o.Op = *done
		n.opDone = nil
	}
	if n.req != nil {
		r := n.req.r
		o.Request = &r
	}
	if n.scheduled != nil {
		sr := *n.scheduled
		o.ScheduledRestart = &sr
	}
	if n.failsafe != nil {
		f := *n.failsafe
		o.FailsafeLeader = &f
	}
	if done != nil && done.Kind == OpPromote && !done.Failed && n.ckpt == ckptNone {
		n.ckpt = ckptNeeded
	}
	o.CheckpointNeeded = n.ckpt == ckptNeeded
	n.mu.Unlock()
	o.PrevLSN, o.WatchdogArmed = n.prevLSN, n.wdArmed
	if !n.leavingSince.IsZero() && (done != nil && done.Kind == OpRestart || o.Request == nil && o.ScheduledRestart == nil && !o.Op.Running) {
		// §7.6: the restart this replica left sync duty for is over.
		n.leavingSince = time.Time{}
	}
	o.LeavingSyncSince = n.leavingSince
	if !o.Op.Running && n.recovery {
		// §2 step 8: the start after a crash finished; a success is not
		// news, a failure is reported once.
		if done != nil && (done.Kind == OpStart || done.Kind == OpRestart) && !done.Failed {
			n.recovery = false
		} else {
			o.RecoveryAttempt = true
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
	cl, err := n.opts.Store.Cluster(cctx)
	cancel()
	if err != nil {
		o.DCSError = true
	} else {
		o.Cluster = cl
		if cl.Config.Valid() {
			n.lastConfig = cl.Config
			o.LastConfig = cl.Config
			s = n.settings()
			n.opts.Store.SetTTL(s.TTL)
			n.ttl.Store(int64(s.TTL))
		}
		n.trackSlots(cl, s, now)
		o.RetainSlots = n.retain
		if cl.IsLocked() {
			n.lastCluster = cl
			o.LastCluster = cl
			n.unlockedSince = time.Time{}
			if cl.Leader.Name != n.cfg.Name {
				n.lease = Lease{} // someone else holds it: we are not leader
				o.Lease = n.lease
			}
		} else {
			if n.unlockedSince.IsZero() {
				n.unlockedSince = now
			}
			n.lease.Held = false
			o.Lease = n.lease
		}
		o.UnlockedSince = n.unlockedSince
	}
	pg, err := n.opts.Postgres.State(ctx)
	if err != nil {
		d := Decision{Message: "Error communicating with PostgreSQL. Will try again later"}
		n.finish(ctx, o, d, pg)
		return d
	}
	if cl != nil && cl.IsLocked() && cl.Leader.Name != n.cfg.Name && pg.DataDir == DataPresent && !o.Op.Running {
		lm := cl.Member(cl.Leader.Name)
		if lm != nil && lm.IsRunning() && lm.Role == "primary" && (!pg.Running || pg.Upstream != lm.Name || !pg.Streaming || pg.Primary) {
			if div, err := n.opts.Postgres.Diverged(ctx, lm); err == nil {
				pg.Diverged = &div
			}
		}
	}
	o.PG = pg
	n.mu.Lock()
	n.pgStart = pg.PostmasterStart
	n.mu.Unlock()
	d := Decide(o)
	failures := 0
run:
	for i := 0; i < len(d.Actions); i++ {
		a := d.Actions[i]
		switch a.(type) {
		case ProbePeers:
			if o.Peers != nil {
				break run
			}
			o.Peers = n.probe(ctx, cl, s)
			d = Decide(o)
			i = -1
			continue
		case ProbeFailsafe:
			if o.FailsafeOK != nil {
				break run
			}
			pctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
			ok := false
			if n.lastCluster != nil {
				o.FailsafeLSNs, ok = n.opts.Peers.Failsafe(pctx, n.lastCluster.Failsafe, n.heartbeat(o.PG))
			}
			cancel()
			o.FailsafeOK = &ok
			if ok {
				n.lease = Lease{Held: true, RenewedAt: now, TTL: s.TTL}
			}
			d = Decide(o)
			i = -1
			continue
		}
		if err := n.act(ctx, a, cl, &o); err != nil {
			n.log.Debug("action failed", "action", a.String(), "err", err)
			switch a.(type) {
			case UpdateLeader, AcquireLeader, RaceInitialize:
				if failures == 0 {
					failures++
					o.Failure = &Failure{Action: a, Unavailable: errors.Is(err, dcs.ErrUnavailable)}
					d = Decide(o)
					i = -1
					continue
				}
			}
			d.Message += fmt.Sprintf(" (%s failed: %v)", a, err)
			break run
		}
	}
	n.finish(ctx, o, d, pg)
	return d
}

// finish is the "finally" part of a cycle: publish the member key when the
// DCS was reachable, record the decision.
func (n *Node) finish(ctx context.Context, o Observation, d Decision, pg PGState) {
	if o.RecoveryAttempt {
		n.recovery = false
	}
	if pg.LSN > 0 {
		n.prevLSN = pg.LSN
	}
	if !o.DCSError && n.exit == "" {
		cctx, cancel := context.WithTimeout(ctx, n.settings().RetryTimeout)
		if pg2, err := n.opts.Postgres.State(cctx); err == nil {
			pg = pg2
		}
		n.refreshing(n.clk.Now(), n.settings().TTL)
		_ = n.opts.Store.TouchMember(cctx, n.member(pg, d))
		cancel()
		n.firstCycle = false
	}
	n.publish(d, pg, !o.DCSError, o)
}

func (n *Node) publish(d Decision, pg PGState, reachable bool, o Observation) {
	s := n.settings()
	st := &Status{
		Name: n.cfg.Name, Role: d.Role, State: d.State, Message: d.Message,
		Paused: s.Paused, Timeline: pg.Timeline, LSN: pg.LSN, DCSReachable: reachable,
		Decision: d, UpdatedAt: n.clk.Now(),
		LeaseValidUntil: n.lease.ValidUntil(s.SafetyMargin),
		WatchdogFailed:  s.watchdogFailed(o.WatchdogUsable),
	}
	if n.lastCluster != nil && n.lastCluster.Leader != nil {
		st.Leader = n.lastCluster.Leader.Name
	}
	n.store(st)
	key := d.String()
	if key == n.lastDecision {
		return
	}
	n.lastDecision = key
	n.mu.Lock()
	inputs := o.Summary()
	n.hist = append(n.hist, LogEntry{Time: st.UpdatedAt, Decision: d, Inputs: inputs})
	if over := len(n.hist) - n.cfg.DecisionLogSize; over > 0 {
		n.hist = append(n.hist[:0:0], n.hist[over:]...)
	}
	n.mu.Unlock()
	if !n.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	n.log.Info(d.Message, "role", d.Role, "timeline", pg.Timeline, "lsn", pg.LSN.String(), "leader", st.Leader, "action", actionNames(d), "inputs", inputs)
}

// store publishes st and signals StatusChanged when it differs from the
// previous status in what health checks look at.
func (n *Node) store(st *Status) {
	prev := n.state.Swap(st)
	if prev != nil && prev.Role == st.Role && prev.State == st.State && prev.Leader == st.Leader &&
		prev.Timeline == st.Timeline && prev.LeaseValidUntil.IsZero() == st.LeaseValidUntil.IsZero() {
		return
	}
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

func actionNames(d Decision) string {
	var b []string
	for _, a := range d.Actions {
		b = append(b, a.String())
	}
	return strings.Join(b, "; ")
}

func (n *Node) member(pg PGState, d Decision) *dcs.Member {
	m := &dcs.Member{
		Name: n.cfg.Name, APIURL: n.opts.APIURL, ConnURL: n.opts.ConnURL,
		State: d.State, Role: d.Role, PatroniVersion: n.opts.Version,
		Tags: n.cfg.Tags, Pause: n.settings().Paused,
		PendingRestart: pg.PendingRestart, PendingRestartReason: pg.PendingRestartReason,
	}
	if !n.leavingSince.IsZero() {
		// §7.6: tell the primary to drop us from /sync.
		m.Tags = leavingSyncTags(n.cfg.Tags)
	}
	n.mu.Lock()
	if sr := n.scheduled; sr != nil {
		m.ScheduledRestart = publishedRestart(sr)
	}
	if n.ckpt != ckptNone && d.Role != "replica" && d.Role != "demoted" {
		f := false
		m.CheckpointAfterPromote = &f
	}
	n.mu.Unlock()
	if pg.Running {
		lsn := pg.LSN
		m.XLogLocation = &lsn
		if pg.Timeline > 0 {
			tl := pg.Timeline
			m.Timeline = &tl
		}
		if !pg.Primary {
			if pg.ReplayLSN > 0 {
				replay := pg.ReplayLSN
				m.ReplayLSN = &replay
			}
			if pg.ReceiveLSN > 0 {
				receive := pg.ReceiveLSN
				m.ReceiveLSN = &receive
			}
			if pg.Streaming {
				m.ReplicationState = "streaming"
			} else {
				m.ReplicationState = "in archive recovery"
			}
		}
	}
	if m.Role == "" {
		m.Role = "replica"
	}
	return m
}

func (n *Node) probe(ctx context.Context, cl *dcs.Cluster, s Settings) map[string]PeerStatus {
	if cl == nil {
		return map[string]PeerStatus{}
	}
	seen := map[string]bool{}
	var ms []*dcs.Member
	for _, src := range []*dcs.Cluster{cl, n.lastCluster} {
		if src == nil {
			continue
		}
		for _, m := range src.Members {
			if m.Name != n.cfg.Name && m.APIURL != "" && !seen[m.Name] {
				seen[m.Name] = true
				ms = append(ms, m)
			}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, min(s.RetryTimeout, 2*time.Second))
	defer cancel()
	out := n.opts.Peers.Probe(pctx, ms)
	if out == nil {
		out = map[string]PeerStatus{}
	}
	return out
}

func (n *Node) upstream(cl *dcs.Cluster, name string) *dcs.Member {
	if name == "" {
		return nil
	}
	if sc := n.settings().StandbyCluster; name == remoteName && sc != nil {
		return &dcs.Member{Name: remoteName, ConnURL: fmt.Sprintf("postgres://%s:%d/postgres", sc.Host, sc.Port)}
	}
	if cl != nil {
		if m := cl.Member(name); m != nil {
			return m
		}
	}
	return &dcs.Member{Name: name}
}

// act runs one action. DCS calls get a deadline of retry_timeout.
func (n *Node) act(ctx context.Context, a Action, cl *dcs.Cluster, o *Observation) error {
	s := n.settings()
	st := n.opts.Store
	pg := n.opts.Postgres
	dctx, cancel := context.WithTimeout(ctx, s.RetryTimeout)
	defer cancel()
	now := n.clk.Now()
	switch a := a.(type) {
	case AcquireLeader:
		n.refreshing(now, s.TTL)
		if err := st.AcquireLeader(dctx); err != nil {
			return fmt.Errorf("acquire leader key: %w", err)
		}
		n.lease = Lease{Held: true, RenewedAt: now, TTL: s.TTL}
		n.slotsAcquired(cl, now)
	case TakeLeader:
		n.refreshing(now, s.TTL)
		if err := st.TakeLeader(dctx); err != nil {
			return fmt.Errorf("take leader key: %w", err)
		}
		n.lease = Lease{Held: true, RenewedAt: now, TTL: s.TTL}
		n.bootstrapping = false
	case UpdateLeader:
		u := dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: o.PG.LSN, Slots: leaderSlots(n.cfg.Name, o.PG), RetainSlots: n.retain}}
		if !o.PG.Primary {
			u.Status = nil
		}
		if a.Failsafe && cl != nil {
			fs := dcs.Failsafe{}
			for _, m := range cl.Members {
				if m.APIURL != "" {
					fs[m.Name] = m.APIURL
				}
			}
			u.Failsafe = fs
		}
		n.refreshing(now, s.TTL)
		if err := st.UpdateLeader(dctx, u); err != nil {
			if errors.Is(err, dcs.ErrLeaderLost) {
				n.lease = Lease{}
			}
			return fmt.Errorf("update leader key: %w", err)
		}
		n.lease = Lease{Held: true, RenewedAt: now, TTL: s.TTL}
	case ReleaseLeader:
		n.lease = Lease{}
		var last *dcs.Status
		if a.WriteLSN {
			last = &dcs.Status{LastLSN: o.PG.LSN}
		}
		return wrap("release leader key", st.ReleaseLeader(dctx, last))
	case RaceInitialize:
		if err := st.Initialize(dctx, "", true); err != nil {
			return fmt.Errorf("race for initialize: %w", err)
		}
		n.bootstrapping = true
	case WriteInitialize:
		return wrap("write initialize", st.Initialize(dctx, a.SysID, false))
	case CancelInitialize:
		n.bootstrapping = false
		return wrap("cancel initialize", st.CancelInitialize(dctx))
	case WriteConfig:
		if cl != nil && cl.Config != nil {
			return nil
		}
		cfg := n.opts.DynamicConfig
		if cfg == nil {
			cfg = []byte("{}")
		}
		_, err := st.SetConfig(dctx, cfg, "")
		return wrap("write config", err)
	case ClearFailover:
		_, err := st.SetFailover(dctx, &dcs.Failover{}, a.Version)
		return wrap("clear failover", err)
	case RewriteFailover:
		_, err := st.SetFailover(dctx, &dcs.Failover{Candidate: a.Candidate}, a.Version)
		return wrap("rewrite failover", err)
	case SetSync:
		var sb []string
		if a.Standbys != "" {
			sb = strings.Split(a.Standbys, ",")
		}
		_, err := st.SetSync(dctx, &dcs.SyncState{Leader: a.Leader, Standbys: sb, Quorum: a.Quorum}, a.Prev)
		return wrap("write sync", err)
	case DeleteSync:
		return wrap("delete sync", st.DeleteSync(dctx, a.Prev))
	case SetSyncStandbyNames:
		return wrap("set synchronous_standby_names", pg.SetSyncStandbyNames(ctx, a))
	case WriteHistory:
		lines, err := pg.TimelineHistory(ctx)
		if err != nil {
			return fmt.Errorf("read timeline history: %w", err)
		}
		return wrap("write history", st.SetHistory(dctx, &dcs.TimelineHistory{Lines: lines}))
	case Bootstrap:
		n.bootstrapping = true
		n.runOp(ctx, OpBootstrap, pg.Bootstrap)
	case Clone:
		var from *dcs.Member
		if a.From != "" {
			from = n.upstream(cl, a.From)
		}
		n.runOp(ctx, OpClone, func(ctx context.Context) error { return pg.CreateReplica(ctx, from) })
	case StartPostgres:
		up := n.upstream(cl, a.Upstream)
		if !o.PG.CleanShutdown || a.Primary {
			n.recovery = true
		}
		n.runOp(ctx, OpStart, func(ctx context.Context) error { return pg.Start(ctx, a.Primary, up) })
	case StopPostgres:
		return wrap("stop postgres", pg.Stop(ctx, a.Immediate))
	case Promote:
		// Defence in depth: promote only while the lease is valid by our
		// own clock (spec: promote only while holding the key).
		if !n.CanAcceptWrites(now) {
			return errors.New("promote: leader lease not valid")
		}
		n.log.Debug("promote: start")
		n.runOp(ctx, OpPromote, pg.Promote)
	case Demote:
		return n.demote(ctx, a, cl, o)
	case Follow:
		return wrap("follow", pg.Follow(ctx, n.upstream(cl, a.Upstream)))
	case Rewind:
		from := n.upstream(cl, a.Leader)
		n.runOp(ctx, OpRewind, func(ctx context.Context) error {
			if err := pg.Stop(ctx, false); err != nil {
				return fmt.Errorf("rewind: stop: %w", err)
			}
			return pg.Rewind(ctx, from)
		})
	case Reinit:
		from := n.upstream(cl, a.Leader)
		if n.opts.Watchdog != nil && n.wdArmed {
			n.wdArmed = false
			_ = n.opts.Watchdog.Disarm()
		}
		reply := n.takeRequest(RequestReinitialize)
		n.runOp(ctx, OpReinit, func(ctx context.Context) error {
			if err := pg.Stop(ctx, true); err != nil {
				return fmt.Errorf("reinitialize: stop: %w", err)
			}
			if r, ok := pg.(DataDirRemover); ok {
				if err := r.RemoveDataDir(ctx); err != nil {
					return fmt.Errorf("reinitialize: %w", err)
				}
			}
			if bc, ok := pg.(BasebackupCloner); ok && a.FromLeader {
				return bc.CreateReplicaBasebackup(ctx, from)
			}
			return pg.CreateReplica(ctx, from)
		})
		if reply != nil {
			reply <- nil // started: POST /reinitialize does not wait for the clone
		}
	case CrashRecovery:
		n.runOp(ctx, OpCrashRecovery, pg.CrashRecovery)
	case CancelOp:
		n.cancelOp()
	case ArmWatchdog:
		if n.opts.Watchdog != nil {
			if err := n.opts.Watchdog.Arm(a.Timeout); err != nil {
				return fmt.Errorf("arm watchdog: %w", err)
			}
			n.wdArmed = true
		}
	case DisarmWatchdog:
		if n.opts.Watchdog != nil {
			n.wdArmed = false
			return wrap("disarm watchdog", n.opts.Watchdog.Disarm())
		}
	case SyncSlots:
		var names []string
		if a.Names != "" {
			names = strings.Split(a.Names, ",")
		}
		return wrap("sync slots", pg.SyncSlots(ctx, names, ParseLogicalSlots(a.Logical)))
	case CopyLogicalSlots:
		from := n.upstream(cl, a.From)
		names := strings.Split(a.Names, ",")
		n.runOp(ctx, OpCopySlots, func(ctx context.Context) error { return pg.CopyLogicalSlots(ctx, from, names) })
	case Restart:
		var up *dcs.Member
		if !a.Primary {
			up = n.upstream(cl, a.Upstream)
		}
		n.recovery = true
		reply := n.takeRequest(RequestRestart)
		n.runOpWith(ctx, OpRestart, a.Timeout, reply, func(ctx context.Context) error { return pg.Restart(ctx, a.Primary, up) })
	case LeaveSync:
		if n.leavingSince.IsZero() {
			n.leavingSince = now
		}
	case Refuse:
		if reply := n.takeRequest(0); reply != nil {
			reply <- a.Err
		}
	case AdvanceSlots:
		to := AdvanceTargets(*o, a)
		if len(to) == 0 {
			return nil
		}
		return wrap("advance slots", pg.AdvanceSlots(ctx, to))
	case Checkpoint:
		n.mu.Lock()
		n.ckpt = ckptRunning
		n.mu.Unlock()
		finish := func(err error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.ckpt != ckptRunning {
				return
			}
			if err != nil {
				n.ckpt = ckptNeeded // retried next cycle
				return
			}
			n.ckpt = ckptNone
		}
		if n.opts.Inline {
			finish(pg.Checkpoint(ctx))
			return nil
		}
		n.opWG.Go(func() {
			err := pg.Checkpoint(ctx)
			if err != nil {
				n.log.Warn("post-promote checkpoint", "err", err)
			}
			finish(err)
		})
	case ClearScheduledRestart:
		n.mu.Lock()
		n.scheduled = nil
		n.mu.Unlock()
	case Exit:
		n.exit = a.Reason
	default:
		return fmt.Errorf("ha: unknown action %T", a)
	}
	return nil
}

// demote is §6.1. The lease is dropped first, so the node stops counting
// as a writable leader before Postgres goes down.
func (n *Node) demote(ctx context.Context, a Demote, cl *dcs.Cluster, o *Observation) error {
	n.lease = Lease{}
	n.mu.Lock()
	n.ckpt = ckptNone
	n.mu.Unlock()
	// Health checks stop naming this node the primary before Postgres
	// goes down, so clients look for the new one at once.
	if cur := n.state.Load(); cur != nil {
		st := *cur
		st.Role, st.LeaseValidUntil, st.UpdatedAt = "demoted", time.Time{}, n.clk.Now()
		n.store(&st)
	}
	n.log.Debug("demote: start", "mode", a.Mode)
	if n.opts.Watchdog != nil {
		_ = n.opts.Watchdog.Disarm()
	}
	pg := n.opts.Postgres
	immediate := a.Mode == DemoteImmediate || a.Mode == DemoteImmediateNoLock
	released := false
	if gs, ok := pg.(GracefulStopper); ok && a.Mode == DemoteGraceful {
		err := gs.StopGraceful(ctx, func(ckpt dcs.LSN) {
			dctx, cancel := context.WithTimeout(ctx, n.settings().RetryTimeout)
			defer cancel()
			if err := n.opts.Store.ReleaseLeader(dctx, &dcs.Status{LastLSN: ckpt}); err != nil {
				n.log.Warn("release leader key at the shutdown checkpoint", "err", err)
				return
			}
			released = true
			n.log.Debug("demote: leader key released at the shutdown checkpoint", "lsn", ckpt.String())
		})
		if err != nil {
			return fmt.Errorf("demote %s: stop: %w", n.cfg.Name, err)
		}
	} else if err := pg.Stop(ctx, immediate); err != nil {
		return fmt.Errorf("demote %s: stop: %w", n.cfg.Name, err)
	}
	n.log.Debug("demote: postgres stopped")
	if a.Mode.ReleasesLock() && !released {
		var last *dcs.Status
		if a.Mode == DemoteGraceful {
			if st, err := pg.State(ctx); err == nil {
				last = &dcs.Status{LastLSN: st.LSN}
			}
		}
		dctx, cancel := context.WithTimeout(ctx, n.settings().RetryTimeout)
		err := n.opts.Store.ReleaseLeader(dctx, last)
		cancel()
		if err != nil {
			n.log.Warn("release leader key after demote", "err", err)
		} else {
			n.log.Debug("demote: leader key released", "with_last_lsn", last != nil)
		}
	}
	up := n.upstream(cl, a.Upstream)
	if a.Mode == DemoteOffline || a.Mode == DemoteGraceful {
		up = nil
	}
	n.runOp(ctx, OpStart, func(ctx context.Context) error { return pg.Start(ctx, false, up) })
	return nil
}

func splitNames(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// runOp runs a long operation: inline, or in the background while the loop
// keeps renewing the lease. Its result is seen by the next cycle.
func (n *Node) runOp(ctx context.Context, kind OpKind, f func(context.Context) error) {
	n.runOpWith(ctx, kind, 0, nil, f)
}

// runOpWith is runOp with a start timeout (restart) and a channel that
// receives the operation's result (a REST request waiting for it).
func (n *Node) runOpWith(ctx context.Context, kind OpKind, timeout time.Duration, reply chan error, f func(context.Context) error) {
	now := n.clk.Now()
	if reply != nil {
		g := f
		f = func(ctx context.Context) error {
			err := g(ctx)
			reply <- err
			return err
		}
	}
	if n.opts.Inline {
		err := f(ctx)
		n.mu.Lock()
		n.opDone = &Operation{Kind: kind, Started: now, Timeout: timeout, Failed: err != nil}
		n.mu.Unlock()
		return
	}
	// At most one background operation: a new one (after CancelOp)
	// waits for the previous to return.
	n.mu.Lock()
	prev := n.opFinished
	n.mu.Unlock()
	if prev != nil {
		n.cancelOp()
		<-prev
	}
	octx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	n.mu.Lock()
	n.op = Operation{Kind: kind, Running: true, Started: now, Timeout: timeout}
	n.cancel = cancel
	n.opFinished = finished
	n.mu.Unlock()
	n.opWG.Go(func() {
		defer close(finished)
		err := f(octx)
		cancel()
		n.mu.Lock()
		n.op = Operation{}
		n.cancel = nil
		n.opFinished = nil
		n.opDone = &Operation{Kind: kind, Started: now, Timeout: timeout, Failed: err != nil}
		n.mu.Unlock()
		n.Wake()
	})
}
