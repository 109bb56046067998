package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
)

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.RawWriter = (*Store)(nil)
)

// Store is a dcs.Store on etcd v3, laid out like Patroni's etcd3 backend
// (spec/dcs-layout.md §1, §4): keys /<namespace>/<scope>/..., one lease per
// Store bound to its member key and, while leading, to the leader key.
//
// Cluster is served from a watch-fed cache, so a steady-state HA cycle costs
// no range request. The lease is refreshed only by TouchMember,
// AcquireLeader, TakeLeader and UpdateLeader, never in the background.
type Store struct {
	cfg       Config
	log       *slog.Logger
	clock     clock.Clock
	client    *clientv3.Client
	ownClient bool
	prefix    string
	name      string
	// consistent makes Cluster read the prefix (linearizable) on every
	// call instead of serving the cache: ctl-style stores without a member
	// name, as patronictl does (spec/dcs-layout.md §3).
	consistent bool
	ttl        atomic.Int64 // lease TTL in seconds

	leaseMu     sync.Mutex       // serializes lease grant/refresh; guards the fields below
	lease       clientv3.LeaseID // current lease, 0 when none
	leaseTTL    int64            // TTL the lease was granted with
	lastRefresh time.Time        // when the last grant/keepalive was sent
	leaderLease clientv3.LeaseID // lease the leader key was last bound to by us

	mu        sync.Mutex // guards the cache fields below
	entries   map[string]entry
	floor     int64  // revision of the last range snapshot
	rev       int64  // highest revision seen
	term      uint64 // highest raft term seen
	clusterID uint64
	live      bool          // a watch is established
	progress  chan struct{} // closed and replaced on every progress notification

	changes   chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Open connects to etcd, reads the cluster once and starts the watch that
// keeps the cache current. It returns when the cache is ready or ctx ends;
// unreachable endpoints give an error wrapping dcs.ErrUnavailable, a wrong
// password ErrAuth, a certificate problem ErrTLS.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:      cfg,
		clock:    cfg.Clock,
		prefix:   Prefix(cfg.Namespace, cfg.Scope),
		name:     cfg.Name,
		entries:  make(map[string]entry),
		changes:  make(chan struct{}, 1),
		progress: make(chan struct{}),
	}
	s.consistent = cfg.Name == "" || cfg.ReadMode == ReadConsistent
	s.log = cfg.Logger.With("dcs", "etcd", "prefix", s.prefix)
	if cfg.Name != "" {
		s.log = s.log.With("member", cfg.Name)
	}
	s.ttl.Store(ttlSeconds(cfg.TTL))

	if cfg.Client != nil {
		s.client = cfg.Client
	} else {
		c, err := newClient(ctx, cfg, s.log)
		if err != nil {
			return nil, err
		}
		s.client, s.ownClient = c, true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	rctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	rev, err := s.reload(rctx)
	cancel()
	if err != nil {
		err = mapErr("read cluster", err)
		err = explain(ctx, cfg, err)
		s.cancel()
		if s.ownClient {
			_ = s.client.Close()
		}
		return nil, err
	}
	s.wg.Add(1)
	go s.run(rev)
	return s, nil
}

func newClient(ctx context.Context, cfg Config, log *slog.Logger) (*clientv3.Client, error) {
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	eps := make([]string, 0, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		n, err := normalizeEndpoint(e, tlsCfg != nil)
		if err != nil {
			return nil, err
		}
		eps = append(eps, n)
	}
	dial := cfg.DialTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < dial {
		dial = max(time.Until(d), time.Millisecond)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          dial,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		PermitWithoutStream:  true,
		TLS:                  tlsCfg,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialOptions:          cfg.DialOptions,
		Logger:               newZapLogger(log),
		Context:              context.WithoutCancel(ctx),
	})
	if err != nil {
		err = mapErr("connect", err)
		err = explain(ctx, cfg, err)
		return nil, err
	}
	return c, nil
}

func ttlSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Client returns the underlying etcd client (for diagnostics and tools).
func (s *Store) Client() *clientv3.Client { return s.client }

