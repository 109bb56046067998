package dcs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the opaque backend version of one stored key, used for
// compare-and-set: etcd's mod_revision, Consul's ModifyIndex, a ZooKeeper
// znode version, a Kubernetes resourceVersion. The empty Version means "no
// version": the key is absent, or (for the config) not valid. Versions are
// only compared for equality and only against the same key of the same
// backend.
type Version string

// LSN is a PostgreSQL write-ahead log position in bytes. Patroni stores
// positions as plain integers in the DCS; PostgreSQL prints them as
// "XXXXXXXX/XXXXXXXX" (high/low 32 bits in hex), which String and ParseLSN
// convert from and to.
type LSN uint64

// ParseLSN parses PostgreSQL's textual LSN form ("0/3000060").
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("dcs: parse LSN %q: want the form HI/LO in hex", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("dcs: parse LSN %q: high part: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("dcs: parse LSN %q: low part: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// String formats the LSN the way PostgreSQL prints it.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF)
}

// Cluster is one consistent snapshot of everything stored for a cluster:
// the result of one prefix read (or of the backend's watch-fed cache).
// Absent keys are nil or empty, never an error. Entries that could not be
// decoded degrade as spec/dcs-layout.md §1 says and are listed in Problems.
//
// A Cluster is a value: the Store hands out a fresh one on every call and
// never mutates it afterwards, so callers may keep and share it, but must not
// modify it.
type Cluster struct {
	// Initialize is the "initialize" key: nil when the cluster was never
	// initialized.
	Initialize *Initialize
	// Config is the dynamic configuration ("config" key); nil when absent.
	Config *ClusterConfig
	// Leader is the holder of the leader key; nil when nobody holds it
	// (absent or expired).
	Leader *Leader
	// Status is the leader's last published WAL position and slot positions
	// ("status", or the legacy "optime/leader").
	Status Status
	// Members holds every live member key, sorted by name.
	Members []*Member
	// Failover is the pending manual switchover or failover request; nil
	// when there is none (absent key or "{}").
	Failover *Failover
	// Sync is the synchronous replication state ("sync"); nil when absent
	// or empty.
	Sync *SyncState
	// History is the timeline history ("history"); nil when absent.
	History *TimelineHistory
	// Failsafe is the failsafe member map ("failsafe"); nil when absent or
	// unparsable.
	Failsafe Failsafe
	// Problems lists the entries that could not be decoded, each as a
	// *DecodeError. A non-empty list does not make the snapshot unusable.
	Problems []error
}

// Member returns the member with the given name, or nil.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// IsPaused reports whether the dynamic configuration has "pause": true.
func (c *Cluster) IsPaused() bool { return c.Config.Paused() }

// IsLocked reports whether some member holds the leader key.
func (c *Cluster) IsLocked() bool { return c.Leader != nil && c.Leader.Name != "" }

// Initialize is the value of the "initialize" key (spec/dcs-layout.md §2.1).
type Initialize struct {
	// SystemID is the PostgreSQL system identifier as a decimal string, or
	// "" while the winner of the bootstrap race is still bootstrapping.
	SystemID string
	// Version is the key's backend version.
	Version Version
}

// Valid reports whether SystemID looks like a real system identifier: at
// least 10 characters, all digits.
func (i *Initialize) Valid() bool {
	if i == nil || len(i.SystemID) < 10 {
		return false
	}
	for _, r := range i.SystemID {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ClusterConfig is the dynamic configuration stored in the "config" key
// (spec/dcs-layout.md §2.2). Its content is owned by package config; dcs keeps
// the exact JSON so that a read-modify-write never reorders or drops keys it
// does not know, and decodes the object once into Data.
type ClusterConfig struct {
	// Raw is the compact JSON object as stored.
	Raw json.RawMessage
	// Data is Raw decoded, with numbers as json.Number.
	Data map[string]any
	// Version is the key's backend version. A config is valid for consumers
	// only when Version is non-empty (see Valid).
	Version Version
}

// Valid reports whether the config may be used: it exists and carries a
// modify-version. Nodes ignore an invalid config and keep their last one.
func (c *ClusterConfig) Valid() bool { return c != nil && c.Version != "" }

// Paused reports whether the config has "pause": true.
func (c *ClusterConfig) Paused() bool {
	if c == nil {
		return false
	}
	return Truthy(c.Data["pause"])
}

// Leader is the holder of the leader key (spec/dcs-layout.md §2.3).
type Leader struct {
	// Name is the member name stored in the key.
	Name string
	// Version is the key's backend version.
	Version Version
	// Session identifies the lease, session or ephemeral owner the key is
	// bound to, as the backend names it ("" when the backend has none).
	Session string
	// Member is the member key of the leader; a member with only a name
	// when the leader has no member key.
	Member *Member
}

// Member is one "members/<name>" key: what a node publishes about itself
// every cycle (spec/dcs-layout.md §2.4). Optional fields are zero when
// absent; pointer fields distinguish "absent" from a zero value where
// Patroni does.
type Member struct {
	// Name is the member name (the last path element of the key).
	Name string
	// Version is the key's backend version.
	Version Version
	// Session identifies the lease, session or ephemeral owner the key is
	// bound to ("" when unknown).
	Session string

	ConnURL        string // conn_url: postgres://host:port/db
	APIURL         string // api_url: http(s)://host:port/patroni
	State          string // state: running, starting, stopped, ...
	Role           string // role: primary, replica, standby_leader, ...; "master" is read as "primary"
	PatroniVersion string // version: the daemon version string
	ProxyURL       string // proxy_url, when configured

	// CheckpointAfterPromote is non-nil (and false) only while the leader's
	// post-promote checkpoint has not completed.
	CheckpointAfterPromote *bool
	// Tags are the member's effective tags (nofailover, failover_priority,
	// clonefrom, noloadbalance, replicatefrom, nosync, sync_priority,
	// nostream, and any user tag). Numbers are json.Number.
	Tags map[string]any

	PendingRestart       bool                    // pending_restart
	PendingRestartReason map[string]PendingParam // pending_restart_reason

	// XLogLocation is the primary's flush LSN, or a replica's
	// max(receive, replay); nil when not published.
	XLogLocation *LSN
	// ReplayLSN and ReceiveLSN are published by replicas only.
	ReplayLSN  *LSN
	ReceiveLSN *LSN
	// ReplicationState is "streaming" or "in archive recovery" (replicas).
	ReplicationState string
	// Timeline is the member's timeline; nil when not published.
	Timeline *int

	// ScheduledRestart is the pending scheduled restart, if any.
	ScheduledRestart *ScheduledRestart
	// Pause is true when the member saw the cluster paused.
	Pause bool
}

// PendingParam is one parameter that needs a restart to take effect.
type PendingParam struct {
	OldValue string `json:"old_value"`
	NewValue string `json:"new_value"`
}

// ScheduledRestart is a restart scheduled through the REST API.
type ScheduledRestart struct {
	Schedule            string // ISO-8601 time with zone
	PostmasterStartTime string // postmaster_start_time when it was scheduled
	Role                string // only restart when the node has this role ("" = any)
	PostgresVersion     string // only restart when the server is older than this
	RestartPending      bool   // only restart when a restart is pending
	Timeout             string // abort the restart after this many seconds (as written)
}

// IsRunning reports whether the member's Postgres is in state "running".
func (m *Member) IsRunning() bool { return m != nil && m.State == "running" }

// Tag returns a tag's value, or nil.
func (m *Member) Tag(name string) any {
	if m == nil {
		return nil
	}
	return m.Tags[name]
}

// NoFailover reports the nofailover tag (or failover_priority <= 0 when
// failover_priority is set and nofailover is not).
func (m *Member) NoFailover() bool {
	if v, ok := m.Tags["nofailover"]; ok {
		return Truthy(v)
	}
	if _, ok := m.Tags["failover_priority"]; ok {
		return m.FailoverPriority() <= 0
	}
	return false
}

// FailoverPriority returns the failover_priority tag (default 1).
func (m *Member) FailoverPriority() int {
	if v, ok := m.Tags["failover_priority"]; ok {
		if n, ok := IntValue(v); ok {
			return n
		}
	}
	return 1
}

// CloneFrom reports the clonefrom tag.
func (m *Member) CloneFrom() bool { return Truthy(m.Tag("clonefrom")) }

// NoSync reports the nosync tag.
func (m *Member) NoSync() bool { return Truthy(m.Tag("nosync")) }

// NoStream reports the nostream tag.
func (m *Member) NoStream() bool { return Truthy(m.Tag("nostream")) }

// ReplicateFrom returns the replicatefrom tag ("" when unset).
func (m *Member) ReplicateFrom() string {
	s, _ := m.Tag("replicatefrom").(string)
	return s
}

// SyncPriority returns the sync_priority tag (default 1).
func (m *Member) SyncPriority() int {
	if n, ok := IntValue(m.Tag("sync_priority")); ok {
		return n
	}
	return 1
}

// LSN returns XLogLocation, or 0 when it is not published.
func (m *Member) LSN() LSN {
	if m == nil || m.XLogLocation == nil {
		return 0
	}
	return *m.XLogLocation
}

// Status is the leader's published position (spec/dcs-layout.md §2.5).
type Status struct {
	// LastLSN is the leader's last known WAL position ("optime"); 0 when
	// unknown.
	LastLSN LSN
	// Slots maps replication slot names (and the leader's own name) to
	// their positions on the leader; nil when not published.
	Slots map[string]LSN
	// RetainSlots lists member slots the leader keeps although the member
	// key is gone; sorted.
	RetainSlots []string
	// Version is the key's backend version.
	Version Version
}

// Failover is a manual switchover or failover request (spec/dcs-layout.md
// §2.7). Leader set means switchover from that leader; empty means failover.
type Failover struct {
	Leader string
	// Candidate is the requested new leader (stored as "member").
	Candidate string
	// ScheduledAt is when a scheduled switchover should happen; nil for
	// "now".
	ScheduledAt *time.Time
	// Version is the key's backend version.
	Version Version
}

// IsEmpty reports whether the request asks for nothing ("{}").
func (f *Failover) IsEmpty() bool {
	return f == nil || (f.Leader == "" && f.Candidate == "")
}

// SyncState is the synchronous replication state owned by the primary
// (spec/dcs-layout.md §2.8).
type SyncState struct {
	// Leader is the primary that manages the state.
	Leader string
	// Standbys are the synchronous standbys, sorted (stored comma-joined as
	// "sync_standby").
	Standbys []string
	// Quorum is the quorum size (0 in synchronous_mode: on).
	Quorum int
	// Version is the key's backend version.
	Version Version
}

// IsEmpty reports whether the state names no leader.
func (s *SyncState) IsEmpty() bool { return s == nil || s.Leader == "" }

// Matches reports whether name is one of the synchronous standbys
// (case-insensitive, as Patroni matches).
func (s *SyncState) Matches(name string) bool {
	if s == nil {
		return false
	}
	for _, n := range s.Standbys {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// TimelineHistory is the "history" key: one line per timeline switch
// (spec/dcs-layout.md §2.6).
type TimelineHistory struct {
	Lines []HistoryLine
	// Version is the key's backend version.
	Version Version
}

// HistoryLine is one timeline switch: [parent_timeline, switch_lsn, reason,
// timestamp, new_leader]. Timestamp and NewLeader are empty when the stored
// line is shorter.
type HistoryLine struct {
	Timeline  int
	LSN       LSN
	Reason    string
	Timestamp string
	NewLeader string
}

// Timeline returns the cluster timeline the history implies: the last
// line's parent timeline + 1, 1 for an empty history, 0 when there is none.
func (h *TimelineHistory) Timeline() int {
	if h == nil {
		return 0
	}
	if len(h.Lines) == 0 {
		return 1
	}
	return h.Lines[len(h.Lines)-1].Timeline + 1
}

// Failsafe maps member names to their REST API URLs (spec/dcs-layout.md
// §2.9). nil means "none".
type Failsafe map[string]string

// DecodeError reports one key whose stored value could not be decoded.
type DecodeError struct {
	// Key is the key relative to the cluster prefix ("members/node1").
	Key string
	// Value is the offending stored value (possibly truncated).
	Value string
	// Err is the parse error.
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("dcs: decode %s %q: %v", e.Key, e.Value, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Truthy interprets a JSON value from the dynamic config or tags as a
// boolean the way Patroni does: true, "true"/"on"/"yes"/"1"/"y" (any case),
// or a non-zero number.
func Truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1", "y":
			return true
		}
	case json.Number:
		f, err := x.Float64()
		return err == nil && f != 0
	case float64:
		return x != 0
	case int:
		return x != 0
	}
	return false
}

// IntValue interprets a JSON value from the dynamic config or tags as an
// integer: a number (truncated) or a numeric string. ok is false otherwise.
func IntValue(v any) (int, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return int(n), true
		}
		if f, err := x.Float64(); err == nil {
			return int(f), true
		}
	case float64:
		return int(x), true
	case int:
		return x, true
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return n, true
		}
	}
	return 0, false
}
