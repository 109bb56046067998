package ha

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// Action is one step of a Decision. The set is closed: every Action is one
// of the small structs below, comparable with require.Equal. Node runs the
// actions of a decision in order and stops at the first failure.
type Action interface {
	isAction()
	String() string
}

// DemoteMode is how a primary is demoted (spec/ha-loop.md §6.1).
type DemoteMode int

const (
	// DemoteGraceful: switchover; fast stop with checkpoint, release the
	// key with the final LSN.
	DemoteGraceful DemoteMode = iota
	// DemoteImmediate: immediate stop, release the key.
	DemoteImmediate
	// DemoteImmediateNoLock: immediate stop, the key is not ours any more.
	DemoteImmediateNoLock
	// DemoteOffline: DCS unreachable; fast stop, restart read-only with no
	// upstream.
	DemoteOffline
	// DemoteCluster: standby_cluster added; become a standby.
	DemoteCluster
)

var demoteNames = [...]string{"graceful", "immediate", "immediate-nolock", "offline", "demote-cluster"}

func (m DemoteMode) String() string { return demoteNames[m] }

// ReleasesLock reports whether the mode deletes the leader key.
func (m DemoteMode) ReleasesLock() bool { return m == DemoteGraceful || m == DemoteImmediate }

type (
	// ProbePeers asks Node to query the members' REST API and call Decide
	// again with Observation.Peers filled in.
	ProbePeers struct{}
	// ProbeFailsafe asks Node to POST /failsafe to every listed member and
	// call Decide again with Observation.FailsafeOK.
	ProbeFailsafe struct{}
	// AcquireLeader creates the leader key if absent.
	AcquireLeader struct{}
	// UpdateLeader renews the leader key (fenced) and publishes /status
	// and, in failsafe mode, /failsafe.
	UpdateLeader struct{ Failsafe bool }
	// TakeLeader writes the leader key after bootstrap.
	TakeLeader struct{}
	// ReleaseLeader deletes the leader key, writing the last LSN first when
	// WriteLSN.
	ReleaseLeader struct{ WriteLSN bool }
	// RaceInitialize is the bootstrap race (create "initialize" = "").
	RaceInitialize struct{}
	// WriteInitialize writes our system identifier into "initialize".
	WriteInitialize struct{ SysID string }
	// CancelInitialize deletes "initialize" after a failed bootstrap.
	CancelInitialize struct{}
	// WriteConfig writes the local dynamic configuration (missing key).
	WriteConfig struct{}
	// ClearFailover deletes the failover key (CAS on Version).
	ClearFailover struct{ Version dcs.Version }
	// RewriteFailover keeps only the candidate (pause, §3.3).
	RewriteFailover struct {
		Candidate string
		Version   dcs.Version
	}
	// SetSync writes /sync (CAS on Prev).
	SetSync struct {
		Leader   string
		Standbys string // comma-joined, sorted
		Quorum   int
		Prev     dcs.Version
	}
	// DeleteSync removes /sync (CAS on Prev).
	DeleteSync struct{ Prev dcs.Version }
	// SetSyncStandbyNames sets synchronous_standby_names.
	SetSyncStandbyNames struct {
		Names       string // comma-joined, sorted; "" = empty
		Num         int
		Quorum      bool
		Placeholder bool
	}
	// WriteHistory rebuilds /history from the local timeline history.
	WriteHistory struct{}
	// Bootstrap runs initdb (or the custom method) in the background.
	Bootstrap struct{}
	// Clone creates a replica from a member ("" = without leader).
	Clone struct{ From string }
	// StartPostgres starts Postgres in the background; Primary starts it
	// without recovery (only for the lock holder after a crash), else as a
	// replica of Upstream ("" = no upstream).
	StartPostgres struct {
		Primary  bool
		Upstream string
	}
	// StopPostgres stops Postgres (immediate when Immediate).
	StopPostgres struct{ Immediate bool }
	// Promote runs pg_ctl promote in the background.
	Promote struct{}
	// Demote stops the primary per Mode and restarts it as a replica of
	// Upstream ("" = none). For modes that release the lock the Node
	// releases it after the stop.
	Demote struct {
		Mode     DemoteMode
		Upstream string
	}
	// Follow points the replica at Upstream (rewrite recovery settings,
	// reload or restart).
	Follow struct{ Upstream string }
	// Rewind runs pg_rewind from Leader in the background.
	Rewind struct{ Leader string }
	// Reinit wipes the data directory and clones from Leader.
	Reinit struct {
		Leader string
		// FromLeader: the request asked for the leader as source, which
		// also means pg_basebackup whatever the configured methods are
		// (spec/postgres.md §7); see BasebackupCloner.
		FromLeader bool
	}
	// CrashRecovery runs single-user crash recovery in the background.
	CrashRecovery struct{}
	// CancelOp cancels the running background operation.
	CancelOp struct{}
	// ArmWatchdog activates the watchdog with Timeout (or sends a
	// keepalive, resetting the timeout when it changed). Timeout 0 is a
	// keepalive of the armed device that keeps its timeout: the one for
	// the current ttl is not usable (spec/ha-loop.md §16); it never
	// activates a device.
	ArmWatchdog struct{ Timeout time.Duration }
	// DisarmWatchdog disables the watchdog.
	DisarmWatchdog struct{}
	// SyncSlots makes the replication slots exactly Names (physical,
	// comma-joined, sorted) plus Logical ("name:database:plugin",
	// comma-joined, sorted): create the missing, drop the others.
	SyncSlots struct{ Names, Logical string }
	// CopyLogicalSlots copies the named logical slots (comma-joined,
	// sorted) from the leader in the background (spec §10 step 6).
	CopyLogicalSlots struct{ From, Names string }
	// Restart restarts Postgres in the background in its current role
	// (Primary, else following Upstream), marking a recovery attempt; the
	// start may take Timeout (spec §9.1).
	Restart struct {
		Primary  bool
		Upstream string
		Timeout  time.Duration
	}
	// LeaveSync publishes nosync in the member key so the primary drops
	// this replica from /sync before it stops (spec §7.6).
	LeaveSync struct{}
	// Refuse answers the pending request with Err.
	Refuse struct{ Err error }
	// ClearScheduledRestart removes the scheduled restart (spec §9.2).
	ClearScheduledRestart struct{}
	// AdvanceSlots moves this replica's physical slots and logical copies
	// (names comma-joined, sorted) forward to the leader's positions in
	// /status.slots (SlotTargets), so they do not hold WAL back (spec §10
	// steps 4, 6). With Failsafe set it is the failsafe primary moving the
	// member slots of the replicas that answered POST /failsafe to the
	// positions they returned (FailsafeSlotTargets, spec §11).
	AdvanceSlots struct {
		Physical, Logical string
		Failsafe          bool
	}
	// Checkpoint runs the post-promote CHECKPOINT in the background
	// (spec §7.3); until it is done the member key says
	// checkpoint_after_promote: false.
	Checkpoint struct{}
	// Exit stops the daemon (fatal configuration problem).
	Exit struct{ Reason string }
)