// Prefix returns the cluster's key prefix ("/service/batman/").
func (s *Store) Prefix() string { return s.prefix }

// Changes implements dcs.Store.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// SetTTL implements dcs.Store: the next lease refresh grants a new lease
// with the new TTL.
func (s *Store) SetTTL(ttl time.Duration) { s.ttl.Store(ttlSeconds(ttl)) }

// Close implements dcs.Store. The lease is left to expire.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		if s.ownClient {
			err = s.client.Close()
		}
	})
	return err
}

func (s *Store) closed() bool { return s.ctx.Err() != nil }

// Cluster implements dcs.Store. While the watch is established it is served
// from the cache with no range request (ReadMode says whether it first
// waits for a progress notification); otherwise, and always for stores
// without a member name or with ReadConsistent, it reads the prefix once
// (linearizable) and refreshes the cache from that read.
func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if s.closed() {
		return nil, dcs.ErrClosed
	}
	if s.consistent || !s.isLive() || (s.cfg.ReadMode == ReadSynced && !s.syncCache(ctx)) {
		if _, err := s.reload(ctx); err != nil {
			return nil, mapErr("read cluster", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(), nil
}

// ---- lease ----

// refreshLease makes sure the Store has a live lease and returns it. An
// existing lease gets one keepalive unless force is false and it was
// refreshed less than ttl/4 ago (a second call in the same HA cycle). A
// missing, expired or outdated-TTL lease is replaced by a new grant.
func (s *Store) refreshLease(ctx context.Context, force bool) (clientv3.LeaseID, error) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	ttl := s.ttl.Load()
	if s.lease != 0 && s.leaseTTL == ttl {
		if !force && s.clock.Since(s.lastRefresh) < time.Duration(ttl)*time.Second/4 {
			return s.lease, nil
		}
		start := s.clock.Now()
		_, err := s.client.KeepAliveOnce(ctx, s.lease)
		if err == nil {
			s.lastRefresh = start
			return s.lease, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, mapErr("lease keepalive", err)
		}
		s.log.Warn("etcd lease expired, granting a new one", "lease", session(int64(s.lease)))
		s.lease = 0
	}
	start := s.clock.Now()
	resp, err := s.client.Grant(ctx, ttl)
	if err != nil {
		return 0, mapErr("lease grant", err)
	}
	if s.lease != 0 {
		s.log.Info("etcd lease re-granted with a new ttl", "old", session(int64(s.lease)),
			"new", session(int64(resp.ID)), "ttl", ttl)
	}
	s.lease, s.leaseTTL, s.lastRefresh = resp.ID, ttl, start
	return resp.ID, nil
}

// dropLease forgets lease id after etcd reported it missing.
func (s *Store) dropLease(id clientv3.LeaseID) {
	s.leaseMu.Lock()
	if s.lease == id {
		s.lease = 0
	}
	s.leaseMu.Unlock()
}

func (s *Store) setLeaderLease(id clientv3.LeaseID) {
	s.leaseMu.Lock()
	s.leaderLease = id
	s.leaseMu.Unlock()
}

func (s *Store) getLeaderLease() clientv3.LeaseID {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.leaderLease
}

// ---- transactions ----

// wop is one write of a transaction, kept so that a successful write can be
// applied to the cache.
type wop struct {
	key   string // relative
	value []byte
	del   bool
	lease clientv3.LeaseID
}

func (s *Store) toOp(w wop) clientv3.Op {
	if w.del {
		return clientv3.OpDelete(s.prefix + w.key)
	}
	if w.lease != 0 {
		return clientv3.OpPut(s.prefix+w.key, string(w.value), clientv3.WithLease(w.lease))
	}
	return clientv3.OpPut(s.prefix+w.key, string(w.value))
}

// txnResult is the outcome of s.txn.
type txnResult struct {
	ok  bool
	rev int64
	// got holds the keys read by the else branch (nil value = absent).
	got map[string]*entry
}

// txn runs If(cmps).Then(writes).Else(get elseKeys...) and applies the
// outcome to the cache: the writes on success, the keys read otherwise.
func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, writes []wop, elseKeys ...string) (txnResult, error) {
	ops := make([]clientv3.Op, 0, len(writes))
	for _, w := range writes {
		ops = append(ops, s.toOp(w))
	}
	var elseOps []clientv3.Op
	for _, k := range elseKeys {
		elseOps = append(elseOps, clientv3.OpGet(s.prefix+k))
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Else(elseOps...).Commit()
	if err != nil {
		return txnResult{}, err
	}
	res := txnResult{ok: resp.Succeeded, rev: resp.Header.Revision}
	changed := false
	s.mu.Lock()
	if err := s.checkHeaderLocked(resp.Header, false); err != nil {
		s.log.Warn("etcd write answered by a lagging member", "error", err)
	}
	if resp.Succeeded {
		for _, w := range writes {
			e := entry{value: w.value, modRev: resp.Header.Revision, lease: int64(w.lease)}
			if w.del {
				e = entry{modRev: resp.Header.Revision, deleted: true}
			}
			if s.setLocked(w.key, e) {
				changed = true
			}
		}
	} else {
		res.got = make(map[string]*entry)
		for i, k := range elseKeys {
			if i >= len(resp.Responses) {
				break
			}
			rr := resp.Responses[i].GetResponseRange()
			if rr == nil {
				continue
			}
			if len(rr.Kvs) == 0 {
				res.got[k] = nil
				// Absent as of this revision.
				if s.setLocked(k, entry{modRev: resp.Header.Revision, deleted: true}) {
					changed = true
				}
				continue
			}
			kv := rr.Kvs[0]
			e := entry{value: kv.Value, modRev: kv.ModRevision, lease: kv.Lease}
			res.got[k] = &e
			if s.setLocked(k, e) {
				changed = true
			}
		}
	}
	s.mu.Unlock()
	if changed {
		s.notify()
	}
	return res, nil
}

// put writes one key unconditionally.
func (s *Store) put(ctx context.Context, w wop) (int64, error) {
	res, err := s.txn(ctx, nil, []wop{w})
	return res.rev, err
}

// leaseRetry runs fn with a live lease; when etcd reports the lease gone
// (expired between the keepalive and the write), it grants a new one and
// runs fn once more.
func (s *Store) leaseRetry(ctx context.Context, force bool, fn func(clientv3.LeaseID) error) error {
	for attempt := 0; ; attempt++ {
		lease, err := s.refreshLease(ctx, force)
		if err != nil {
			return err
		}
		err = fn(lease)
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.dropLease(lease)
			continue
		}
		return err
	}
}

