package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/pgwarden/pgwarden/dcs"
)

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.RawWriter = (*Store)(nil)
	_ Registrar     = (*Store)(nil)
)

// Store is a dcs.Store on a Consul agent (spec/dcs-layout.md §6). See the
// package documentation for how it maps the contract onto Consul.
type Store struct {
	cfg       Config
	log       *slog.Logger
	client    *api.Client
	transport *http.Transport
	prefix    string // "service/<scope>/"
	changes   chan struct{}

	readMode ReadMode
	// readThroughs counts Cluster calls the cache could not answer;
	// probes counts ReadSynced index probes.
	readThroughs, probes atomic.Int64

	cancel context.CancelFunc // stops the watcher
	wg     sync.WaitGroup

	// mu guards the cache and the lifecycle flag.
	mu      sync.Mutex
	closed  bool
	snap    *snapshot     // last installed snapshot; nil before the first read
	updated chan struct{} // closed and replaced whenever snap changes
	// watchOK is true while the watcher's last blocking query succeeded;
	// watchUntil is when an answer to the outstanding one is overdue.
	watchOK    bool
	watchUntil time.Time
	// need is the lowest Consul index the cache must reach to reflect
	// every write this Store made whose index is known.
	need uint64
	// dirtySeq counts writes whose index is unknown (deletes); cleanSeq is
	// the dirtySeq value the latest read-through started at. The cache
	// reflects all our deletes when they are equal.
	dirtySeq, cleanSeq uint64

	// sessMu serializes the member's session and the writes bound to it.
	// The fields below are guarded by it.
	sessMu     sync.Mutex
	ttl        time.Duration // the cluster ttl; SetTTL changes it
	session    string        // current session ID, "" when none
	sessionTTL time.Duration // TTL the current session was created with
	lastRenew  time.Time     // last successful create or renew
	lastStatus []byte        // status value last written
	lastSafe   []byte        // failsafe value last written
	svc        serviceState  // catalog registration
}

// snapshot is one read of the cluster prefix.
type snapshot struct {
	index   uint64
	pairs   map[string]*api.KVPair // by key relative to the prefix
	cluster *dcs.Cluster
}

// New opens a Store and starts its watcher. It does not contact the agent:
// an unreachable agent shows up as dcs.ErrUnavailable from the first call.
func New(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	transport := cleanhttp.DefaultPooledTransport()
	if cfg.Scheme == "https" || cfg.TLS.CACert != "" || cfg.TLS.Cert != "" {
		tlsCfg, err := api.SetupTLSConfig(&api.TLSConfig{
			Address:            cfg.Address,
			CAFile:             cfg.TLS.CACert,
			CertFile:           cfg.TLS.Cert,
			KeyFile:            cfg.TLS.Key,
			InsecureSkipVerify: cfg.TLS.InsecureSkipVerify,
		})
		if err != nil {
			return nil, fmt.Errorf("consul: tls: %w", err)
		}
		transport.TLSClientConfig = tlsCfg
	}
	client, err := api.NewClient(&api.Config{
		Address:    cfg.Address,
		Scheme:     cfg.Scheme,
		Datacenter: cfg.Datacenter,
		Token:      cfg.Token,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, fmt.Errorf("consul: client: %w", err)
	}
	s := &Store{
		cfg:       cfg,
		log:       cfg.Logger.With("dcs", "consul", "cluster", cfg.Scope, "member", cfg.Name),
		client:    client,
		transport: transport,
		prefix:    cfg.prefix(),
		changes:   make(chan struct{}, 1),
		updated:   make(chan struct{}),
		ttl:       cfg.TTL,
		readMode:  cfg.ReadMode,
	}
	if cfg.Name == "" {
		// ctl-style tools read linearizably, as patronictl does
		// (spec/dcs-layout.md §3).
		s.readMode = ReadConsistent
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.watch(ctx) })
	return s, nil
}

// Changes implements dcs.Store.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Close implements dcs.Store. It stops the watcher, removes the catalog
// registration if any, and closes idle connections. It neither releases
// the leader key nor destroys the session: the keys expire after ttl.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()

	var err error
	s.sessMu.Lock()
	if s.svc.registered != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RetryTimeout)
		err = s.deregister(ctx)
		cancel()
	}
	s.sessMu.Unlock()
	s.transport.CloseIdleConnections()
	return err
}

// SetTTL implements dcs.Store. A Consul session's TTL cannot change, so the
// next refresh creates a new session and moves the member and leader keys
// to it; the old session then expires without holding anything.
func (s *Store) SetTTL(ttl time.Duration) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	s.ttl = ttl
}

