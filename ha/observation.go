package ha

import (
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// DataDir describes the local data directory.
type DataDir int

const (
	// DataPresent: an initialized data directory.
	DataPresent DataDir = iota
	// DataEmpty: missing or empty data directory.
	DataEmpty
	// DataUnreadable: the directory could not be read.
	DataUnreadable
)

// PGState is the local Postgres state, read once per cycle through
// Postgres.State. It is a value: Decide never changes it.
type PGState struct {
	DataDir DataDir
	// SysID is the system identifier from pg_controldata ("" if unknown).
	SysID string
	// Running: a postmaster is alive for the data directory.
	Running bool
	// Starting: the postmaster is up but rejects connections.
	Starting bool
	// Primary: running and not in recovery.
	Primary bool
	// Timeline is the current timeline (0 = unknown).
	Timeline int
	// LSN is the WAL position: flush LSN on a primary, max(receive,
	// replay) on a replica.
	LSN dcs.LSN
	// ReceiveLSN and ReplayLSN are a replica's received and replayed
	// positions, published in its member key; 0 when unknown or primary.
	ReceiveLSN dcs.LSN
	ReplayLSN  dcs.LSN
	// Upstream is the member (or "remote") the replica is configured to
	// follow; "" for none.
	Upstream string
	// Streaming reports a WAL receiver in state streaming.
	Streaming bool
	// CleanShutdown reports pg_controldata "shut down" or "shut down in
	// recovery" when not running; false means the last stop was a crash.
	CleanShutdown bool
	// WasPrimary reports that the data directory was last running as a
	// primary (pg_controldata "in production" or "shut down" without a
	// standby.signal).
	WasPrimary bool
	// SyncStandbyNames is the current synchronous_standby_names as member
	// names (nil = empty); SyncPlaceholder is set for the strict
	// placeholder.
	SyncStandbyNames []string
	SyncNum          int
	SyncPlaceholder  bool
	// SyncChangedLSN is the primary's flush LSN when
	// synchronous_standby_names last changed: a standby counts as
	// confirmed only once it reached it (spec/ha-loop.md §7).
	SyncChangedLSN dcs.LSN
	// Replicas are the rows of pg_stat_replication (primary only).
	Replicas []ReplicaStat
	// Diverged is the result of the last rewind check against the
	// current leader: nil = not checked, otherwise whether this node's
	// timeline diverged from the leader's (spec/ha-loop.md §6.2).
	Diverged *bool
	// CanRewind reports use_pg_rewind plus wal_log_hints/checksums.
	CanRewind bool
	// Slots are the names of the physical replication slots that exist.
	Slots []string
	// PostmasterStart identifies the postmaster incarnation.
	PostmasterStart time.Time
	// LogicalSlots are the names of the logical replication slots that
	// exist.
	LogicalSlots []string
	// SlotLSNs are the positions of the existing slots (restart_lsn of a
	// physical slot, confirmed_flush_lsn of a logical one); a leader
	// publishes them as /status.slots (spec/ha-loop.md §10).
	SlotLSNs map[string]dcs.LSN
	// SlotsWithXmin are the physical slots whose xmin is set (hot standby
	// feedback received through them); one no member streams from holds
	// vacuum back (spec/ha-loop.md §10 step 4).
	SlotsWithXmin []string
	// BackupLabel reports a backup_label file in the data directory (a
	// fresh clone): single-user crash recovery is skipped then (PG15+,
	// spec/ha-loop.md §6.3 step 4).
	BackupLabel bool
	// ServerVersion is server_version_num (150004); 0 when unknown.
	ServerVersion int
	// PendingRestart reports postmaster-context parameters whose new value
	// needs a restart; PendingRestartReason lists them.
	PendingRestart       bool
	PendingRestartReason map[string]dcs.PendingParam
}

// ReplicaStat is one row of pg_stat_replication.
type ReplicaStat struct {
	Name      string // application_name = member name
	Streaming bool
	// SyncState is "sync", "quorum", "potential" or "async".
	SyncState string
	LSN       dcs.LSN
}

// PeerStatus is one member's answer to GET /patroni (spec/ha-loop.md §3.2).
type PeerStatus struct {
	// Reachable is false when the call failed or the answer was invalid.
	Reachable  bool
	InRecovery bool
	LSN        dcs.LSN
	Timeline   int
	NoFailover bool
	// WatchdogFailed: the peer's required watchdog is unusable.
	WatchdogFailed bool
	Priority       int
}

// limited reports the failover limitation of §0.
func (p PeerStatus) limited() bool { return !p.Reachable || p.NoFailover || p.WatchdogFailed }

// OpKind names a long-running operation run in the background.
type OpKind int

const (
	OpNone OpKind = iota
	OpBootstrap
	OpClone
	OpStart
	OpRestart
	OpPromote
	OpDemote
	OpRewind
	OpReinit
	OpCrashRecovery
	OpCopySlots
)

var opNames = [...]string{"", "bootstrap", "clone", "start", "restart", "promote", "demote", "rewind", "reinitialize", "crash recovery", "copy logical slots"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return "unknown"
}

// Operation is the state of the background operation, if any.
type Operation struct {
	Kind    OpKind
	Running bool
	Started time.Time
	// Timeout is how long a restart may take before the startup-timeout
	// rules apply (0: primary_start_timeout).
	Timeout time.Duration
	// Failed is set when the last finished operation of Kind failed; the
	// next cycle sees it once.
	Failed bool
}

// Lease is this node's own bookkeeping of the leader lease, on its own
// clock. RenewedAt is when the last successful acquire/renewal was issued
// (before the request was sent), so RenewedAt+TTL is never later than the
// DCS's expiry of that write.
type Lease struct {
	Held      bool
	RenewedAt time.Time
	// TTL is the lease duration the DCS applied to that renewal (the ttl in
	// effect then, not now: a ttl raised later must not stretch it).
	TTL time.Duration
}

// ValidUntil is the time until which this node may act as the leader:
// RenewedAt + TTL − margin (margin 0 means the default for TTL). Zero when
// not held.
func (l Lease) ValidUntil(margin time.Duration) time.Time {
	if !l.Held {
		return time.Time{}
	}
	if margin == 0 {
		margin = defaultMargin(l.TTL)
	}
	return l.RenewedAt.Add(l.TTL - margin)
}

// Failure reports that an action of this cycle failed; Decide is called
// again with it to choose the failure branch (spec/ha-loop.md §4.1 "Renew
// failed", §3.3 "lock creation failed").
type Failure struct {
	Action Action
	// Unavailable: the DCS could not be reached (ErrUnavailable), as
	// opposed to a lost race (ErrConflict / ErrLeaderLost).
	Unavailable bool
}

// Observation is everything Decide looks at. It is a value: Decide does
// not modify it or anything it points to.
type Observation struct {
	Now    time.Time
	Config Config
	// Cluster is the DCS snapshot; nil with DCSError set when the read
	// failed.
	Cluster  *dcs.Cluster
	DCSError bool
	// LastCluster is the last snapshot that had a leader (old_cluster).
	LastCluster *dcs.Cluster
	// LastConfig is the last valid dynamic configuration seen.
	LastConfig *dcs.ClusterConfig
	PG         PGState
	// Peers holds the answers of the probe the previous Decide asked
	// for (ProbePeers); nil when not probed this cycle.
	Peers map[string]PeerStatus
	// FailsafeOK is the result of POST /failsafe to every member listed
	// in the failsafe key (nil: not tried this cycle).
	FailsafeOK *bool
	// FailsafeLSNs are the WAL positions the members returned (header
	// lsn) in their answers to POST /failsafe, by member name; set with
	// FailsafeOK (spec §11).
	FailsafeLSNs map[string]dcs.LSN
	Op           Operation
	Lease        Lease
	Failure      *Failure
	// Bootstrapping is set once this node won the initialize race and
	// until the cluster is initialized.
	Bootstrapping bool
	// RecoveryAttempt is set after a start following a crash (§2 step 8).
	RecoveryAttempt bool
	// UnlockedSince is when this node first saw the cluster unlocked in the
	// current leaderless period (zero when locked); the primary_race_backoff
	// timer (spec §3.1).
	UnlockedSince time.Time
	// PrevLSN is this node's WAL position in the previous cycle (0 =
	// unknown).
	PrevLSN dcs.LSN
	// WatchdogUsable is false when a required watchdog cannot be armed.
	WatchdogUsable bool
	// WatchdogArmed reports that the watchdog is active.
	WatchdogArmed bool
	// Request is a manual request (restart, reinitialize) waiting for the
	// loop; Decide answers it with an action or a Refuse.
	Request *Request
	// ScheduledRestart is the restart scheduled through the REST API
	// (spec §9.2), nil when none.
	ScheduledRestart *ScheduledRestart
	// LeavingSyncSince is when this replica published nosync to leave
	// synchronous duty before a restart (spec §7.6); zero when not.
	LeavingSyncSince time.Time
	// FailsafeLeader is the primary that last sent POST /failsafe to this
	// node (spec §11), nil when none.
	FailsafeLeader *FailsafeLeader
	// CheckpointNeeded: this node promoted and the post-promote CHECKPOINT
	// has not run yet (spec §7.3).
	CheckpointNeeded bool
	// RetainSlots are the slot names of members the leader still keeps
	// although their key may have vanished (member_slots_ttl, spec §10).
	RetainSlots []string
	// FirstCycle is true until the node finished one successful cycle.
	FirstCycle bool
}