// fence returns the comparisons proving this member holds the leader key.
func (s *Store) fence() []clientv3.Cmp {
	key := s.prefix + dcs.KeyLeader
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", s.name)}
	if ll := s.getLeaderLease(); ll != 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(key), "=", ll))
	}
	return cmps
}

func (s *Store) checkMember() error {
	if s.closed() {
		return dcs.ErrClosed
	}
	if s.name == "" {
		return dcs.ErrNoMember
	}
	return nil
}

// ---- dcs.Store writes ----

// Initialize implements dcs.Store.
func (s *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	if s.closed() {
		return dcs.ErrClosed
	}
	w := wop{key: dcs.KeyInitialize, value: []byte(sysid)}
	if !create {
		_, err := s.put(ctx, w)
		return mapErr("write initialize", err)
	}
	key := s.prefix + dcs.KeyInitialize
	res, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]wop{w}, dcs.KeyInitialize)
	if err != nil {
		return mapErr("create initialize", err)
	}
	if !res.ok {
		return fmt.Errorf("etcd create initialize: %w", dcs.ErrConflict)
	}
	return nil
}

// CancelInitialize implements dcs.Store.
func (s *Store) CancelInitialize(ctx context.Context) error {
	if s.closed() {
		return dcs.ErrClosed
	}
	_, err := s.txn(ctx, nil, []wop{{key: dcs.KeyInitialize, del: true}})
	return mapErr("delete initialize", err)
}