// --- calls -------------------------------------------------------------

// call runs f with retries of transient failures until ctx (or, when ctx
// has no deadline, RetryTimeout) runs out. read marks f as safe to repeat
// after any transport error.
func (s *Store) call(ctx context.Context, op string, read bool, f func(ctx context.Context) error) error {
	if s.isClosed() {
		return fmt.Errorf("consul: %s: %w", op, dcs.ErrClosed)
	}
	return s.retry(ctx, op, read, f)
}

// retry is call without the check for Close, for the clean-up Close does.
func (s *Store) retry(ctx context.Context, op string, read bool, f func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RetryTimeout)
		defer cancel()
	}
	delay := 50 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err, read) {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return unavailable(op, err)
		}
		t := s.cfg.Clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return unavailable(op, fmt.Errorf("%w (%w)", err, ctx.Err()))
		case <-t.C():
		}
		delay = min(2*delay, time.Second)
	}
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// readOptions returns query options in the configured consistency mode.
func (s *Store) readOptions(ctx context.Context) *api.QueryOptions {
	q := &api.QueryOptions{}
	switch s.cfg.Consistency {
	case ConsistencyConsistent:
		q.RequireConsistent = true
	case ConsistencyStale:
		q.AllowStale = true
	}
	return q.WithContext(ctx)
}

// txn runs ops as one Consul transaction. A rolled-back transaction returns
// a *rollbackError. On success it records the highest index written so
// that the cache is known to lag until it reaches it; deletes mark the
// cache for a read-through.
func (s *Store) txn(ctx context.Context, ops ...*api.KVTxnOp) (*api.TxnResponse, error) {
	tops := make(api.TxnOps, len(ops))
	deletes := false
	for i, op := range ops {
		tops[i] = &api.TxnOp{KV: op}
		switch op.Verb {
		case api.KVDelete, api.KVDeleteCAS, api.KVDeleteTree:
			deletes = true
		}
	}
	ok, resp, _, err := s.client.Txn().Txn(tops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if !ok {
		rb := &rollbackError{OpIndex: -1, What: "unknown"}
		if resp != nil && len(resp.Errors) > 0 {
			rb.OpIndex, rb.What = resp.Errors[0].OpIndex, resp.Errors[0].What
		}
		if strings.Contains(strings.ToLower(rb.What), "permission denied") {
			// An ACL refusal is not a lost race: report it as it is.
			return nil, fmt.Errorf("acl: %s", rb.What)
		}
		return nil, rb
	}
	var top uint64
	for _, r := range resp.Results {
		if r.KV != nil {
			top = max(top, r.KV.ModifyIndex)
		}
	}
	s.mu.Lock()
	s.need = max(s.need, top)
	if deletes {
		s.dirtySeq++
	}
	s.mu.Unlock()
	return resp, nil
}

// resultIndex returns the ModifyIndex the transaction gave key.
func resultIndex(resp *api.TxnResponse, key string) uint64 {
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == key {
			return r.KV.ModifyIndex
		}
	}
	return 0
}

func (s *Store) key(rel string) string { return s.prefix + rel }

func version(index uint64) dcs.Version { return dcs.Version(strconv.FormatUint(index, 10)) }

// parseVersion turns a Version into a Consul index. A version this backend
// could not have produced can never match, so it is a conflict.
func parseVersion(v dcs.Version) (uint64, error) {
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: version %q is not a Consul index", dcs.ErrConflict, v)
	}
	return n, nil
}

// --- unfenced keys -----------------------------------------------------

// Initialize implements dcs.Store (spec/dcs-layout.md §2.1: cas=0 is the
// create-if-absent of the bootstrap race).
func (s *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	op := &api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeyInitialize), Value: []byte(sysid)}
	if create {
		op.Verb, op.Index = api.KVCAS, 0
	}
	return s.call(ctx, "initialize", false, func(ctx context.Context) error {
		_, err := s.txn(ctx, op)
		if _, ok := errors.AsType[*rollbackError](err); ok {
			return fmt.Errorf("%w: initialize key exists", dcs.ErrConflict)
		}
		return err
	})
}

// CancelInitialize implements dcs.Store.
func (s *Store) CancelInitialize(ctx context.Context) error {
	return s.call(ctx, "cancel initialize", false, func(ctx context.Context) error {
		_, err := s.txn(ctx, &api.KVTxnOp{Verb: api.KVDelete, Key: s.key(dcs.KeyInitialize)})
		return err
	})
}

