package zookeeper

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/pgwarden/pgwarden/dcs"
)

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.RawWriter = (*Store)(nil)
)

// closeTimeout bounds ending a session when no caller context applies
// (liveness check, TTL change, Close). go-zookeeper waits at most about 3 s
// for its closeSession request.
const closeTimeout = 5 * time.Second

// Store is a dcs.Store on ZooKeeper. See the package documentation.
type Store struct {
	cfg    Config
	base   string // "/service/batman"
	acl    []zk.ACL
	tlsCfg *tls.Config
	log    *slog.Logger
	hosts  *hostList // shared by every session; Exhibitor replaces it

	changes chan struct{}
	kick    chan struct{} // a lease refresh happened (liveness check)
	rearm   chan struct{} // a watch fired: re-read and re-arm in the background
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	life    context.Context // canceled by Close; bounds background reads
	endLife context.CancelFunc

	refreshMu sync.Mutex // serializes cache refreshes

	mu         sync.Mutex
	closed     bool
	sess       *session      // nil: none open (a call opens one)
	stateCh    chan struct{} // closed and replaced on every session state change
	hasSession bool
	ttl        time.Duration
	cache      cache

	stats struct{ reads, writes, syncs atomic.Int64 }
}

// Stats counts the requests a Store sent to ZooKeeper.
type Stats struct {
	// Reads are getData, exists and getChildren requests (with or without
	// a watch).
	Reads int64
	// Writes are create, setData, delete and multi requests.
	Writes int64
	// Syncs are sync requests (one per Cluster call).
	Syncs int64
}

// Stats returns the requests sent so far (heartbeats not included).
func (s *Store) Stats() Stats {
	return Stats{Reads: s.stats.reads.Load(), Writes: s.stats.writes.Load(), Syncs: s.stats.syncs.Load()}
}

// Open validates cfg and returns a Store. It does not wait for ZooKeeper:
// the first call connects. With Exhibitor it waits (until ctx is done) for
// the first ensemble list.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	acl, _ := acls(cfg.SetACLs)
	if acl == nil {
		acl = zk.WorldACL(zk.PermAll)
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		base:    Prefix(cfg.Namespace, cfg.Scope),
		acl:     acl,
		tlsCfg:  tlsCfg,
		log:     cfg.Logger.With("dcs", "zookeeper", "cluster", cfg.Scope),
		changes: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		rearm:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		stateCh: make(chan struct{}),
		ttl:     cfg.TTL,
		cache:   newCache(),
	}
	if cfg.Name != "" {
		s.log = s.log.With("member", cfg.Name)
	}
	hosts := make([]string, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		hp, _ := hostPort(h)
		hosts = append(hosts, hp)
	}
	if cfg.Exhibitor != nil {
		ex := newExhibitorPoller(cfg.Exhibitor, s.log)
		hosts, err = ex.poll(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: zookeeper: exhibitor: %w", dcs.ErrUnavailable, err)
		}
		s.hosts = newHostList(hosts)
		s.wg.Go(func() { s.pollExhibitor(ex) })
	} else {
		s.hosts = newHostList(hosts)
	}
	if cfg.Name != "" {
		s.wg.Go(s.livenessLoop)
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.wg.Go(s.rearmLoop)
	// Connect now, so that watches are armed (and Changes fires) before
	// the first call.
	s.mu.Lock()
	_, err = s.openLocked()
	s.mu.Unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// rearmLoop re-reads the znodes whose watch fired, which re-arms their
// watches: ZooKeeper watches are one-shot, and Changes must keep firing for
// a caller that does not read in between (a waiting HA loop).
func (s *Store) rearmLoop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.rearm:
		}
		s.mu.Lock()
		ss := s.sess
		s.mu.Unlock()
		if ss != nil && ss.conn.State() == zk.StateHasSession {
			s.warm(ss)
		}
	}
}

// warm loads the cache (arming every watch) when a session is established,
// so that Changes fires even for a caller that has not read yet.
func (s *Store) warm(ss *session) {
	ctx, cancel := context.WithTimeout(s.life, s.cfg.RetryTimeout)
	defer cancel()
	if err := s.refresh(ctx, ss.conn); err != nil {
		s.log.Debug("zookeeper: loading the cache failed; the next read retries", "err", err)
	}
}

// Changes implements dcs.Store.
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Close stops background work and the client without ending the session:
// the server expires it, with the leader and member znodes, after ttl (call
// ReleaseLeader first for a clean hand-over).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ss := s.sess
	s.sess = nil
	close(s.done)
	if s.endLife != nil {
		s.endLife()
	}
	s.mu.Unlock()
	if ss != nil {
		ss.abandon()
	}
	s.wg.Wait()
	return nil
}

// SetTTL implements dcs.Store. ZooKeeper fixes the timeout of a session
// when it is created, so the new ttl applies to the next session. Patroni
// restarts the session at once, which drops the leader znode; we do that
// only while this member does not hold the leader key (at its next
// TouchMember), and otherwise when the session ends anyway (ReleaseLeader).
func (s *Store) SetTTL(ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	s.mu.Lock()
	s.ttl = ttl
	s.mu.Unlock()
}

