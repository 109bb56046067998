package api

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

// CompatVersion is the Patroni version pgwarden reports in "patroni.version"
// and patroni_version, the API level it is compatible with.
const CompatVersion = "4.1.4"

// Status is the latest status a node published: what its HA loop last
// observed of PostgreSQL and of the DCS. It is a value: the handler reads
// it, never modifies it, and never waits for the loop to produce a new one.
type Status struct {
	// Name and Scope identify the member and its cluster.
	Name, Scope string
	// State is the PostgreSQL state: running, starting, stopped, crashed,
	// ...; "unknown" when the node believes it runs but the status query
	// failed.
	State string
	// Role is primary, replica or standby_leader from the status query, or
	// the internal role when the query failed (demoted, uninitialized,
	// promoted, ...).
	Role string
	// QueryOK is true when the status query succeeded: the fields down to
	// Replication are valid only then.
	QueryOK             bool
	PostmasterStartTime time.Time
	// ServerVersion is PostgreSQL's server_version_num (e.g. 150004).
	ServerVersion int
	Timeline      int
	// XLogLocation is the primary's flush position.
	XLogLocation dcs.LSN
	// ReceivedLocation and ReplayedLocation are a replica's positions.
	ReceivedLocation, ReplayedLocation dcs.LSN
	// ReplayedTimestamp is the last replayed transaction's time; nil when
	// unknown.
	ReplayedTimestamp *time.Time
	// ReplayPaused is true while WAL replay is paused.
	ReplayPaused bool
	// ReplicationState is "streaming", "in archive recovery" or "".
	ReplicationState string
	// Replication lists the walsenders of this node.
	Replication []Replication
	// LatestEndLSN is the WAL receiver's latest_end_lsn (0 when unknown);
	// used for lag, never shown.
	LatestEndLSN dcs.LSN

	// SystemID is the database system identifier ("" when unknown).
	SystemID             string
	PendingRestart       bool
	PendingRestartReason map[string]dcs.PendingParam
	ScheduledRestart     *dcs.ScheduledRestart
	WatchdogFailed       bool
	LoggerQueueSize      int
	LoggerRecordsLost    int
	// Tags are the node's configured tags (for tag_ filters).
	Tags map[string]any

	// Cluster is the last DCS snapshot the loop read; nil before the first
	// successful read. DCSLastSeen is when it was read.
	Cluster     *dcs.Cluster
	DCSLastSeen time.Time
	// Global is the dynamic configuration in force (pause, sync mode, ttl,
	// failsafe_mode, maximum_lag_on_failover, ...).
	Global config.Settings
	// LeaderUntil is when this node's hold on the leader key ends by its
	// own clock: last acquisition or renewal plus ttl (also extended while
	// failsafe mode keeps a primary alive). Zero when not leader.
	LeaderUntil time.Time
	// LeaseRenewed is when the leader key or member lease was last
	// renewed.
	LeaseRenewed time.Time
	// FailsafeActive is true while failsafe mode is active.
	FailsafeActive bool
	// NextLoop is when the HA loop is next scheduled to run.
	NextLoop time.Time
}