// SetConfig implements dcs.Store.
func (s *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	return s.casSet(ctx, "set config", dcs.KeyConfig, config, prev)
}

// SetFailover implements dcs.Store. An empty request is stored as "{}".
func (s *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	return s.casSet(ctx, "set failover", dcs.KeyFailover, dcs.EncodeFailover(f), prev)
}

// casSet writes rel with CAS on prev (unconditionally when prev is empty)
// and returns the new version.
func (s *Store) casSet(ctx context.Context, opName, rel string, value []byte, prev dcs.Version) (dcs.Version, error) {
	op := &api.KVTxnOp{Verb: api.KVSet, Key: s.key(rel), Value: value}
	if prev != "" {
		idx, err := parseVersion(prev)
		if err != nil {
			return "", fmt.Errorf("consul: %s: %w", opName, err)
		}
		op.Verb, op.Index = api.KVCAS, idx
	}
	var v dcs.Version
	err := s.call(ctx, opName, false, func(ctx context.Context) error {
		resp, err := s.txn(ctx, op)
		if _, ok := errors.AsType[*rollbackError](err); ok {
			return fmt.Errorf("%w: %s changed since version %s", dcs.ErrConflict, rel, prev)
		}
		if err != nil {
			return err
		}
		v = version(resultIndex(resp, op.Key))
		return nil
	})
	return v, err
}

// DeleteCluster implements dcs.Store: it deletes the whole prefix.
func (s *Store) DeleteCluster(ctx context.Context) error {
	return s.call(ctx, "delete cluster", false, func(ctx context.Context) error {
		_, err := s.txn(ctx, &api.KVTxnOp{Verb: api.KVDeleteTree, Key: s.prefix})
		return err
	})
}

// PutRaw implements dcs.RawWriter. Leader and member keys are locked by the
// member's session like real ones.
func (s *Store) PutRaw(ctx context.Context, key string, value []byte) error {
	bound := key == dcs.KeyLeader || strings.HasPrefix(key, dcs.KeyMembers)
	if !bound {
		return s.call(ctx, "put "+key, false, func(ctx context.Context) error {
			_, err := s.txn(ctx, &api.KVTxnOp{Verb: api.KVSet, Key: s.key(key), Value: value})
			return err
		})
	}
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: put %s: %w", key, dcs.ErrNoMember)
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.call(ctx, "put "+key, false, func(ctx context.Context) error {
		if _, err := s.refreshSession(ctx, false); err != nil {
			return err
		}
		return s.withSession(ctx, func() error {
			return s.lockKey(ctx, key, value, key != dcs.KeyLeader)
		})
	})
}

// --- cache reads -------------------------------------------------------

// Cluster implements dcs.Store. How it reads depends on the ReadMode:
// ReadCache answers from the watcher's cache without a request while the
// watcher is healthy and has seen every write of this Store; ReadSynced
// first asks Consul for the prefix's current index (a key listing, no
// values) and serves the cache once it has reached that index;
// ReadConsistent reads the prefix every time. When the cache is behind, it
// waits a moment for the watcher, then reads through.
func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("consul: read cluster: %w", dcs.ErrClosed)
	}
	var target uint64
	switch s.readMode {
	case ReadConsistent:
		return s.readThrough(ctx)
	case ReadSynced:
		idx, err := s.probe(ctx)
		if err != nil {
			return nil, err
		}
		target = idx
	}
	var waited bool
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("consul: read cluster: %w", dcs.ErrClosed)
		}
		if s.freshLocked(target) {
			c := s.snap.cluster
			s.mu.Unlock()
			return c, nil
		}
		// Only a recent change is missing and the watcher is about to
		// bring it.
		catchingUp := !waited && s.watchOK && s.snap != nil && s.dirtySeq == s.cleanSeq &&
			s.cfg.Clock.Now().Before(s.watchUntil)
		ch := s.updated
		s.mu.Unlock()
		if !catchingUp {
			break
		}
		waited = true
		t := s.cfg.Clock.NewTimer(catchUpWait)
		select {
		case <-ch:
			waited = false // progress: check again, and wait again if needed
		case <-t.C():
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	return s.readThrough(ctx)
}

// catchUpWait is how long Cluster waits without progress for the watcher
// to deliver a change it knows of before reading through. The watcher
// normally answers within a few milliseconds of a write, so this rarely
// expires; when it does, one extra read is all it costs.
const catchUpWait = 200 * time.Millisecond