// ---- sessions ------------------------------------------------------------

// session returns the open session, opening one if needed, once it is
// connected to a server; it waits at most until ctx is done.
func (s *Store) session(ctx context.Context) (*session, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, dcs.ErrClosed
		}
		ss := s.sess
		if ss == nil {
			var err error
			if ss, err = s.openLocked(); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		}
		wait := s.stateCh
		ready := ss.conn.State() == zk.StateHasSession
		s.mu.Unlock()
		if ready {
			return ss, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: zookeeper: no session with %s: %w", dcs.ErrUnavailable,
				strings.Join(s.hosts.list(), ","), context.Cause(ctx))
		}
	}
}

// openLocked starts a new client; s.mu is held.
func (s *Store) openLocked() (*session, error) {
	// Each client gets its own cursor over the hosts: a shared one would
	// make a new client start with go-zookeeper's one-second retry pause.
	ss := &session{hosts: newHostList(s.hosts.list()), ttl: s.ttl}
	conn, _, err := zk.Connect(s.hosts.list(), ss.ttl,
		zk.WithHostProvider(ss.hosts),
		zk.WithDialer(ss.dialer(&s.cfg, s.tlsCfg)),
		zk.WithLogger(zkLogger{s.log}),
		zk.WithLogInfo(false),
		zk.WithEventCallback(func(ev zk.Event) { s.onEvent(ss, ev) }))
	if err != nil {
		return nil, fmt.Errorf("zookeeper: connect: %w", err)
	}
	ss.conn = conn
	for scheme, cred := range s.cfg.AuthData {
		// Queued before the session exists; go-zookeeper sends it first
		// and again after every reconnect.
		go func() {
			if err := conn.AddAuth(scheme, []byte(cred)); err != nil && !isConnErr(err) {
				s.log.Error("zookeeper addauth failed", "scheme", scheme, "err", err)
			}
		}()
	}
	s.sess = ss
	s.hasSession = false
	s.cache.invalidate()
	return ss, nil
}

// onEvent is go-zookeeper's event callback: it runs on the client's
// goroutines and must not block.
func (s *Store) onEvent(ss *session, ev zk.Event) {
	wake := false
	s.mu.Lock()
	if s.sess != ss {
		s.mu.Unlock()
		return
	}
	switch ev.Type {
	case zk.EventSession:
		has := ev.State == zk.StateHasSession
		if ev.State == zk.StateExpired {
			s.log.Warn("zookeeper session expired; ephemeral znodes are gone")
			s.cache.invalidate()
		}
		if has != s.hasSession {
			s.hasSession = has
			s.cache.invalidate() // events may have been missed meanwhile
			wake = true
			if has {
				go s.warm(ss)
				s.log.Info("zookeeper session established", "session", sessionName(ss.conn.SessionID()),
					"server", ev.Server)
			} else {
				s.log.Warn("zookeeper connection lost", "server", ev.Server)
			}
		}
		close(s.stateCh)
		s.stateCh = make(chan struct{})
	case zk.EventNotWatching:
		s.cache.invalidate()
		wake = true
	default:
		if key, ok := s.relKey(ev.Path); ok {
			s.cache.dirty[key] = true
			wake = wakeKeys[key]
			select {
			case s.rearm <- struct{}{}:
			default:
			}
		}
	}
	s.mu.Unlock()
	if wake {
		s.log.Debug("zookeeper event wakes the loop", "type", ev.Type.String(), "state", ev.State.String(), "path", ev.Path)
		s.notify()
	}
}

// endSession closes ss (if still current) so that the server deletes its
// ephemeral znodes now; the next call opens a new session.
func (s *Store) endSession(ctx context.Context, ss *session, why string) {
	s.mu.Lock()
	if s.sess != ss {
		s.mu.Unlock()
		return
	}
	s.sess = nil
	s.hasSession = false
	s.cache.invalidate()
	close(s.stateCh) // waiters open the next session
	s.stateCh = make(chan struct{})
	s.mu.Unlock()
	s.log.Info("ending zookeeper session", "session", sessionName(ss.conn.SessionID()), "reason", why)
	ss.close(ctx)
	s.notify()
}

