package memory

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Clock drives lease expiry and injected delays. nil means the real
	// clock; tests pass a *testing.FakeClock from k8s.io/utils/clock/testing.
	Clock clock.WithTicker
	// Logger receives lease expiries and fault changes at Debug level. nil
	// means slog.Default().
	Logger *slog.Logger
	// PartitionBlocks selects how calls of a partitioned member, or of any
	// member during an outage (SetAvailable(false)), fail: false (the
	// default) returns an error wrapping dcs.ErrUnavailable at once, like a
	// refused connection; true blocks until the call's context is done and
	// then returns that error, like a dropped network link. With true, a
	// call whose context has no deadline blocks until it is cancelled.
	PartitionBlocks bool
}

// Server is an in-memory DCS shared by the stores of one or more clusters.
// It holds every key as raw bytes with a version (a global revision
// counter), and a lease per Store with a TTL and a deadline on the clock.
//
// A Server is safe for concurrent use. It starts no goroutine; Run is an
// optional loop that delivers expiry notifications without callers.
type Server struct {
	clock           clock.WithTicker
	log             *slog.Logger
	partitionBlocks bool

	// kick wakes Run when the earliest lease deadline moved earlier.
	kick chan struct{}

	mu          sync.Mutex
	rev         int64               // last revision handed out
	lastLease   int64               // last lease id handed out
	clusters    map[string]*cluster // by key prefix "/<namespace>/<scope>/"
	leases      map[int64]*lease    // live leases by id
	nextExpiry  time.Time           // earliest deadline of leases; zero when there are none
	faults      map[string]*fault   // by member name
	unavailable bool                // whole-DCS outage
}

// cluster is the key space of one "/<namespace>/<scope>/" prefix.
type cluster struct {
	prefix   string
	keys     map[string]*kv // by key relative to prefix
	watchers map[*Store]struct{}
	// changes counts writes and deletes in this cluster; snap is the
	// snapshot built when it had the value snapChanges (nil: none yet).
	changes     int64
	snap        *dcs.Cluster
	snapChanges int64
}

// kv is one stored key. value is never modified after it is stored.
type kv struct {
	value   []byte
	version dcs.Version
	lease   *lease // nil when the key is not bound to a lease
}

// lease is a client's liveness: keys bound to it are deleted when the clock
// reaches deadline.
type lease struct {
	id       int64
	session  string // id as the Session of entries
	deadline time.Time
	expired  bool
	keys     map[boundKey]struct{}
}

type boundKey struct {
	cl  *cluster
	key string
}

// fault is the injected state of one member name.
type fault struct {
	partitioned bool
	delay       time.Duration
}

// NewServer returns an empty DCS.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{
		clock:           cfg.Clock,
		log:             cfg.Logger,
		partitionBlocks: cfg.PartitionBlocks,
		kick:            make(chan struct{}, 1),
		clusters:        make(map[string]*cluster),
		leases:          make(map[int64]*lease),
		faults:          make(map[string]*fault),
	}
}

// ClientConfig configures one Store of a Server.
type ClientConfig struct {
	// Scope is the cluster name (Patroni's scope).
	Scope string
	// Namespace is the first path element (default "service"); leading,
	// trailing and repeated slashes are ignored as Patroni does
	// (spec/dcs-layout.md §1).
	Namespace string
	// Name is the member name; "" opens a store that acts for no member
	// (ctl), whose member and leader methods return dcs.ErrNoMember.
	Name string
	// TTL is the lease duration (default 30s, Patroni's ttl default).
	// Member and leader keys vanish TTL after the last lease refresh.
	TTL time.Duration
	// Logger receives this store's events at Debug level; nil means the
	// server's logger. The store adds "cluster" and "member" attributes.
	Logger *slog.Logger
}

// DefaultTTL is the lease duration of a client whose TTL is unset, the
// default ttl of Patroni.
const DefaultTTL = 30 * time.Second