// TouchMember implements dcs.Store. It refreshes the lease (one keepalive,
// skipped when another call refreshed it moments ago) and writes the member
// key only when its value changed or it is bound to an older lease.
func (s *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	if m == nil || m.Name != s.name {
		return fmt.Errorf("etcd touch member: member name must be %q", s.name)
	}
	key := dcs.KeyMembers + s.name
	data := dcs.EncodeMember(m)
	write := func(lease clientv3.LeaseID) error {
		s.mu.Lock()
		cur, ok := s.entries[key]
		s.mu.Unlock()
		if ok && !cur.deleted && cur.lease == int64(lease) && bytes.Equal(cur.value, data) {
			return nil
		}
		_, err := s.put(ctx, wop{key: key, value: data, lease: lease})
		return err
	}
	// Fast path: with a live lease, the keepalive (when due) and the put
	// run side by side, so a touch costs one round trip of latency.
	if lease, due := s.currentLease(); lease != 0 {
		var kaErr error
		var wg sync.WaitGroup
		if due {
			wg.Go(func() { kaErr = s.keepAlive(ctx, lease) })
		}
		err := write(lease)
		wg.Wait()
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) && !errors.Is(kaErr, rpctypes.ErrLeaseNotFound) {
			if err == nil {
				err = kaErr
			}
			return mapErr("touch member "+s.name, err)
		}
		s.dropLease(lease)
	}
	return mapErr("touch member "+s.name, s.leaseRetry(ctx, false, write))
}

// currentLease returns the lease when it exists with the current TTL, and
// whether a keepalive is due (the last refresh is ttl/4 or more ago).
func (s *Store) currentLease() (clientv3.LeaseID, bool) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	ttl := s.ttl.Load()
	if s.lease == 0 || s.leaseTTL != ttl {
		return 0, false
	}
	return s.lease, s.clock.Since(s.lastRefresh) >= time.Duration(ttl)*time.Second/4
}

// keepAlive sends one keepalive for lease and records the refresh.
func (s *Store) keepAlive(ctx context.Context, lease clientv3.LeaseID) error {
	start := s.clock.Now()
	if _, err := s.client.KeepAliveOnce(ctx, lease); err != nil {
		return err
	}
	s.leaseMu.Lock()
	if s.lease == lease && start.After(s.lastRefresh) {
		s.lastRefresh = start
	}
	s.leaseMu.Unlock()
	return nil
}

// AcquireLeader implements dcs.Store: a transaction creating the leader key
// only if it does not exist (create_revision == 0), bound to our lease.
func (s *Store) AcquireLeader(ctx context.Context) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	key := s.prefix + dcs.KeyLeader
	var won bool
	err := s.leaseRetry(ctx, true, func(lease clientv3.LeaseID) error {
		res, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]wop{{key: dcs.KeyLeader, value: []byte(s.name), lease: lease}}, dcs.KeyLeader)
		if err != nil {
			return err
		}
		won = res.ok
		if won {
			s.setLeaderLease(lease)
		}
		return nil
	})
	if err != nil {
		return mapErr("acquire leader", err)
	}
	if !won {
		return fmt.Errorf("etcd acquire leader: %w", dcs.ErrConflict)
	}
	s.log.Info("acquired the leader key")
	return nil
}

// TakeLeader implements dcs.Store: an unconditional put of the leader key
// bound to our lease.
func (s *Store) TakeLeader(ctx context.Context) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	err := s.leaseRetry(ctx, true, func(lease clientv3.LeaseID) error {
		if _, err := s.put(ctx, wop{key: dcs.KeyLeader, value: []byte(s.name), lease: lease}); err != nil {
			return err
		}
		s.setLeaderLease(lease)
		return nil
	})
	return mapErr("take leader", err)
}