// refreshed records a lease refresh by the HA loop for the liveness check.
func (s *Store) refreshed(ss *session) {
	ss.mu.Lock()
	ss.ephemeralsOf = ss.conn.SessionID()
	ss.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// livenessLoop honours dcs.Store's liveness rule. The ZooKeeper client
// heartbeats in the background, so a hung HA loop would keep its ephemeral
// znodes forever; when neither TouchMember nor a leader call refreshed the
// lease for ttl, this ends the session, so the leader and member znodes
// vanish ttl after the last refresh, as a lease would expire.
func (s *Store) livenessLoop() {
	clk := s.cfg.Clock
	timer := clk.NewTimer(time.Hour)
	timer.Stop()
	var deadline time.Time
	for {
		select {
		case <-s.done:
			timer.Stop()
			return
		case <-s.kick:
			s.mu.Lock()
			ttl := s.ttl
			s.mu.Unlock()
			deadline = clk.Now().Add(ttl)
			timer.Stop()
			timer.Reset(ttl)
		case <-timer.C():
			if deadline.IsZero() {
				continue
			}
			if left := deadline.Sub(clk.Now()); left > 0 {
				timer.Reset(left)
				continue
			}
			deadline = time.Time{}
			s.expireIdle()
		}
	}
}

func (s *Store) expireIdle() {
	s.mu.Lock()
	ss := s.sess
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ss.mu.Lock()
	owns := ss.ephemeralsOf != 0 && ss.ephemeralsOf == ss.conn.SessionID()
	ss.mu.Unlock()
	if !owns {
		return
	}
	s.log.Warn("no lease refresh by the HA loop for ttl; ending the zookeeper session so that the leader and member keys expire")
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	s.endSession(ctx, ss, "liveness: no refresh for ttl")
}

// ---- paths and calls -------------------------------------------------------

func (s *Store) path(key string) string {
	if key == dirMembers {
		return s.base + "/members"
	}
	return s.base + "/" + key
}

// relKey maps a znode path to its cache key.
func (s *Store) relKey(p string) (string, bool) {
	rel, ok := strings.CutPrefix(p, s.base+"/")
	if !ok || rel == "" {
		return "", false
	}
	if rel == dirMembers || slices.Contains(dataKeys, rel) {
		return rel, true
	}
	if name, ok := strings.CutPrefix(rel, dcs.KeyMembers); ok && name != "" && !strings.Contains(name, "/") {
		return rel, true
	}
	return "", false
}

// retryPause spaces retries after a lost connection (the session wait
// that follows usually returns at once once the client reconnected).
const retryPause = 50 * time.Millisecond

// retryable reports whether err is a lost connection that the same call may
// retry on a new connection: the call is idempotent or re-reads first.
func retryable(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrSessionExpired)
}

// retry runs f with a connected session, again after a lost connection,
// until ctx is done ("backends retry transient errors inside that
// deadline", dcs.Store).
func (s *Store) retry(ctx context.Context, op string, f func(ss *session) error) error {
	for {
		ss, err := s.session(ctx)
		if err != nil {
			return err
		}
		err = f(ss)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		s.log.Debug("zookeeper: retrying after a lost connection", "op", op, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryPause):
		}
	}
}

// bounded gives ctx the retry timeout as deadline when it has none.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RetryTimeout)
}

// call runs one client request, bounded by ctx: go-zookeeper requests can
// wait for a reconnect longer than the caller may.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, context.Cause(ctx)
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}

// wrap maps a client error at the backend edge, keeping the cause.
func wrap(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dcs.ErrConflict), errors.Is(err, dcs.ErrLeaderLost),
		errors.Is(err, dcs.ErrUnavailable), errors.Is(err, dcs.ErrClosed), errors.Is(err, dcs.ErrNoMember):
		return err
	case isConnErr(err):
		return fmt.Errorf("%w: zookeeper %s %s: %w", dcs.ErrUnavailable, op, key, err)
	default:
		return fmt.Errorf("zookeeper %s %s: %w", op, key, err)
	}
}

// read reads one cache key and re-arms its watch.
func (s *Store) read(ctx context.Context, conn *zk.Conn, key string) (readResult, error) {
	p := s.path(key)
	if key == dirMembers {
		for range 3 {
			names, err := call(ctx, func() ([]string, error) {
				s.stats.reads.Add(1)
				names, _, _, err := conn.ChildrenW(p)
				return names, err
			})
			if !errors.Is(err, zk.ErrNoNode) {
				return readResult{names: names}, err
			}
			ok, err := call(ctx, func() (bool, error) {
				s.stats.reads.Add(1)
				ok, _, _, err := conn.ExistsW(p)
				return ok, err
			})
			if err != nil || !ok {
				return readResult{}, err
			}
		}
		return readResult{}, fmt.Errorf("zookeeper: %s keeps changing", p)
	}
	for range 3 {
		r, err := call(ctx, func() (readResult, error) {
			s.stats.reads.Add(1)
			data, st, _, err := conn.GetW(p)
			if err != nil {
				return readResult{}, err
			}
			return readResult{present: true, node: znode{data: data, stat: *st}}, nil
		})
		if !errors.Is(err, zk.ErrNoNode) {
			return r, err
		}
		if isMemberKey(key) {
			// The members directory's child watch covers its re-creation.
			return readResult{}, nil
		}
		ok, err := call(ctx, func() (bool, error) {
			s.stats.reads.Add(1)
			ok, _, _, err := conn.ExistsW(p)
			return ok, err
		})
		if err != nil || !ok {
			return readResult{}, err
		}
	}
	return readResult{}, fmt.Errorf("zookeeper: %s keeps changing", p)
}

// refresh brings the cache up to date: it re-reads dirty keys (everything
// after a reconnect), in parallel, until none is left.
func (s *Store) refresh(ctx context.Context, conn *zk.Conn) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	for range 5 {
		s.mu.Lock()
		keys, seqs, full := s.cache.take()
		s.mu.Unlock()
		if len(keys) == 0 {
			return nil
		}
		res := make([]readResult, len(keys))
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i, k := range keys {
			wg.Go(func() { res[i], errs[i] = s.read(ctx, conn, k) })
		}
		wg.Wait()
		s.mu.Lock()
		if err := errors.Join(errs...); err != nil {
			s.cache.failed(keys, full)
			s.mu.Unlock()
			return wrap("read", s.base, err)
		}
		s.cache.apply(keys, seqs, res)
		s.mu.Unlock()
	}
	return nil
}