func (ProbePeers) isAction()            {}
func (ProbeFailsafe) isAction()         {}
func (AcquireLeader) isAction()         {}
func (UpdateLeader) isAction()          {}
func (TakeLeader) isAction()            {}
func (ReleaseLeader) isAction()         {}
func (RaceInitialize) isAction()        {}
func (WriteInitialize) isAction()       {}
func (CancelInitialize) isAction()      {}
func (WriteConfig) isAction()           {}
func (ClearFailover) isAction()         {}
func (RewriteFailover) isAction()       {}
func (SetSync) isAction()               {}
func (DeleteSync) isAction()            {}
func (SetSyncStandbyNames) isAction()   {}
func (WriteHistory) isAction()          {}
func (Bootstrap) isAction()             {}
func (Clone) isAction()                 {}
func (StartPostgres) isAction()         {}
func (StopPostgres) isAction()          {}
func (Promote) isAction()               {}
func (Demote) isAction()                {}
func (Follow) isAction()                {}
func (Rewind) isAction()                {}
func (Reinit) isAction()                {}
func (CrashRecovery) isAction()         {}
func (CancelOp) isAction()              {}
func (ArmWatchdog) isAction()           {}
func (DisarmWatchdog) isAction()        {}
func (Exit) isAction()                  {}
func (SyncSlots) isAction()             {}
func (CopyLogicalSlots) isAction()      {}
func (Restart) isAction()               {}
func (LeaveSync) isAction()             {}
func (Refuse) isAction()                {}
func (ClearScheduledRestart) isAction() {}
func (Checkpoint) isAction()            {}
func (AdvanceSlots) isAction()          {}