// UpdateLeader implements dcs.Store: one keepalive of the lease (which keeps
// the leader and member keys alive), then one transaction fenced on the
// leader key holding our name and our lease that writes the status and
// failsafe keys when they changed. When the lease was re-granted (new TTL)
// the same transaction rebinds the leader key to the new lease.
func (s *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	lease, err := s.refreshLease(ctx, true)
	if err != nil {
		return mapErr("update leader", err)
	}
	// Fence on our name and our lease. When the key is bound to another
	// lease (re-granted for a new TTL, or left by our previous process),
	// fence on the name only and rebind the key to our lease in the same
	// transaction, as Patroni does.
	leaderKey := s.prefix + dcs.KeyLeader
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Value(leaderKey), "=", s.name)}
	var writes []wop
	s.mu.Lock()
	cur, ok := s.entries[dcs.KeyLeader]
	s.mu.Unlock()
	if ok && !cur.deleted && cur.lease == int64(lease) {
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(leaderKey), "=", lease))
	} else {
		writes = append(writes, wop{key: dcs.KeyLeader, value: []byte(s.name), lease: lease})
	}
	s.mu.Lock()
	unchanged := func(key string, v []byte) bool {
		e, ok := s.entries[key]
		return ok && !e.deleted && bytes.Equal(e.value, v)
	}
	if u.Status != nil {
		if v := dcs.EncodeStatus(u.Status); !unchanged(dcs.KeyStatus, v) {
			writes = append(writes, wop{key: dcs.KeyStatus, value: v})
		}
	}
	if u.Failsafe != nil {
		if v := dcs.EncodeFailsafe(u.Failsafe); !unchanged(dcs.KeyFailsafe, v) {
			writes = append(writes, wop{key: dcs.KeyFailsafe, value: v})
		}
	}
	s.mu.Unlock()
	res, err := s.txn(ctx, cmps, writes, dcs.KeyLeader)
	if err != nil {
		return mapErr("update leader", err)
	}
	if !res.ok {
		s.setLeaderLease(0)
		holder := "nobody"
		if e := res.got[dcs.KeyLeader]; e != nil {
			holder = string(e.value)
		}
		s.log.Warn("leader key lost", "leader", holder)
		return fmt.Errorf("etcd update leader: held by %s: %w", holder, dcs.ErrLeaderLost)
	}
	s.setLeaderLease(lease)
	return nil
}

// ReleaseLeader implements dcs.Store: one transaction that, if the leader
// key still holds our name, writes the last status and deletes the key.
func (s *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if err := s.checkMember(); err != nil {
		return err
	}
	key := s.prefix + dcs.KeyLeader
	var writes []wop
	if last != nil {
		writes = append(writes, wop{key: dcs.KeyStatus, value: dcs.EncodeStatus(last)})
	}
	writes = append(writes, wop{key: dcs.KeyLeader, del: true})
	res, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", s.name)}, writes, dcs.KeyLeader)
	if err != nil {
		return mapErr("release leader", err)
	}
	s.setLeaderLease(0)
	if res.ok {
		s.log.Info("released the leader key")
	}
	return nil
}

// cas writes key with a mod_revision compare on prev (unconditional when
// prev is empty), optionally fenced on the leader key.
func (s *Store) cas(ctx context.Context, op string, w wop, prev dcs.Version, fenced bool) (dcs.Version, error) {
	if s.closed() {
		return "", dcs.ErrClosed
	}
	var cmps []clientv3.Cmp
	if fenced {
		if err := s.checkMember(); err != nil {
			return "", err
		}
		cmps = s.fence()
	}
	if prev != "" {
		rev, err := parseVersion(prev)
		if err != nil {
			return "", fmt.Errorf("etcd %s: %w", op, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.prefix+w.key), "=", rev))
	}
	res, err := s.txn(ctx, cmps, []wop{w}, dcs.KeyLeader, w.key)
	if err != nil {
		return "", mapErr(op, err)
	}
	if !res.ok {
		if fenced {
			if e := res.got[dcs.KeyLeader]; e == nil || string(e.value) != s.name {
				return "", fmt.Errorf("etcd %s: %w", op, dcs.ErrLeaderLost)
			}
			if ll := s.getLeaderLease(); ll != 0 && res.got[dcs.KeyLeader].lease != int64(ll) {
				return "", fmt.Errorf("etcd %s: leader key bound to another lease: %w", op, dcs.ErrLeaderLost)
			}
		}
		return "", fmt.Errorf("etcd %s: %w", op, dcs.ErrConflict)
	}
	return version(res.rev), nil
}