// How current reads a key.
type readMode int

const (
	// fromCache uses the cache when it is current for the key.
	fromCache readMode = iota
	// fromCacheLoose uses the cache whenever it is loaded, even when a
	// watch reported a change not read yet (most often our own last
	// write); for decisions a failed conditional write corrects.
	fromCacheLoose
	// fromServer always reads.
	fromServer
)

// current returns key's znode (nil when absent), from the cache or the
// server as mode says. It reads without a watch (only refresh arms them),
// so the cache's dirty marks stay as they are.
func (s *Store) current(ctx context.Context, conn *zk.Conn, key string, mode readMode) (*znode, error) {
	s.mu.Lock()
	seq := s.cache.seq[key]
	switch mode {
	case fromCache:
		if n, ok := s.cache.fresh(key); ok {
			s.mu.Unlock()
			return n, nil
		}
	case fromCacheLoose:
		if s.cache.loaded {
			n := s.cache.nodes[key]
			s.mu.Unlock()
			return n, nil
		}
	}
	s.mu.Unlock()
	p := s.path(key)
	r, err := call(ctx, func() (readResult, error) {
		s.stats.reads.Add(1)
		data, st, err := conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return readResult{}, nil
		}
		if err != nil {
			return readResult{}, err
		}
		return readResult{present: true, node: znode{data: data, stat: *st}}, nil
	})
	if err != nil {
		return nil, wrap("read", key, err)
	}
	s.mu.Lock()
	if s.cache.seq[key] == seq {
		if r.present {
			n := r.node
			s.cache.nodes[key] = &n
		} else {
			delete(s.cache.nodes, key)
		}
	}
	s.mu.Unlock()
	if !r.present {
		return nil, nil
	}
	return &r.node, nil
}

// ensureParents creates the persistent parents of p (makepath).
func (s *Store) ensureParents(ctx context.Context, conn *zk.Conn, p string) error {
	var parents []string
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		parents = append(parents, d)
	}
	slices.Reverse(parents)
	for _, d := range parents {
		s.stats.writes.Add(1)
		_, err := call(ctx, func() (string, error) { return conn.Create(d, nil, 0, s.acl) })
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return wrap("create", d, err)
		}
	}
	return nil
}

// multi runs a transaction. It returns the responses, and for a failed
// transaction the error of the operation that failed and its index.
func (s *Store) multi(ctx context.Context, conn *zk.Conn, ops ...any) ([]zk.MultiResponse, int, error) {
	s.stats.writes.Add(1)
	res, err := call(ctx, func() ([]zk.MultiResponse, error) { return conn.Multi(ops...) })
	if err == nil {
		return res, -1, nil
	}
	for i, r := range res {
		for _, known := range []error{zk.ErrNoNode, zk.ErrBadVersion, zk.ErrNodeExists, zk.ErrNotEmpty,
			zk.ErrNoAuth, zk.ErrInvalidACL} {
			if errors.Is(r.Error, known) {
				return res, i, r.Error
			}
		}
	}
	return res, -1, err
}

// opPath returns the path an operation of a transaction writes.
func opPath(op any) string {
	switch o := op.(type) {
	case *zk.CreateRequest:
		return o.Path
	case *zk.SetDataRequest:
		return o.Path
	case *zk.DeleteRequest:
		return o.Path
	case *zk.CheckVersionRequest:
		return o.Path
	}
	return ""
}

// ---- dcs.Store -------------------------------------------------------------

// Cluster implements dcs.Store: it re-reads only the znodes whose watch
// fired since the last call (everything after a reconnect) and serves the
// rest from the cache.
func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var entries []dcs.Entry
	err := s.retry(ctx, "Cluster", func(ss *session) error {
		// One round trip that makes the server catch up with the ensemble
		// leader: every watch event of a change committed before it is
		// delivered before its answer, so the cache then reflects at least
		// what any client wrote before this call.
		p := s.base
		s.stats.syncs.Add(1)
		if _, err := call(ctx, func() (string, error) { return ss.conn.Sync(p) }); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return wrap("sync", p, err)
		}
		if err := s.refresh(ctx, ss.conn); err != nil {
			return err
		}
		s.mu.Lock()
		entries = s.cache.entries()
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dcs.BuildCluster(entries), nil
}

