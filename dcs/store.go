package dcs

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned by every Store. Backends wrap them together with
// the client error that caused them (fmt.Errorf("%w: %w", ErrUnavailable,
// err)), so callers match with errors.Is and still see the cause.
var (
	// ErrConflict is returned when a conditional write lost: the key's
	// version is not the one given, a create-if-absent found the key, or the
	// leader key is held by another member.
	ErrConflict = errors.New("dcs: version conflict")
	// ErrLeaderLost is returned by leader-fenced writes when the leader key
	// is no longer held by this member (expired, deleted, or taken by
	// another). The caller must stop acting as leader at once.
	ErrLeaderLost = errors.New("dcs: leader key lost")
	// ErrUnavailable is returned when the DCS could not be reached or did
	// not answer before the context's deadline. The outcome of a write that
	// fails this way is unknown.
	ErrUnavailable = errors.New("dcs: unavailable")
	// ErrNoMember is returned by methods that act for a member (leader and
	// member writes) when the Store was opened without a member name, as
	// ctl-style tools do.
	ErrNoMember = errors.New("dcs: store has no member name")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("dcs: store closed")
)

// Store is one member's connection to the cluster's state in a distributed
// configuration store. A Store is opened for one cluster (scope) and, for a
// daemon, one member name; it owns that member's lease, session or ephemeral
// owner and binds the member key and, while leading, the leader key to it.
//
// Callers: ha.Node calls every method from its loop goroutine, one call at a
// time; the REST API and ctl call Cluster, SetConfig and SetFailover from
// other goroutines. Implementations must be safe for concurrent use.
//
// Every blocking method honours ctx: it returns by the context's deadline,
// with an error wrapping ErrUnavailable if the DCS did not answer. ha.Node
// gives each call a deadline of retry_timeout; backends retry transient
// errors inside that deadline and never beyond it.
//
// Liveness: the member's lease (etcd lease, Consul session, ZooKeeper
// session, Kubernetes leader annotations) is refreshed only by TouchMember,
// AcquireLeader, TakeLeader and UpdateLeader, that is by the HA loop making
// progress. A backend must not keep the lease alive on its own in the
// background: a loop that hangs must lose the leader key after ttl, so that
// another member can take over. (A keepalive may be sent asynchronously as
// long as it is triggered by one of these calls.)
//
// Versions: every value read carries its Version; conditional writes take
// the version last read. An empty prev Version means "unconditional" unless
// a method says otherwise.
type Store interface {
	// Cluster returns a snapshot of the whole cluster. Backends with a
	// watch-fed cache serve it from the cache, which must reflect at least
	// every write this Store made and every change delivered by its watch;
	// another client's write may show up only after the watch delivered it
	// (milliseconds, the same latency as Changes). Safety never rests on a
	// fresh read: every write that decides something is conditional on the
	// server. Stores opened without a member name (ctl) read
	// linearizably. Undecodable entries degrade and are listed in
	// Cluster.Problems; they never make Cluster fail.
	Cluster(ctx context.Context) (*Cluster, error)

	// Changes returns a channel that receives a value when something the HA
	// loop must react to changed: the leader key (acquired, released,
	// expired, taken over), the failover key, the config, the sync key or
	// the initialize key, whether by this client or another. Member and
	// status updates do not wake it. The channel has a buffer of one and
	// sends never block, so several changes coalesce into one wake-up; the
	// receiver re-reads Cluster after waking. The same channel is returned
	// on every call; it is never closed. There is one receiver (ha.Node).
	Changes() <-chan struct{}

	// Initialize writes the "initialize" key. With create true it is a
	// create-if-absent (the bootstrap race) and returns ErrConflict when the
	// key exists; with create false it overwrites the key.
	Initialize(ctx context.Context, sysid string, create bool) error

	// CancelInitialize deletes the "initialize" key after a failed
	// bootstrap.
	CancelInitialize(ctx context.Context) error

	// TouchMember publishes this member's key, bound to the member's lease,
	// and refreshes the lease. m.Name must be the Store's member name.
	// Backends may skip the write when the stored value is identical and
	// bound to the current lease.
	TouchMember(ctx context.Context, m *Member) error

	// AcquireLeader takes the leader key if nobody holds it
	// (create-if-absent, bound to this member's lease). It returns
	// ErrConflict when another member holds it.
	AcquireLeader(ctx context.Context) error

	// TakeLeader writes the leader key unconditionally. It is used once, by
	// the winner of the bootstrap race after bootstrapping.
	TakeLeader(ctx context.Context) error

	// UpdateLeader renews the leader key, fenced on it still being ours, and
	// in the same step (atomically where the backend allows) publishes u.
	// It returns ErrLeaderLost when the key is gone or held by another
	// member; it never recreates a key that someone else took.
	UpdateLeader(ctx context.Context, u LeaderUpdate) error

	// ReleaseLeader deletes the leader key if it is still ours, after
	// publishing last (when non-nil) as the final status. It returns nil
	// when the key is already gone or held by another member.
	ReleaseLeader(ctx context.Context, last *Status) error

	// SetConfig writes the dynamic configuration (a JSON object) with CAS on
	// prev, or unconditionally when prev is empty, and returns the new
	// version.
	SetConfig(ctx context.Context, config []byte, prev Version) (Version, error)

	// SetFailover writes a switchover/failover request, or clears it when f
	// is empty, with CAS on prev (unconditionally when prev is empty).
	SetFailover(ctx context.Context, f *Failover, prev Version) (Version, error)

	// SetSync writes the synchronous replication state with CAS on prev
	// (unconditionally when prev is empty), fenced on this member holding
	// the leader key, and returns the new version.
	SetSync(ctx context.Context, s *SyncState, prev Version) (Version, error)

	// DeleteSync clears the synchronous replication state with CAS on prev,
	// fenced on this member holding the leader key.
	DeleteSync(ctx context.Context, prev Version) error

	// SetHistory writes the timeline history, fenced on this member holding
	// the leader key.
	SetHistory(ctx context.Context, h *TimelineHistory) error

	// DeleteCluster removes every key of the cluster (ctl remove).
	DeleteCluster(ctx context.Context) error

	// SetTTL changes the lease duration used from the next lease refresh
	// on (dynamic config changes of ttl).
	SetTTL(ttl time.Duration)

	// Close stops background work and releases client resources. It does
	// not release the leader key (call ReleaseLeader first for a clean
	// hand-over); the lease then expires after ttl.
	Close() error
}

// LeaderUpdate is what the leader publishes on each renewal.
type LeaderUpdate struct {
	// Status, when non-nil, is written as the "status" key.
	Status *Status
	// Failsafe, when non-nil, is written as the "failsafe" key (an empty,
	// non-nil map clears it).
	Failsafe Failsafe
}

// RawWriter is implemented by stores that can write an arbitrary value under
// a key of the cluster. The conformance suite uses it to store garbage and
// check that Cluster degrades as the spec says. key is relative to the
// cluster prefix ("members/node1", "config", "leader"). Leader and member
// keys written this way are bound to the store's lease.
type RawWriter interface {
	PutRaw(ctx context.Context, key string, value []byte) error
}