// freshLocked reports whether the cache can answer Cluster: the watcher is
// healthy and the cache has every write of ours and reached target. s.mu
// is held.
func (s *Store) freshLocked(target uint64) bool {
	return s.snap != nil && s.watchOK && s.cfg.Clock.Now().Before(s.watchUntil) &&
		s.snap.index >= max(s.need, target) && s.dirtySeq == s.cleanSeq
}

// probe returns the current index of the cluster prefix with a key-only
// listing (ReadSynced).
func (s *Store) probe(ctx context.Context) (uint64, error) {
	s.probes.Add(1)
	var idx uint64
	err := s.call(ctx, "read cluster", true, func(ctx context.Context) error {
		q := s.readOptions(ctx)
		q.AllowStale = false
		_, meta, err := s.client.KV().Keys(s.prefix, "", q)
		if err != nil {
			return err
		}
		idx = meta.LastIndex
		return nil
	})
	return idx, err
}

// readThrough reads the prefix now and installs the result.
func (s *Store) readThrough(ctx context.Context) (*dcs.Cluster, error) {
	s.readThroughs.Add(1)
	s.mu.Lock()
	seq := s.dirtySeq
	s.mu.Unlock()
	var c *dcs.Cluster
	err := s.call(ctx, "read cluster", true, func(ctx context.Context) error {
		q := s.readOptions(ctx)
		// A stale read may miss our own writes, which Cluster must show.
		q.AllowStale = false
		if s.readMode == ReadConsistent {
			q.RequireConsistent = true
		}
		pairs, meta, err := s.client.KV().List(s.prefix, q)
		if err != nil {
			return err
		}
		c = s.install(pairs, meta.LastIndex, seq, false, true)
		return nil
	})
	return c, err
}

// install replaces the cache with a read at index unless the cache is
// already at least as new, signals Changes when a key the HA loop reacts to
// changed, and returns the snapshot now current. seq is the dirtySeq the
// read started at (reads started after our deletes reflect them).
//
// Consul indexes only grow while the servers keep their state; when they
// lose it (or tombstones are reaped) the index of the prefix goes back.
// force installs the read anyway: the watcher sets it on the first answer
// after a failure or when its index went backwards, and a read-through gets
// it while the watcher is failing, so a cache from before a Consul restart
// never shadows current data.
func (s *Store) install(pairs api.KVPairs, index, seq uint64, force, readThrough bool) *dcs.Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanSeq = max(s.cleanSeq, seq)
	if readThrough && !s.watchOK {
		force = true
	}
	if s.snap != nil && s.snap.index >= index && !force {
		return s.snap.cluster
	}
	if force {
		// Indexes of our earlier writes may no longer compare.
		s.need = min(s.need, index)
	}
	next := s.buildSnapshot(pairs, index)
	prev := s.snap
	s.snap = next
	close(s.updated)
	s.updated = make(chan struct{})
	if relevantChange(prev, next) {
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}
	return next.cluster
}

func (s *Store) buildSnapshot(pairs api.KVPairs, index uint64) *snapshot {
	snap := &snapshot{index: index, pairs: make(map[string]*api.KVPair, len(pairs))}
	entries := make([]dcs.Entry, 0, len(pairs))
	for _, p := range pairs {
		rel, ok := strings.CutPrefix(p.Key, s.prefix)
		if !ok || rel == "" {
			continue
		}
		snap.pairs[rel] = p
		entries = append(entries, dcs.Entry{
			Key:     rel,
			Value:   p.Value,
			Version: version(p.ModifyIndex),
			Session: p.Session,
		})
	}
	snap.cluster = dcs.BuildCluster(entries)
	return snap
}

// watchedKeys are the keys whose change wakes the HA loop (dcs.Store's
// Changes).
var watchedKeys = []string{dcs.KeyLeader, dcs.KeyFailover, dcs.KeyConfig, dcs.KeySync, dcs.KeyInitialize}

func relevantChange(prev, next *snapshot) bool {
	if prev == nil {
		return true
	}
	for _, k := range watchedKeys {
		a, b := prev.pairs[k], next.pairs[k]
		switch {
		case a == nil && b == nil:
		case a == nil || b == nil:
			return true
		case a.ModifyIndex != b.ModifyIndex || a.Session != b.Session || !bytes.Equal(a.Value, b.Value):
			return true
		}
	}
	return false
}

// cachedPair returns the cached pair of rel when the cache reflects all our
// writes, or nil.
func (s *Store) cachedPair(rel string) (*api.KVPair, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.freshLocked(0) {
		return nil, false
	}
	return s.snap.pairs[rel], true
}