// Initialize implements dcs.Store.
func (s *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	ss, err := s.session(ctx)
	if err != nil {
		return err
	}
	conn, p, data := ss.conn, s.path(dcs.KeyInitialize), []byte(sysid)
	for range 3 {
		var err error
		if create {
			s.stats.writes.Add(1)
			_, err = call(ctx, func() (string, error) { return conn.Create(p, data, 0, s.acl) })
			if errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("%w: zookeeper: %s exists", dcs.ErrConflict, p)
			}
			if err == nil {
				s.wrote(dcs.KeyInitialize, nil, nil, false)
				return nil
			}
		} else {
			var st *zk.Stat
			s.stats.writes.Add(1)
			st, err = call(ctx, func() (*zk.Stat, error) { return conn.Set(p, data, -1) })
			if err == nil {
				s.wrote(dcs.KeyInitialize, data, st, false)
				return nil
			}
			if errors.Is(err, zk.ErrNoNode) {
				create = true
				s.stats.writes.Add(1)
				_, err = call(ctx, func() (string, error) { return conn.Create(p, data, 0, s.acl) })
				if err == nil {
					s.wrote(dcs.KeyInitialize, nil, nil, false)
					return nil
				}
				create = false
			}
		}
		if !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrNodeExists) {
			return wrap("write", dcs.KeyInitialize, err)
		}
		if err := s.ensureParents(ctx, conn, p); err != nil {
			return err
		}
	}
	return wrap("write", dcs.KeyInitialize, errors.New("gave up after concurrent changes"))
}

// CancelInitialize implements dcs.Store.
func (s *Store) CancelInitialize(ctx context.Context) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "CancelInitialize", func(ss *session) error {
		p := s.path(dcs.KeyInitialize)
		s.stats.writes.Add(1)
		_, err := call(ctx, func() (struct{}, error) { return struct{}{}, ss.conn.Delete(p, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return wrap("delete", dcs.KeyInitialize, err)
		}
		s.wrote(dcs.KeyInitialize, nil, nil, true)
		return nil
	})
}

func (s *Store) isDirty(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.cache.loaded || s.cache.dirty[key]
}

func (s *Store) wrote(key string, data []byte, st *zk.Stat, deleted bool) {
	s.mu.Lock()
	s.cache.wrote(key, data, st, deleted)
	s.mu.Unlock()
	if wakeKeys[key] {
		s.notify()
	}
}

func (s *Store) checkMember() error {
	if s.cfg.Name == "" {
		return dcs.ErrNoMember
	}
	return nil
}

// TouchMember implements dcs.Store. The member znode is ephemeral: it is
// created in the current session, re-created when it belongs to another
// session, and rewritten only when its data changed (spec/dcs-layout.md §7).
func (s *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	if m == nil || m.Name != s.cfg.Name {
		return fmt.Errorf("zookeeper: touch member: name %q is not this store's member %q", nameOf(m), s.cfg.Name)
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "TouchMember", func(ss *session) error {
		ss, err := s.applyTTL(ctx, ss)
		if err != nil {
			return err
		}
		return s.putEphemeral(ctx, ss, dcs.KeyMembers+m.Name, dcs.EncodeMember(m), true)
	})
}

func nameOf(m *dcs.Member) string {
	if m == nil {
		return ""
	}
	return m.Name
}

// applyTTL restarts the session when SetTTL changed the ttl and this member
// does not hold the leader key in it.
func (s *Store) applyTTL(ctx context.Context, ss *session) (*session, error) {
	s.mu.Lock()
	ttl := s.ttl
	leader := s.cache.nodes[dcs.KeyLeader]
	s.mu.Unlock()
	if ttl == ss.ttl || (leader != nil && leader.stat.EphemeralOwner == ss.conn.SessionID()) {
		return ss, nil
	}
	s.endSession(ctx, ss, fmt.Sprintf("ttl changed from %s to %s", ss.ttl, ttl))
	return s.session(ctx)
}

// putEphemeral writes key as an ephemeral znode of the current session
// holding data. skipSame skips the write when the stored znode already
// holds data and belongs to the session.
func (s *Store) putEphemeral(ctx context.Context, ss *session, key string, data []byte, skipSame bool) error {
	conn, p := ss.conn, s.path(key)
	for attempt := range 4 {
		sid := conn.SessionID()
		mode := fromCacheLoose
		if attempt > 0 {
			mode = fromServer
		}
		cur, err := s.current(ctx, conn, key, mode)
		if err != nil {
			return err
		}
		var ops []any
		switch {
		case cur == nil:
			ops = []any{&zk.CreateRequest{Path: p, Data: data, Acl: s.acl, Flags: zk.FlagEphemeral}}
		case cur.stat.EphemeralOwner != sid:
			ops = []any{&zk.DeleteRequest{Path: p, Version: cur.stat.Version},
				&zk.CreateRequest{Path: p, Data: data, Acl: s.acl, Flags: zk.FlagEphemeral}}
		case skipSame && bytes.Equal(cur.data, data):
			if attempt == 0 && s.isDirty(key) {
				continue // make sure the znode is still there before skipping
			}
			s.refreshed(ss)
			return nil
		default:
			// Our own ephemeral znode: nobody else writes it.
			ops = []any{&zk.SetDataRequest{Path: p, Data: data, Version: -1}}
		}
		res, i, err := s.multi(ctx, conn, ops...)
		if err == nil {
			var st *zk.Stat
			if last := res[len(res)-1]; last.Stat != nil {
				st = last.Stat
			}
			s.wrote(key, data, st, false)
			s.refreshed(ss)
			return nil
		}
		if i < 0 {
			return wrap("write", key, err)
		}
		if errors.Is(err, zk.ErrNoNode) && cur == nil {
			if err := s.ensureParents(ctx, conn, p); err != nil {
				return err
			}
		}
		// Someone changed the znode meanwhile: read it again and retry.
	}
	return wrap("write", key, errors.New("gave up after concurrent changes"))
}