// Client opens a Store of the cluster cfg.Scope acting as member cfg.Name.
// Several stores may use the same name (for example a restarted member);
// each has its own lease.
func (s *Server) Client(cfg ClientConfig) *Store {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	log := cfg.Logger
	if log == nil {
		log = s.log
	}
	prefix := clusterPrefix(cfg.Namespace, cfg.Scope)
	st := &Store{
		srv:     s,
		name:    cfg.Name,
		log:     log.With("cluster", cfg.Scope, "member", cfg.Name),
		changes: make(chan struct{}, 1),
		ttl:     cfg.TTL,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.clusters[prefix]
	if cl == nil {
		cl = &cluster{prefix: prefix, keys: make(map[string]*kv), watchers: make(map[*Store]struct{})}
		s.clusters[prefix] = cl
	}
	st.cl = cl
	cl.watchers[st] = struct{}{}
	return st
}

// clusterPrefix returns "/<namespace>/<scope>/" with slashes normalized.
func clusterPrefix(namespace, scope string) string {
	ns := strings.Trim(path.Clean("/"+namespace), "/")
	if ns == "" {
		ns = "service"
	}
	return "/" + ns + "/" + scope + "/"
}

// Partition cuts (on true) or restores (on false) the link between the DCS
// and every store whose member name is name, in all clusters. While cut,
// the store's calls fail with an error wrapping dcs.ErrUnavailable (at
// once, or at their context's deadline when ServerConfig.PartitionBlocks),
// and its Changes channel receives nothing; it receives one wake-up when
// the link is restored. Other members see the partitioned member's lease
// expire as usual.
func (s *Server) Partition(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultLocked(name)
	if f.partitioned == on {
		return
	}
	f.partitioned = on
	s.log.Debug("memory: partition", "member", name, "on", on)
	if !on && !s.unavailable {
		s.wakeLocked(func(st *Store) bool { return st.name == name })
	}
	s.gcFaultLocked(name)
}

// SetDelay makes every call of the stores named name take d on the
// server's clock before it is applied (0 removes the delay). A call whose
// context ends first fails with an error wrapping dcs.ErrUnavailable and is
// not applied. With a fake clock, someone must step the clock for delayed
// calls to complete.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultLocked(name).delay = max(d, 0)
	s.gcFaultLocked(name)
}

// SetAvailable ends (true) or starts (false) an outage of the whole DCS:
// every call of every store fails as for a partition. Leases keep running
// on the clock during an outage (keys of leases that were not refreshed in
// time are gone when it ends, as after a long etcd quorum loss), and stores
// are woken when it ends.
func (s *Server) SetAvailable(available bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unavailable == !available {
		return
	}
	s.unavailable = !available
	s.log.Debug("memory: availability", "available", available)
	if available {
		s.wakeLocked(func(*Store) bool { return true })
	}
}

func (s *Server) faultLocked(name string) *fault {
	f := s.faults[name]
	if f == nil {
		f = &fault{}
		s.faults[name] = f
	}
	return f
}

func (s *Server) gcFaultLocked(name string) {
	if f := s.faults[name]; f != nil && !f.partitioned && f.delay == 0 {
		delete(s.faults, name)
	}
}

// cutLocked reports whether calls of st fail now.
func (s *Server) cutLocked(st *Store) bool {
	if s.unavailable {
		return true
	}
	f := s.faults[st.name]
	return f != nil && f.partitioned
}

func (s *Server) delayLocked(st *Store) time.Duration {
	if f := s.faults[st.name]; f != nil {
		return f.delay
	}
	return 0
}

// wakeLocked sends a wake-up to every reachable store that match selects.
func (s *Server) wakeLocked(match func(*Store) bool) {
	for _, cl := range s.clusters {
		for st := range cl.watchers {
			if match(st) && !s.cutLocked(st) {
				st.notify()
			}
		}
	}
}

// notifyLocked wakes the reachable watchers of cl after a change of a key
// the HA loop reacts to.
func (s *Server) notifyLocked(cl *cluster) {
	for st := range cl.watchers {
		if !s.cutLocked(st) {
			st.notify()
		}
	}
}

// watched reports whether a change of key must wake the watchers
// (dcs.Store.Changes).
func watched(key string) bool {
	switch key {
	case dcs.KeyLeader, dcs.KeyFailover, dcs.KeyConfig, dcs.KeySync, dcs.KeyInitialize:
		return true
	}
	return false
}

// putLocked stores value under key of cl, bound to l (nil: unbound), and
// returns the new version. The caller must not modify value afterwards.
func (s *Server) putLocked(cl *cluster, key string, value []byte, l *lease) dcs.Version {
	s.rev++
	v := dcs.Version(strconv.FormatInt(s.rev, 10))
	old := cl.keys[key]
	if old != nil && old.lease != nil && old.lease != l {
		delete(old.lease.keys, boundKey{cl, key})
	}
	if l != nil {
		l.keys[boundKey{cl, key}] = struct{}{}
	}
	cl.keys[key] = &kv{value: value, version: v, lease: l}
	cl.changes++
	if watched(key) && (old == nil || string(old.value) != string(value)) {
		s.notifyLocked(cl)
	}
	return v
}