// SetConfig implements dcs.Store.
func (s *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	if !json.Valid(config) {
		return "", errors.New("etcd set config: not valid JSON")
	}
	return s.cas(ctx, "set config", wop{key: dcs.KeyConfig, value: config}, prev, false)
}

// SetFailover implements dcs.Store; an empty request is stored as "{}".
func (s *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	return s.cas(ctx, "set failover", wop{key: dcs.KeyFailover, value: dcs.EncodeFailover(f)}, prev, false)
}

// SetSync implements dcs.Store.
func (s *Store) SetSync(ctx context.Context, st *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	return s.cas(ctx, "set sync", wop{key: dcs.KeySync, value: dcs.EncodeSync(st)}, prev, true)
}

// DeleteSync implements dcs.Store.
func (s *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	_, err := s.cas(ctx, "delete sync", wop{key: dcs.KeySync, del: true}, prev, true)
	return err
}

// SetHistory implements dcs.Store.
func (s *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	_, err := s.cas(ctx, "set history", wop{key: dcs.KeyHistory, value: dcs.EncodeHistory(h)}, "", true)
	return err
}

// DeleteCluster implements dcs.Store: one delete of the whole prefix.
func (s *Store) DeleteCluster(ctx context.Context) error {
	if s.closed() {
		return dcs.ErrClosed
	}
	resp, err := s.client.Delete(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return mapErr("delete cluster", err)
	}
	changed := false
	s.mu.Lock()
	for k, e := range s.entries {
		if !e.deleted && s.setLocked(k, entry{modRev: resp.Header.Revision, deleted: true}) {
			changed = true
		}
	}
	s.mu.Unlock()
	s.setLeaderLease(0)
	if changed {
		s.notify()
	}
	return nil
}

// PutRaw implements dcs.RawWriter. Leader and member keys are bound to the
// Store's lease.
func (s *Store) PutRaw(ctx context.Context, key string, value []byte) error {
	if s.closed() {
		return dcs.ErrClosed
	}
	w := wop{key: key, value: value}
	if key == dcs.KeyLeader || (len(key) > len(dcs.KeyMembers) && key[:len(dcs.KeyMembers)] == dcs.KeyMembers) {
		return mapErr("put "+key, s.leaseRetry(ctx, false, func(lease clientv3.LeaseID) error {
			w.lease = lease
			_, err := s.put(ctx, w)
			return err
		}))
	}
	_, err := s.put(ctx, w)
	return mapErr("put "+key, err)
}

// NewClient dials etcd with cfg's endpoints, TLS and credentials, the way
// Open does, for tools that need the plain client (member management).
// Scope and Name are not needed.
func NewClient(ctx context.Context, cfg Config) (*clientv3.Client, error) {
	if cfg.Scope == "" {
		cfg.Scope = "-"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return newClient(ctx, cfg, cfg.Logger)
}

// diagnoseTimeout bounds the probe that explains a failed connect; Open may
// return this much after its context's deadline.
const diagnoseTimeout = 250 * time.Millisecond

// explain adds what a direct probe of the endpoints found (refused
// connection, TLS mismatch) to an ErrUnavailable from Open.
func explain(ctx context.Context, cfg Config, err error) error {
	if !errors.Is(err, dcs.ErrUnavailable) || errors.Is(err, ErrAuth) || errors.Is(err, ErrTLS) {
		return err
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diagnoseTimeout)
	defer cancel()
	if d := diagnose(dctx, cfg); d != nil {
		return fmt.Errorf("%w (%w)", err, d)
	}
	return err
}