// leaderState reads the leader znode from the server and reports whether
// this member holds it in the current session.
func (s *Store) leaderState(ctx context.Context, conn *zk.Conn) (n *znode, ours bool, err error) {
	n, err = s.current(ctx, conn, dcs.KeyLeader, fromServer)
	if err != nil || n == nil {
		return n, false, err
	}
	return n, string(n.data) == s.cfg.Name && n.stat.EphemeralOwner == conn.SessionID(), nil
}

// AcquireLeader implements dcs.Store: create the ephemeral leader znode;
// if it exists, the race is lost (spec/dcs-layout.md §7).
func (s *Store) AcquireLeader(ctx context.Context) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "AcquireLeader", func(ss *session) error {
		conn, p := ss.conn, s.path(dcs.KeyLeader)
		for range 3 {
			_, err := call(ctx, func() (string, error) {
				s.stats.writes.Add(1)
				return conn.Create(p, []byte(s.cfg.Name), zk.FlagEphemeral, s.acl)
			})
			switch {
			case err == nil:
				s.wrote(dcs.KeyLeader, nil, nil, false)
				s.refreshed(ss)
				return nil
			case errors.Is(err, zk.ErrNodeExists):
				// A retried create of ours may have won already.
				_, ours, rerr := s.leaderState(ctx, conn)
				if rerr != nil {
					return rerr
				}
				if ours {
					s.refreshed(ss)
					return nil
				}
				return fmt.Errorf("%w: zookeeper: %s is held by another session", dcs.ErrConflict, p)
			case errors.Is(err, zk.ErrNoNode):
				if err := s.ensureParents(ctx, conn, p); err != nil {
					return err
				}
			default:
				return wrap("create", dcs.KeyLeader, err)
			}
		}
		return wrap("create", dcs.KeyLeader, errors.New("gave up after concurrent changes"))
	})
}

// TakeLeader implements dcs.Store: an unconditional write of the leader
// znode, bound to this session.
func (s *Store) TakeLeader(ctx context.Context) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "TakeLeader", func(ss *session) error {
		return s.putEphemeral(ctx, ss, dcs.KeyLeader, []byte(s.cfg.Name), false)
	})
}

// leaderFence returns the transaction operations that make a write
// conditional on this member holding the leader key in this session, or
// ErrLeaderLost. With takeOver, a leader znode holding our name in another
// session (ours before a restart) is deleted and re-created in this one,
// as Patroni's update_leader does.
func (s *Store) leaderFence(ctx context.Context, conn *zk.Conn, takeOver bool) ([]any, error) {
	n, ours, err := s.leaderState(ctx, conn)
	if err != nil {
		return nil, err
	}
	p := s.path(dcs.KeyLeader)
	switch {
	case ours:
		return []any{&zk.CheckVersionRequest{Path: p, Version: n.stat.Version}}, nil
	case n != nil && takeOver && string(n.data) == s.cfg.Name:
		return []any{&zk.DeleteRequest{Path: p, Version: n.stat.Version},
			&zk.CreateRequest{Path: p, Data: []byte(s.cfg.Name), Acl: s.acl, Flags: zk.FlagEphemeral}}, nil
	case n == nil:
		return nil, fmt.Errorf("%w: zookeeper: %s is gone", dcs.ErrLeaderLost, p)
	default:
		return nil, fmt.Errorf("%w: zookeeper: %s is held by %q (session %s)", dcs.ErrLeaderLost, p,
			n.data, owner(&n.stat))
	}
}

// putOps returns the operations writing data at key: a set (conditional on
// version when ver >= 0) when the znode exists, else a create followed by a
// set in the same transaction, whose result carries the new znode's stat.
func (s *Store) putOps(key string, cur *znode, data []byte, ver int32) []any {
	p := s.path(key)
	if cur != nil {
		return []any{&zk.SetDataRequest{Path: p, Data: data, Version: ver}}
	}
	return []any{&zk.CreateRequest{Path: p, Data: data, Acl: s.acl},
		&zk.SetDataRequest{Path: p, Data: data, Version: 0}}
}

// write is a leader-fenced and/or version-checked write of one key.
// prev non-empty: CAS on that Version (ErrConflict when it does not match
// or the key is gone). fenced: only while this member holds the leader key
// (ErrLeaderLost otherwise). skipSame skips a write of identical data.
func (s *Store) write(ctx context.Context, key string, data []byte, prev dcs.Version, fenced, skipSame bool) (dcs.Version, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var v dcs.Version
	retried := false
	err := s.retry(ctx, "write "+key, func(ss *session) error {
		var err error
		v, err = s.writeOnce(ctx, ss.conn, key, data, prev, fenced, skipSame, retried)
		retried = true
		return err
	})
	return v, err
}