// deleteLocked removes key from cl, if present.
func (s *Server) deleteLocked(cl *cluster, key string) {
	old := cl.keys[key]
	if old == nil {
		return
	}
	if old.lease != nil {
		delete(old.lease.keys, boundKey{cl, key})
	}
	delete(cl.keys, key)
	s.rev++
	cl.changes++
	if watched(key) {
		s.notifyLocked(cl)
	}
}

// grantLocked creates a lease expiring ttl from now.
func (s *Server) grantLocked(ttl time.Duration) *lease {
	s.lastLease++
	l := &lease{
		id:       s.lastLease,
		session:  strconv.FormatInt(s.lastLease, 16),
		deadline: s.clock.Now().Add(ttl),
		keys:     make(map[boundKey]struct{}),
	}
	s.leases[l.id] = l
	s.scheduleLocked(l.deadline)
	return l
}

// scheduleLocked records that some lease expires at deadline.
func (s *Server) scheduleLocked(deadline time.Time) {
	if s.nextExpiry.IsZero() || deadline.Before(s.nextExpiry) {
		s.nextExpiry = deadline
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// expireLocked expires every lease whose deadline is not after now,
// deleting its keys. It is cheap when nothing is due.
func (s *Server) expireLocked(now time.Time) {
	if s.nextExpiry.IsZero() || now.Before(s.nextExpiry) {
		return
	}
	var next time.Time
	for id, l := range s.leases {
		if now.Before(l.deadline) {
			if next.IsZero() || l.deadline.Before(next) {
				next = l.deadline
			}
			continue
		}
		delete(s.leases, id)
		l.expired = true
		for bk := range l.keys {
			s.log.Debug("memory: lease expired, deleting key", "lease", l.session, "key", bk.cl.prefix+bk.key)
			if kv := bk.cl.keys[bk.key]; kv != nil && kv.lease == l {
				kv.lease = nil // keep deleteLocked from touching l.keys while we range over it
				s.deleteLocked(bk.cl, bk.key)
			}
		}
		l.keys = nil
	}
	s.nextExpiry = next
}

// ExpireLeases expires every lease whose deadline the clock has reached,
// deleting its keys and waking the stores of the clusters whose leader key
// went away. Every call of a Store does this first, so it is only needed to
// get Changes notifications without other calls, for example in a
// simulation right after stepping the clock. Run calls it at each deadline.
func (s *Server) ExpireLeases() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.clock.Now())
}

// Run expires leases at their deadlines on the server's clock until ctx is
// done, so that Changes fires when a leader key expires even while no store
// calls the server. It returns nil when ctx is done. Run is optional: call
// it in a goroutine for daemons and tests that wait on Changes.
func (s *Server) Run(ctx context.Context) error {
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.armTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
			s.ExpireLeases()
		case <-s.kick:
		}
	}
}

// armTimer sets timer to fire at the next lease deadline, and expires
// leases that are already due. It retries when the clock moved by
// clockSlack or more while the timer was set, because a fake clock measures
// the timer from the moment of Reset: a step between reading the time and
// Reset would otherwise push the firing past the deadline.
func (s *Server) armTimer(timer clock.Timer) {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.expireLocked(now)
		next := s.nextExpiry
		s.mu.Unlock()
		wait := time.Hour // idle: no lease; a new lease kicks Run
		if !next.IsZero() {
			wait = max(next.Sub(now), 0)
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(wait)
		if s.clock.Since(now) < clockSlack {
			return
		}
	}
}

// clockSlack is how far the clock may move while Run sets its timer
// without Run setting it again. On the real clock this is far more than the
// few microseconds the call takes; on a fake clock a smaller step may delay
// the next expiry notification by at most this much fake time.
const clockSlack = time.Millisecond

// String describes the server for debugging: the number of clusters, keys
// and live leases.
func (s *Server) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := 0
	for _, cl := range s.clusters {
		keys += len(cl.keys)
	}
	return fmt.Sprintf("memory.Server{clusters: %d, keys: %d, leases: %d, revision: %d}", len(s.clusters), keys, len(s.leases), s.rev)
}
