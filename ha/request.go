package ha

import (
	"errors"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// Errors returned by the Node methods a REST API calls (Restart,
// ScheduleRestart, Reinitialize, Failsafe). A *BusyError reports that
// another background operation runs.
var (
	// ErrRestartConditions: the restart's role, postgres_version or
	// restart_pending condition does not hold on this node.
	ErrRestartConditions = errors.New("ha: restart conditions are not satisfied")
	// ErrRestartScheduled: a restart is already scheduled.
	ErrRestartScheduled = errors.New("ha: another restart is already scheduled")
	// ErrPaused: scheduling is refused in maintenance mode.
	ErrPaused = errors.New("ha: the cluster is paused")
	// ErrStillStarting: the restart's timeout elapsed while PostgreSQL was
	// still starting; the start goes on in the background.
	ErrStillStarting = errors.New("ha: postgres is still starting")
	// ErrNoLeader: reinitialize needs a leader to clone from.
	ErrNoLeader = errors.New("ha: cluster has no leader, can not reinitialize")
	// ErrIsLeader: the lock holder cannot reinitialize itself.
	ErrIsLeader = errors.New("ha: I am the leader, can not reinitialize")
	// ErrRunningAsLeader: a node running as primary refuses a failsafe
	// heartbeat (the REST API answers 500).
	ErrRunningAsLeader = errors.New("ha: running as a leader")
	// ErrDCSUnavailable: the request needs the DCS, which did not answer
	// this cycle.
	ErrDCSUnavailable = errors.New("ha: DCS is not accessible")
)

// BusyError reports that a background operation runs, so a restart or
// reinitialize request is refused (the REST API answers 503 "<op> already
// in progress").
type BusyError struct{ Op string }

func (e *BusyError) Error() string { return e.Op + " already in progress" }

// RestartRequest is a restart asked through the REST API (spec/ha-loop.md
// §9.1, §9.2). Empty conditions match every node.
type RestartRequest struct {
	// Role restricts the restart to a role (primary, standby_leader,
	// replica).
	Role string
	// PostgresVersion restricts it to servers older than this version in
	// server_version_num form (150004); PostgresVersionText is the same
	// version as written ("15.4"), published with a scheduled restart.
	PostgresVersion     int
	PostgresVersionText string
	// RestartPending restricts it to nodes with a pending restart.
	RestartPending bool
	// Timeout is how long the start may take (0: primary_start_timeout).
	Timeout time.Duration
}

// ReinitializeRequest is POST /reinitialize (spec/ha-loop.md §9.3).
type ReinitializeRequest struct {
	// Force cancels a running background operation first.
	Force bool
	// FromLeader clones from the leader even when a clonefrom member
	// exists.
	FromLeader bool
}

// RequestKind names a manual request.
type RequestKind int

const (
	// RequestRestart is an immediate restart.
	RequestRestart RequestKind = iota + 1
	// RequestReinitialize re-creates this replica.
	RequestReinitialize
)

// Request is a manual request waiting for the loop.
type Request struct {
	Kind    RequestKind
	Restart RestartRequest
	Reinit  ReinitializeRequest
}

// ScheduledRestart is a restart scheduled for At (spec/ha-loop.md §9.2),
// kept in memory and published in the member key.
type ScheduledRestart struct {
	At      time.Time
	Restart RestartRequest
	// PostmasterStart is the postmaster start time when it was scheduled;
	// a different one means the restart already happened.
	PostmasterStart time.Time
}

// FailsafeHeartbeat is the body of POST /failsafe: the primary that cannot
// reach the DCS tells the replicas it is alive (spec/ha-loop.md §11).
type FailsafeHeartbeat struct {
	Name    string
	ConnURL string
	APIURL  string
	// Slots are the primary's replication slot positions plus its own
	// slot name at its WAL position, as in /status.slots; replicas move
	// their copies to them while the DCS is unreachable.
	Slots map[string]dcs.LSN
}

// FailsafeLeader is the last failsafe heartbeat, valid until Until (the
// receiver's clock + ttl).
type FailsafeLeader struct {
	Name, ConnURL, APIURL string
	// Slots are the heartbeat's slot positions; while the heartbeat
	// stands in for the DCS they replace /status.slots.
	Slots map[string]dcs.LSN
	Until time.Time
}