// writeOnce is one try of write. After a lost connection (retried), a
// conditional write whose data is found in place is taken as having landed.
func (s *Store) writeOnce(ctx context.Context, conn *zk.Conn, key string, data []byte, prev dcs.Version,
	fenced, skipSame, retried bool) (dcs.Version, error) {
	var err error
	for attempt := range 4 {
		var ops []any
		if fenced {
			if ops, err = s.leaderFence(ctx, conn, false); err != nil {
				return "", err
			}
		}
		mode := fromCacheLoose
		switch {
		case attempt > 0:
			mode = fromServer
		case prev != "":
			mode = fromCache
		}
		cur, err := s.current(ctx, conn, key, mode)
		if err != nil {
			return "", err
		}
		ver := int32(-1)
		if prev != "" {
			if retried && attempt > 0 && cur != nil && bytes.Equal(cur.data, data) {
				return version(&cur.stat), nil // our write before the connection dropped
			}
			if cur == nil || version(&cur.stat) != prev {
				if attempt == 0 {
					continue // the cache may lag (or our write landed): read again
				}
				return "", fmt.Errorf("%w: zookeeper: %s is at version %s, not %s", dcs.ErrConflict, key,
					versionOf(cur), prev)
			}
			ver = cur.stat.Version
		}
		if skipSame && cur != nil && bytes.Equal(cur.data, data) && !fenced {
			return version(&cur.stat), nil
		}
		ops = append(ops, s.putOps(key, cur, data, ver)...)
		res, i, err := s.multi(ctx, conn, ops...)
		if err == nil {
			st := res[len(res)-1].Stat
			s.wrote(key, data, st, false)
			return version(st), nil
		}
		if i < 0 {
			return "", wrap("write", key, err)
		}
		if opPath(ops[i]) == s.path(dcs.KeyLeader) {
			continue // the fence failed: re-read the leader (ErrLeaderLost next round)
		}
		if prev != "" && (errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode)) && cur != nil {
			return "", fmt.Errorf("%w: zookeeper: %s changed since version %s", dcs.ErrConflict, key, prev)
		}
		if errors.Is(err, zk.ErrNoNode) && cur == nil {
			if err := s.ensureParents(ctx, conn, s.path(key)); err != nil {
				return "", err
			}
		}
	}
	if prev != "" {
		return "", fmt.Errorf("%w: zookeeper: %s changed since version %s", dcs.ErrConflict, key, prev)
	}
	return "", wrap("write", key, errors.New("gave up after concurrent changes"))
}

func versionOf(n *znode) dcs.Version {
	if n == nil {
		return "(absent)"
	}
	return version(&n.stat)
}

// UpdateLeader implements dcs.Store. The session heartbeat keeps the
// leader znode alive; the renewal is a transaction that checks the leader
// znode's version (so it fails if the znode was deleted or re-created) and
// writes status and failsafe when they changed. A leader znode with our
// name in another session (ours before a restart) is re-created in this
// one, as Patroni does.
func (s *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "UpdateLeader", func(ss *session) error {
		conn := ss.conn
		type put struct {
			key  string
			data []byte
		}
		var puts []put
		if u.Status != nil {
			puts = append(puts, put{dcs.KeyStatus, dcs.EncodeStatus(u.Status)})
		}
		if u.Failsafe != nil {
			puts = append(puts, put{dcs.KeyFailsafe, dcs.EncodeFailsafe(u.Failsafe)})
		}
		for attempt := range 3 {
			ops, err := s.leaderFence(ctx, conn, true)
			if err != nil {
				return err
			}
			nfence := len(ops)
			var written []put
			for _, pt := range puts {
				mode := fromCacheLoose
				if attempt > 0 {
					mode = fromServer
				}
				cur, err := s.current(ctx, conn, pt.key, mode)
				if err != nil {
					return err
				}
				if cur != nil && bytes.Equal(cur.data, pt.data) {
					continue
				}
				ops = append(ops, s.putOps(pt.key, cur, pt.data, -1)...)
				written = append(written, pt)
			}
			res, i, err := s.multi(ctx, conn, ops...)
			if err == nil {
				if nfence == 2 {
					s.wrote(dcs.KeyLeader, nil, nil, false)
				}
				for _, pt := range written {
					for j := len(res) - 1; j >= nfence; j-- {
						if r := res[j]; r.Stat != nil && opPath(ops[j]) == s.path(pt.key) {
							s.wrote(pt.key, pt.data, r.Stat, false)
							break
						}
					}
				}
				s.refreshed(ss)
				return nil
			}
			if i < 0 {
				return wrap("update leader", dcs.KeyLeader, err)
			}
			// The fence or a status/failsafe write met a concurrent change:
			// read again; a lost leader key shows up as ErrLeaderLost.
		}
		return fmt.Errorf("%w: zookeeper: leader renewal kept conflicting", dcs.ErrLeaderLost)
	})
}