// Replication is one walsender row of the status document.
type Replication struct {
	Usename         string `json:"usename"`
	ApplicationName string `json:"application_name"`
	ClientAddr      string `json:"client_addr"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
	SyncPriority    int    `json:"sync_priority"`
}

// StatusSource hands out the latest published Status. Status is called
// from HTTP handler goroutines, concurrently, on every health check; it must
// return at once (typically an atomic pointer load) and never block on the
// HA loop or the DCS. The returned value belongs to the caller.
type StatusSource interface {
	Status() Status
}

// SharedStatusSource is a StatusSource that can also hand out the
// published Status itself rather than a copy. The handler then derives what
// it needs from a Status (the encoded status document) once per
// publication and keeps it, keyed by the pointer, until SharedStatus
// returns another one: a health check costs a pointer load instead of a
// copy and a JSON encoding. It is found by type assertion on
// Config.Status.
type SharedStatusSource interface {
	StatusSource
	// SharedStatus returns the latest published Status, never nil, from
	// any goroutine and at once, like Status. Nobody may modify a Status
	// after it was published, neither the caller nor the publisher, which
	// publishes a new value instead (an atomic.Pointer store).
	SharedStatus() *Status
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func() Status

// Status calls f.
func (f StatusFunc) Status() Status { return f() }

// BusyError reports that another asynchronous action (restart,
// reinitialize, ...) is running; the API answers 503 "<action> already in
// progress".
type BusyError struct{ Action string }

func (e *BusyError) Error() string { return e.Action + " already in progress" }

// Errors a Controller returns to select an answer.
var (
	// ErrStillStarting: the restart timed out while PostgreSQL was still
	// starting (503 "postgres is still starting").
	ErrStillStarting = errors.New("api: postgres is still starting")
	// ErrRestartScheduled: another restart is already scheduled (409).
	ErrRestartScheduled = errors.New("api: another restart is already scheduled")
)

// RestartRequest is a parsed POST /restart body.
type RestartRequest struct {
	// Schedule is when to restart; nil for now.
	Schedule *time.Time
	// Role restricts the restart to a role (primary, standby_leader,
	// replica); "" for any.
	Role string
	// PostgresVersion restricts the restart to servers older than this
	// ("15.4"); "" for any.
	PostgresVersion string
	// Timeout aborts waiting for the restart; 0 for the default.
	Timeout time.Duration
	// RestartPending restricts the restart to nodes with a pending restart.
	RestartPending bool
}

// ReinitializeRequest is a parsed POST /reinitialize body.
type ReinitializeRequest struct {
	// Force cancels a running asynchronous action first.
	Force bool
	// FromLeader forces pg_basebackup from the leader.
	FromLeader bool
}

// FailsafeRequest is a POST /failsafe body: the primary's heartbeat while
// it cannot reach the DCS.
type FailsafeRequest struct {
	Name    string             `json:"name"`
	ConnURL string             `json:"conn_url"`
	APIURL  string             `json:"api_url"`
	Slots   map[string]dcs.LSN `json:"slots,omitempty"`
}

// Controller receives the requests the HA loop carries out. It is called
// from HTTP handler goroutines; methods may block (Restart waits for the
// restart), and must honour ctx.
type Controller interface {
	// Restart restarts PostgreSQL now, after the API checked the request's
	// conditions. nil means restarted; ErrStillStarting, a *BusyError, or
	// any other error ("restart failed").
	Restart(ctx context.Context, r RestartRequest) error
	// ScheduleRestart records a scheduled restart (published in the member
	// key); ErrRestartScheduled when one exists.
	ScheduleRestart(ctx context.Context, r RestartRequest) error
	// CancelScheduledRestart deletes the scheduled restart and reports
	// whether there was one.
	CancelScheduledRestart(ctx context.Context) bool
	// Reload re-reads the local configuration and reloads PostgreSQL on
	// the next loop iteration; it must not wait for it.
	Reload(ctx context.Context)
	// Reinitialize starts re-creating this replica; a *BusyError when
	// another action runs.
	Reinitialize(ctx context.Context, r ReinitializeRequest) error
	// Failsafe records a failsafe heartbeat from the primary, valid for
	// ttl, and returns this node's received/replayed LSN when known.
	Failsafe(ctx context.Context, r FailsafeRequest) (*dcs.LSN, error)
	// Wake makes the HA loop run now (after a config or failover write).
	Wake()
	// Shutdown starts a clean shutdown (POST /sigterm).
	Shutdown()
}

// DCS is the part of dcs.Store the API uses; a dcs.Store satisfies it.
type DCS interface {
	Cluster(ctx context.Context) (*dcs.Cluster, error)
	SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error)
	SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error)
}

// StatusDocument is the JSON of GET /patroni and of GET health checks
// (spec/rest-api.md §3). Field order is Patroni's.
type StatusDocument struct {
	State                    string                      `json:"state"`
	PostmasterStartTime      string                      `json:"postmaster_start_time,omitempty"`
	Role                     string                      `json:"role"`
	ServerVersion            int                         `json:"server_version,omitempty"`
	XLog                     *XLog                       `json:"xlog,omitempty"`
	Timeline                 int                         `json:"timeline,omitempty"`
	ReplicationState         string                      `json:"replication_state,omitempty"`
	Replication              []Replication               `json:"replication,omitempty"`
	SyncStandby              bool                        `json:"sync_standby,omitempty"`
	QuorumStandby            bool                        `json:"quorum_standby,omitempty"`
	Pause                    bool                        `json:"pause,omitempty"`
	ClusterUnlocked          bool                        `json:"cluster_unlocked,omitempty"`
	FailsafeModeIsActive     bool                        `json:"failsafe_mode_is_active,omitempty"`
	DCSLastSeen              int64                       `json:"dcs_last_seen"`
	Tags                     map[string]any              `json:"tags,omitempty"`
	DatabaseSystemIdentifier string                      `json:"database_system_identifier,omitempty"`
	PendingRestart           bool                        `json:"pending_restart,omitempty"`
	PendingRestartReason     map[string]dcs.PendingParam `json:"pending_restart_reason,omitempty"`
	Patroni                  PatroniInfo                 `json:"patroni"`
	ScheduledRestart         map[string]any              `json:"scheduled_restart,omitempty"`
	WatchdogFailed           bool                        `json:"watchdog_failed,omitempty"`
	LoggerQueueSize          int                         `json:"logger_queue_size,omitempty"`
	LoggerRecordsLost        int                         `json:"logger_records_lost,omitempty"`
}

// XLog is the "xlog" object: Location for a primary; the others for a
// replica.
type XLog struct {
	Location          *uint64 `json:"location,omitempty"`
	ReceivedLocation  *uint64 `json:"received_location,omitempty"`
	ReplayedLocation  *uint64 `json:"replayed_location,omitempty"`
	ReplayedTimestamp *string `json:"replayed_timestamp,omitempty"`
	Paused            *bool   `json:"paused,omitempty"`
}

// MarshalJSON writes replayed_timestamp as null for replicas, as Patroni.
func (x XLog) MarshalJSON() ([]byte, error) {
	if x.Location != nil {
		return fmt.Appendf(nil, `{"location":%d}`, *x.Location), nil
	}
	ts := "null"
	if x.ReplayedTimestamp != nil {
		ts = strconv.Quote(*x.ReplayedTimestamp)
	}
	return fmt.Appendf(nil, `{"received_location":%d,"replayed_location":%d,"replayed_timestamp":%s,"paused":%t}`,
		deref(x.ReceivedLocation), deref(x.ReplayedLocation), ts, x.Paused != nil && *x.Paused), nil
}

// PatroniInfo is the "patroni" object.
type PatroniInfo struct {
	Version string `json:"version"`
	Scope   string `json:"scope"`
	Name    string `json:"name"`
}

func deref[T any](p *T) T {
	var z T
	if p != nil {
		z = *p
	}
	return z
}

// PythonTime formats a time the way Python's str(datetime) does
// ("2024-08-28 19:39:26.352526+00:00"), as Patroni writes timestamps.
func PythonTime(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02 15:04:05-07:00")
	}
	return t.Format("2006-01-02 15:04:05.000000-07:00")
}

// view is the per-request evaluation of a Status (spec/rest-api.md §4).
type view struct {
	st       *Status
	now      time.Time
	isLeader bool
	cluster  *dcs.Cluster // nil when older than ttl
	paused   bool
	standby  bool // standby cluster
	sync     bool // this node is a sync standby
	quorum   bool // this node is a quorum standby
}

func newView(st *Status, now time.Time) *view {
	v := &view{st: st, now: now}
	v.isLeader = now.Before(st.LeaderUntil)
	ttl := time.Duration(max(st.Global.TTL, 1)) * time.Second
	if st.Cluster != nil && now.Sub(st.DCSLastSeen) <= ttl {
		v.cluster = st.Cluster
	}
	v.paused = st.Global.Pause
	if st.Cluster != nil && st.Cluster.Config != nil {
		v.paused = v.paused || st.Cluster.IsPaused()
	}
	v.standby = st.Global.StandbyCluster.Active()
	if st.Role == "replica" && !v.standby && st.Cluster != nil && st.Cluster.Sync.Matches(st.Name) {
		switch st.Global.SynchronousMode {
		case config.SyncOn:
			v.sync = true
		case config.SyncQuorum:
			v.quorum = true
		}
	}
	return v
}

// document builds the status document.
func (v *view) document(version string) StatusDocument {
	st := v.st
	d := StatusDocument{
		State:                    st.State,
		Role:                     st.Role,
		SyncStandby:              v.sync,
		QuorumStandby:            v.quorum,
		Pause:                    v.paused,
		FailsafeModeIsActive:     st.FailsafeActive,
		DCSLastSeen:              st.DCSLastSeen.Unix(),
		DatabaseSystemIdentifier: st.SystemID,
		PendingRestart:           st.PendingRestart,
		WatchdogFailed:           st.WatchdogFailed,
		LoggerQueueSize:          st.LoggerQueueSize,
		LoggerRecordsLost:        st.LoggerRecordsLost,
		Patroni:                  PatroniInfo{Version: version, Scope: st.Scope, Name: st.Name},
	}
	if st.DCSLastSeen.IsZero() {
		d.DCSLastSeen = 0
	}
	if st.QueryOK {
		if !st.PostmasterStartTime.IsZero() {
			d.PostmasterStartTime = PythonTime(st.PostmasterStartTime)
		}
		d.ServerVersion = st.ServerVersion
		d.Timeline = st.Timeline
		if st.Role == "primary" {
			loc := uint64(st.XLogLocation)
			d.XLog = &XLog{Location: &loc}
		} else {
			rec, rep := uint64(st.ReceivedLocation), uint64(st.ReplayedLocation)
			x := &XLog{ReceivedLocation: &rec, ReplayedLocation: &rep, Paused: &st.ReplayPaused}
			if st.ReplayedTimestamp != nil {
				ts := PythonTime(*st.ReplayedTimestamp)
				x.ReplayedTimestamp = &ts
			}
			d.XLog = x
			d.ReplicationState = st.ReplicationState
		}
		d.Replication = st.Replication
	}
	if st.Cluster == nil || !st.Cluster.IsLocked() {
		d.ClusterUnlocked = true
	}
	if len(st.Tags) > 0 {
		d.Tags = st.Tags
	}
	if st.PendingRestart && len(st.PendingRestartReason) > 0 {
		d.PendingRestartReason = st.PendingRestartReason
	}
	if sr := st.ScheduledRestart; sr != nil {
		m := map[string]any{"schedule": sr.Schedule}
		if sr.Role != "" {
			m["role"] = sr.Role
		}
		if sr.PostgresVersion != "" {
			m["postgres_version"] = sr.PostgresVersion
		}
		if sr.RestartPending {
			m["restart_pending"] = true
		}
		if sr.Timeout != "" {
			m["timeout"] = sr.Timeout
		}
		d.ScheduledRestart = m
	}
	return d
}

// ClusterDocument is the JSON of GET /cluster (spec/rest-api.md §5).
type ClusterDocument struct {
	Members             []ClusterMember      `json:"members"`
	Scope               string               `json:"scope"`
	Pause               bool                 `json:"pause,omitempty"`
	ScheduledSwitchover *ScheduledSwitchover `json:"scheduled_switchover,omitempty"`
}

// ClusterMember is one member of GET /cluster. Lag fields are a number of
// bytes or the string "unknown".
type ClusterMember struct {
	Name                 string                      `json:"name"`
	Role                 string                      `json:"role"`
	State                string                      `json:"state"`
	APIURL               string                      `json:"api_url,omitempty"`
	Host                 string                      `json:"host,omitempty"`
	Port                 int                         `json:"port,omitempty"`
	Timeline             *int                        `json:"timeline,omitempty"`
	PendingRestart       bool                        `json:"pending_restart,omitempty"`
	PendingRestartReason map[string]dcs.PendingParam `json:"pending_restart_reason,omitempty"`
	ScheduledRestart     map[string]any              `json:"scheduled_restart,omitempty"`
	Tags                 map[string]any              `json:"tags,omitempty"`
	ReceiveLag           any                         `json:"receive_lag,omitempty"`
	ReceiveLSN           any                         `json:"receive_lsn,omitempty"`
	ReplayLag            any                         `json:"replay_lag,omitempty"`
	ReplayLSN            any                         `json:"replay_lsn,omitempty"`
	Lag                  any                         `json:"lag,omitempty"`
	LSN                  any                         `json:"lsn,omitempty"`
}

// ScheduledSwitchover is the pending scheduled switchover of GET /cluster.
type ScheduledSwitchover struct {
	At   string `json:"at"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// BuildClusterDocument renders a DCS snapshot as GET /cluster does.
func BuildClusterDocument(c *dcs.Cluster, scope string) ClusterDocument {
	doc := ClusterDocument{Scope: scope, Members: []ClusterMember{}}
	var settings config.Settings
	if c.Config != nil && len(c.Config.Raw) > 0 {
		if d, err := config.ParseDynamic(c.Config.Raw); err == nil {
			settings, _ = d.Settings()
		}
	}
	standby := settings.StandbyCluster.Active()
	optime := c.Status.LastLSN
	members := slices.Clone(c.Members)
	slices.SortFunc(members, func(a, b *dcs.Member) int { return strings.Compare(a.Name, b.Name) })
	for _, m := range members {
		cm := ClusterMember{Name: m.Name, State: m.State, APIURL: m.APIURL, Timeline: m.Timeline,
			PendingRestart: m.PendingRestart, PendingRestartReason: m.PendingRestartReason}
		if len(m.Tags) > 0 {
			cm.Tags = m.Tags
		}
		if sr := m.ScheduledRestart; sr != nil {
			cm.ScheduledRestart = map[string]any{"schedule": sr.Schedule}
		}
		if u, err := url.Parse(m.ConnURL); err == nil && m.ConnURL != "" {
			cm.Host = u.Hostname()
			cm.Port, _ = strconv.Atoi(u.Port())
		}
		isLeader := c.Leader != nil && c.Leader.Name == m.Name
		switch {
		case isLeader && standby:
			cm.Role = "standby_leader"
		case isLeader:
			cm.Role = "leader"
		case settings.SynchronousMode == config.SyncOn && !standby && c.Sync.Matches(m.Name):
			cm.Role = "sync_standby"
		case settings.SynchronousMode == config.SyncQuorum && !standby && c.Sync.Matches(m.Name):
			cm.Role = "quorum_standby"
		default:
			cm.Role = "replica"
		}
		if cm.Role != "leader" && m.ReplicationState != "" {
			cm.State = m.ReplicationState
		}
		if !isLeader {
			lag := func(p *dcs.LSN) (any, any) {
				if p == nil {
					return "unknown", "unknown"
				}
				l := int64(optime) - int64(*p)
				return max(l, 0), p.String()
			}
			cm.ReceiveLag, cm.ReceiveLSN = lag(m.ReceiveLSN)
			cm.ReplayLag, cm.ReplayLSN = lag(m.ReplayLSN)
			cm.Lag, cm.LSN = lag(m.XLogLocation)
		}
		doc.Members = append(doc.Members, cm)
	}
	doc.Pause = c.IsPaused()
	if f := c.Failover; f != nil && f.ScheduledAt != nil {
		doc.ScheduledSwitchover = &ScheduledSwitchover{At: f.ScheduledAt.Format(time.RFC3339), From: f.Leader, To: f.Candidate}
	}
	return doc
}