func (ProbePeers) String() string      { return "probe-peers" }
func (ProbeFailsafe) String() string   { return "probe-failsafe" }
func (AcquireLeader) String() string   { return "acquire-leader" }
func (a UpdateLeader) String() string  { return flag("update-leader", "failsafe", a.Failsafe) }
func (TakeLeader) String() string      { return "take-leader" }
func (a ReleaseLeader) String() string { return flag("release-leader", "lsn", a.WriteLSN) }
func (RaceInitialize) String() string  { return "race-initialize" }
func (a WriteInitialize) String() string {
	return "write-initialize " + a.SysID
}
func (CancelInitialize) String() string  { return "cancel-initialize" }
func (WriteConfig) String() string       { return "write-config" }
func (ClearFailover) String() string     { return "clear-failover" }
func (a RewriteFailover) String() string { return "rewrite-failover candidate=" + a.Candidate }
func (a SetSync) String() string {
	return fmt.Sprintf("set-sync leader=%s standbys=[%s] quorum=%d", a.Leader, a.Standbys, a.Quorum)
}
func (DeleteSync) String() string { return "delete-sync" }
func (a SetSyncStandbyNames) String() string {
	switch {
	case a.Placeholder:
		return "set-ssn placeholder"
	case a.Names == "":
		return "set-ssn empty"
	case a.Quorum:
		return fmt.Sprintf("set-ssn ANY %d (%s)", a.Num, a.Names)
	}
	return fmt.Sprintf("set-ssn %d (%s)", a.Num, a.Names)
}
func (WriteHistory) String() string { return "write-history" }
func (Bootstrap) String() string    { return "bootstrap" }
func (a Clone) String() string      { return "clone from=" + orNone(a.From) }
func (a StartPostgres) String() string {
	if a.Primary {
		return "start-postgres primary"
	}
	return "start-postgres upstream=" + orNone(a.Upstream)
}
func (a StopPostgres) String() string { return flag("stop-postgres", "immediate", a.Immediate) }
func (Promote) String() string        { return "promote" }
func (a Demote) String() string {
	return fmt.Sprintf("demote mode=%s upstream=%s", a.Mode, orNone(a.Upstream))
}
func (a Follow) String() string { return "follow " + orNone(a.Upstream) }
func (a Rewind) String() string { return "rewind from=" + a.Leader }
func (a Reinit) String() string {
	if a.FromLeader {
		return "reinit from=" + a.Leader + " basebackup"
	}
	return "reinit from=" + a.Leader
}
func (CrashRecovery) String() string  { return "crash-recovery" }
func (CancelOp) String() string       { return "cancel-op" }
func (a ArmWatchdog) String() string  { return armString(a.Timeout) }
func (DisarmWatchdog) String() string { return "disarm-watchdog" }
func (a Exit) String() string         { return "exit: " + a.Reason }

func flag(s, name string, on bool) string {
	if on {
		return s + " " + name
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Decision is the result of Decide: the actions to run, in order, and what
// to report.
type Decision struct {
	Actions []Action
	// Message is the one-line cycle message Patroni logs ("no action. I am
	// (node1), the leader with the lock"), prefixed "PAUSE: " when paused.
	Message string
	// Role is the member role to publish: primary, replica, standby_leader,
	// demoted, promoted, uninitialized.
	Role string
	// State is the Postgres state string (running, starting, stopped,
	// crashed, ...).
	State string
	// WakeAt, when non-zero, asks the loop to run again no later than then
	// (scheduled switchover, race backoff, 2 s for the winner to take the
	// key).
	WakeAt time.Time
}

// String renders the decision on one line: message, then actions.
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.Message)
	if len(d.Actions) > 0 {
		b.WriteString(" [")
		for i, a := range d.Actions {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(a.String())
		}
		b.WriteString("]")
	}
	return b.String()
}

// has reports whether the decision contains an action of type T.
func has[T Action](d Decision) bool {
	for _, a := range d.Actions {
		if _, ok := a.(T); ok {
			return true
		}
	}
	return false
}

func (a SyncSlots) String() string {
	if a.Logical != "" {
		return "sync-slots [" + a.Names + "] logical [" + a.Logical + "]"
	}
	return "sync-slots [" + a.Names + "]"
}
func (a CopyLogicalSlots) String() string {
	return "copy-logical-slots [" + a.Names + "] from=" + a.From
}
func (a Restart) String() string {
	if a.Primary {
		return "restart primary"
	}
	return "restart upstream=" + orNone(a.Upstream)
}
func (LeaveSync) String() string             { return "leave-sync" }
func (a Refuse) String() string              { return "refuse: " + a.Err.Error() }
func (ClearScheduledRestart) String() string { return "clear-scheduled-restart" }
func (Checkpoint) String() string            { return "checkpoint" }
func (a AdvanceSlots) String() string {
	if a.Failsafe {
		return "advance-slots failsafe [" + a.Physical + "]"
	}
	return "advance-slots [" + a.Physical + "] logical [" + a.Logical + "]"
}

// armString renders ArmWatchdog; timeout 0 keeps the device's timeout.
func armString(timeout time.Duration) string {
	if timeout == 0 {
		return "arm-watchdog keep-timeout"
	}
	return fmt.Sprintf("arm-watchdog timeout=%s", timeout)
}