// ReleaseLeader implements dcs.Store. As Patroni does, giving up the lock
// ends the ZooKeeper session, which drops the leader and the member znode
// at once (the next TouchMember re-creates the member in a new session).
// Before that, last is written and the leader znode deleted in one
// transaction checked on the leader znode's version.
func (s *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "ReleaseLeader", func(ss *session) error {
		conn := ss.conn
		for attempt := range 3 {
			n, ours, err := s.leaderState(ctx, conn)
			if err != nil {
				return err
			}
			if !ours {
				return nil
			}
			var ops []any
			if last != nil {
				data := dcs.EncodeStatus(last)
				mode := fromCacheLoose
				if attempt > 0 {
					mode = fromServer
				}
				cur, err := s.current(ctx, conn, dcs.KeyStatus, mode)
				if err != nil {
					return err
				}
				if cur == nil || !bytes.Equal(cur.data, data) {
					ops = append(ops, s.putOps(dcs.KeyStatus, cur, data, -1)...)
				}
			}
			ops = append(ops, &zk.DeleteRequest{Path: s.path(dcs.KeyLeader), Version: n.stat.Version})
			_, i, err := s.multi(ctx, conn, ops...)
			if err == nil {
				s.wrote(dcs.KeyLeader, nil, nil, true)
				s.mu.Lock()
				s.cache.invalidate()
				s.mu.Unlock()
				s.endSession(ctx, ss, "leader key released")
				return nil
			}
			if i < 0 {
				return wrap("release leader", dcs.KeyLeader, err)
			}
		}
		return wrap("release leader", dcs.KeyLeader, errors.New("gave up after concurrent changes"))
	})
}

// SetConfig implements dcs.Store.
func (s *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	return s.write(ctx, dcs.KeyConfig, config, prev, false, false)
}

// SetFailover implements dcs.Store; an empty request is written as "{}".
func (s *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	return s.write(ctx, dcs.KeyFailover, dcs.EncodeFailover(f), prev, false, false)
}

// SetSync implements dcs.Store.
func (s *Store) SetSync(ctx context.Context, st *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	if err := s.checkMember(); err != nil {
		return "", err
	}
	return s.write(ctx, dcs.KeySync, dcs.EncodeSync(st), prev, true, false)
}

// DeleteSync implements dcs.Store: on ZooKeeper the state is cleared by
// writing "{}" (spec/dcs-layout.md §2.8).
func (s *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	_, err := s.write(ctx, dcs.KeySync, []byte("{}"), prev, true, false)
	return err
}

// SetHistory implements dcs.Store.
func (s *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	_, err := s.write(ctx, dcs.KeyHistory, dcs.EncodeHistory(h), "", true, false)
	return err
}

// PutRaw implements dcs.RawWriter. Leader and member keys are written as
// ephemeral znodes of this Store's session.
func (s *Store) PutRaw(ctx context.Context, key string, value []byte) error {
	if _, ok := s.relKey(s.base + "/" + key); !ok || key == dirMembers {
		return fmt.Errorf("zookeeper: put raw: unknown key %q", key)
	}
	if key == dcs.KeyLeader || isMemberKey(key) {
		ctx, cancel := s.bounded(ctx)
		defer cancel()
		ss, err := s.session(ctx)
		if err != nil {
			return err
		}
		return s.putEphemeral(ctx, ss, key, value, false)
	}
	_, err := s.write(ctx, key, value, "", false, false)
	return err
}

// DeleteCluster implements dcs.Store: every znode under the cluster path
// is deleted, children first, in one transaction.
func (s *Store) DeleteCluster(ctx context.Context) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.retry(ctx, "DeleteCluster", func(ss *session) error {
		conn := ss.conn
		for range 5 {
			var paths []string
			var walk func(p string) error
			walk = func(p string) error {
				kids, err := call(ctx, func() ([]string, error) {
					s.stats.reads.Add(1)
					kids, _, err := conn.Children(p)
					return kids, err
				})
				if errors.Is(err, zk.ErrNoNode) {
					return nil
				}
				if err != nil {
					return err
				}
				for _, k := range kids {
					if err := walk(p + "/" + k); err != nil {
						return err
					}
				}
				paths = append(paths, p)
				return nil
			}
			if err := walk(s.base); err != nil {
				return wrap("delete cluster", s.base, err)
			}
			if len(paths) == 0 {
				break
			}
			ops := make([]any, len(paths))
			for i, p := range paths {
				ops[i] = &zk.DeleteRequest{Path: p, Version: -1}
			}
			_, i, err := s.multi(ctx, conn, ops...)
			if err == nil {
				break
			}
			if i < 0 {
				return wrap("delete cluster", s.base, err)
			}
			// A znode appeared or vanished meanwhile: walk again.
		}
		s.mu.Lock()
		for k := range s.cache.nodes {
			s.cache.seq[k]++
		}
		clear(s.cache.nodes)
		s.cache.invalidate()
		s.mu.Unlock()
		s.notify()
		return nil
	})
}

// Hosts returns the ZooKeeper servers the Store connects to (with
// Exhibitor, the last ensemble it read).
func (s *Store) Hosts() []string { return s.hosts.list() }

// SessionID returns the current ZooKeeper session id as zkCli prints it,
// or "" when no session is open.
func (s *Store) SessionID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil || s.sess.conn.SessionID() == 0 {
		return ""
	}
	return sessionName(s.sess.conn.SessionID())
}

// server returns the server the current session is connected to, or "".
func (s *Store) server() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return ""
	}
	return s.sess.conn.Server()
}
