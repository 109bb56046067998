package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// Store is one member's client of a Server; it implements dcs.Store and
// dcs.RawWriter. Create it with Server.Client.
type Store struct {
	srv     *Server
	cl      *cluster
	name    string
	log     *slog.Logger
	changes chan struct{}

	// Guarded by srv.mu.
	ttl    time.Duration
	lease  *lease // nil until the first lease refresh; replaced after expiry
	closed bool
}

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.RawWriter = (*Store)(nil)
)

// Causes wrapped together with dcs.ErrUnavailable.
var (
	errPartitioned = errors.New("memory: member is partitioned from the DCS")
	errOutage      = errors.New("memory: the DCS is down")
)

// notify wakes the Changes receiver without blocking.
func (st *Store) notify() {
	select {
	case st.changes <- struct{}{}:
	default:
	}
}

// begin checks ctx and the injected faults, waits out an injected delay,
// and returns with srv.mu held and due leases expired. On error srv.mu is
// not held.
func (st *Store) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w: %w", op, dcs.ErrUnavailable, err)
	}
	s := st.srv
	s.mu.Lock()
	delayed := false
	for {
		if st.closed {
			s.mu.Unlock()
			return fmt.Errorf("memory: %s: %w", op, dcs.ErrClosed)
		}
		if s.cutLocked(st) {
			cause := errPartitioned
			if s.unavailable {
				cause = errOutage
			}
			s.mu.Unlock()
			if s.partitionBlocks {
				<-ctx.Done()
				return fmt.Errorf("memory: %s: %w: %w: %w", op, dcs.ErrUnavailable, cause, ctx.Err())
			}
			return fmt.Errorf("memory: %s: %w: %w", op, dcs.ErrUnavailable, cause)
		}
		d := s.delayLocked(st)
		if d == 0 || delayed {
			break
		}
		s.mu.Unlock()
		if err := st.sleep(ctx, d); err != nil {
			return fmt.Errorf("memory: %s: %w: %w", op, dcs.ErrUnavailable, err)
		}
		delayed = true
		s.mu.Lock()
	}
	s.expireLocked(s.clock.Now())
	return nil
}

// sleep waits d on the server's clock, or until ctx is done.
func (st *Store) sleep(ctx context.Context, d time.Duration) error {
	t := st.srv.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// needName returns dcs.ErrNoMember for a store without a member name.
func (st *Store) needName(op string) error {
	if st.name == "" {
		return fmt.Errorf("memory: %s: %w", op, dcs.ErrNoMember)
	}
	return nil
}

// refreshLocked extends the store's lease by its TTL from now, granting a
// new lease when there is none or it expired.
func (st *Store) refreshLocked() *lease {
	s := st.srv
	if st.lease == nil || st.lease.expired {
		st.lease = s.grantLocked(st.ttl)
		return st.lease
	}
	st.lease.deadline = s.clock.Now().Add(st.ttl)
	s.scheduleLocked(st.lease.deadline) // the TTL may have shrunk
	return st.lease
}

// leaseLocked returns the store's live lease without refreshing it,
// granting one when needed.
func (st *Store) leaseLocked() *lease {
	if st.lease == nil || st.lease.expired {
		st.lease = st.srv.grantLocked(st.ttl)
	}
	return st.lease
}

// fenceLocked returns dcs.ErrLeaderLost unless this member holds the
// leader key.
func (st *Store) fenceLocked(op string) error {
	if kv := st.cl.keys[dcs.KeyLeader]; kv == nil || string(kv.value) != st.name {
		return fmt.Errorf("memory: %s: %w", op, dcs.ErrLeaderLost)
	}
	return nil
}

// casLocked returns dcs.ErrConflict unless prev is empty or the key's
// current version.
func (st *Store) casLocked(op, key string, prev dcs.Version) error {
	if prev == "" {
		return nil
	}
	if kv := st.cl.keys[key]; kv == nil || kv.version != prev {
		return fmt.Errorf("memory: %s: %w", op, dcs.ErrConflict)
	}
	return nil
}

// putIfChangedLocked writes an unbound key unless it already holds value.
func (st *Store) putIfChangedLocked(key string, value []byte) {
	if kv := st.cl.keys[key]; kv != nil && kv.lease == nil && bytes.Equal(kv.value, value) {
		return
	}
	st.srv.putLocked(st.cl, key, value, nil)
}

// Cluster implements dcs.Store. The snapshot owns its memory: values are
// copied out of the server. Reads without a change of the cluster in
// between share the decoded snapshot (the simulation reads far more often
// than it writes, and decoding dominates the cost of a read): each call
// returns a fresh *dcs.Cluster whose nested values may be shared with
// other reads, which is safe because nobody modifies them.
func (st *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if err := st.begin(ctx, "read cluster"); err != nil {
		return nil, err
	}
	cl := st.cl
	if cl.snap != nil && cl.snapChanges == cl.changes {
		snap := cl.snap
		st.srv.mu.Unlock()
		return shallowCopy(snap), nil
	}
	changes := cl.changes
	size := 0
	for _, kv := range st.cl.keys {
		size += len(kv.value)
	}
	buf := make([]byte, 0, size)
	entries := make([]dcs.Entry, 0, len(st.cl.keys))
	for key, kv := range st.cl.keys {
		start := len(buf)
		buf = append(buf, kv.value...)
		e := dcs.Entry{Key: key, Value: buf[start:len(buf):len(buf)], Version: kv.version}
		if kv.lease != nil {
			e.Session = kv.lease.session
		}
		entries = append(entries, e)
	}
	st.srv.mu.Unlock()
	snap := dcs.BuildCluster(entries)
	st.srv.mu.Lock()
	if cl.changes == changes {
		cl.snap, cl.snapChanges = snap, changes
	}
	st.srv.mu.Unlock()
	return shallowCopy(snap), nil
}

// shallowCopy returns a new Cluster with c's fields, its slices clipped so
// that a caller appending to one cannot write into another's.
func shallowCopy(c *dcs.Cluster) *dcs.Cluster {
	cp := *c
	cp.Members = slices.Clip(cp.Members)
	cp.Problems = slices.Clip(cp.Problems)
	return &cp
}

// Changes implements dcs.Store. While the store is partitioned, or the DCS
// is down, nothing is delivered; one wake-up follows the end of the fault.
func (st *Store) Changes() <-chan struct{} { return st.changes }

// Initialize implements dcs.Store.
func (st *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	if err := st.begin(ctx, "initialize"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	if create && st.cl.keys[dcs.KeyInitialize] != nil {
		return fmt.Errorf("memory: initialize: key exists: %w", dcs.ErrConflict)
	}
	st.srv.putLocked(st.cl, dcs.KeyInitialize, []byte(sysid), nil)
	return nil
}

// CancelInitialize implements dcs.Store.
func (st *Store) CancelInitialize(ctx context.Context) error {
	if err := st.begin(ctx, "cancel initialize"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	st.srv.deleteLocked(st.cl, dcs.KeyInitialize)
	return nil
}

// TouchMember implements dcs.Store. It skips the write when the stored key
// already holds the same value bound to the current lease.
func (st *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if err := st.needName("touch member"); err != nil {
		return err
	}
	if m == nil || m.Name != st.name {
		return fmt.Errorf("memory: touch member: store acts for member %q, not %q", st.name, memberName(m))
	}
	value := dcs.EncodeMember(m)
	if err := st.begin(ctx, "touch member"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	l := st.refreshLocked()
	key := dcs.KeyMembers + st.name
	if kv := st.cl.keys[key]; kv != nil && kv.lease == l && bytes.Equal(kv.value, value) {
		return nil
	}
	st.srv.putLocked(st.cl, key, value, l)
	return nil
}

func memberName(m *dcs.Member) string {
	if m == nil {
		return "<nil>"
	}
	return m.Name
}

// AcquireLeader implements dcs.Store. Any call that reaches the DCS
// refreshes the lease, whether it wins or not.
func (st *Store) AcquireLeader(ctx context.Context) error {
	if err := st.needName("acquire leader"); err != nil {
		return err
	}
	if err := st.begin(ctx, "acquire leader"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	l := st.refreshLocked()
	if kv := st.cl.keys[dcs.KeyLeader]; kv != nil {
		return fmt.Errorf("memory: acquire leader: held by %q: %w", kv.value, dcs.ErrConflict)
	}
	st.srv.putLocked(st.cl, dcs.KeyLeader, []byte(st.name), l)
	st.log.Debug("memory: acquired leader key", "lease", l.session)
	return nil
}

// TakeLeader implements dcs.Store.
func (st *Store) TakeLeader(ctx context.Context) error {
	if err := st.needName("take leader"); err != nil {
		return err
	}
	if err := st.begin(ctx, "take leader"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	l := st.refreshLocked()
	st.srv.putLocked(st.cl, dcs.KeyLeader, []byte(st.name), l)
	st.log.Debug("memory: took leader key", "lease", l.session)
	return nil
}

// UpdateLeader implements dcs.Store. The renewal, the status and the
// failsafe writes happen atomically.
func (st *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if err := st.needName("update leader"); err != nil {
		return err
	}
	var status, failsafe []byte
	if u.Status != nil {
		status = dcs.EncodeStatus(u.Status)
	}
	if u.Failsafe != nil {
		failsafe = dcs.EncodeFailsafe(u.Failsafe)
	}
	if err := st.begin(ctx, "update leader"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	if err := st.fenceLocked("update leader"); err != nil {
		return err
	}
	l := st.refreshLocked()
	if kv := st.cl.keys[dcs.KeyLeader]; kv.lease != l {
		// Written by an earlier lease of ours (or raw): bind it to ours.
		st.srv.putLocked(st.cl, dcs.KeyLeader, kv.value, l)
	}
	if status != nil {
		st.putIfChangedLocked(dcs.KeyStatus, status)
	}
	if failsafe != nil {
		st.putIfChangedLocked(dcs.KeyFailsafe, failsafe)
	}
	return nil
}

// ReleaseLeader implements dcs.Store.
func (st *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if err := st.needName("release leader"); err != nil {
		return err
	}
	var status []byte
	if last != nil {
		status = dcs.EncodeStatus(last)
	}
	if err := st.begin(ctx, "release leader"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	if st.fenceLocked("release leader") != nil {
		return nil
	}
	if status != nil {
		st.putIfChangedLocked(dcs.KeyStatus, status)
	}
	st.srv.deleteLocked(st.cl, dcs.KeyLeader)
	st.log.Debug("memory: released leader key")
	return nil
}

// SetConfig implements dcs.Store. The value is stored as given.
func (st *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	value := slices.Clone(config)
	if err := st.begin(ctx, "set config"); err != nil {
		return "", err
	}
	defer st.srv.mu.Unlock()
	if err := st.casLocked("set config", dcs.KeyConfig, prev); err != nil {
		return "", err
	}
	return st.srv.putLocked(st.cl, dcs.KeyConfig, value, nil), nil
}

// SetFailover implements dcs.Store. An empty request is stored as "{}".
func (st *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	if f == nil {
		f = &dcs.Failover{}
	}
	value := dcs.EncodeFailover(f)
	if err := st.begin(ctx, "set failover"); err != nil {
		return "", err
	}
	defer st.srv.mu.Unlock()
	if err := st.casLocked("set failover", dcs.KeyFailover, prev); err != nil {
		return "", err
	}
	return st.srv.putLocked(st.cl, dcs.KeyFailover, value, nil), nil
}

// SetSync implements dcs.Store.
func (st *Store) SetSync(ctx context.Context, s *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	if err := st.needName("set sync"); err != nil {
		return "", err
	}
	if s == nil {
		s = &dcs.SyncState{}
	}
	value := dcs.EncodeSync(s)
	if err := st.begin(ctx, "set sync"); err != nil {
		return "", err
	}
	defer st.srv.mu.Unlock()
	if err := st.fenceLocked("set sync"); err != nil {
		return "", err
	}
	if err := st.casLocked("set sync", dcs.KeySync, prev); err != nil {
		return "", err
	}
	return st.srv.putLocked(st.cl, dcs.KeySync, value, nil), nil
}

// DeleteSync implements dcs.Store. With a non-empty prev, a missing key is a
// conflict.
func (st *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	if err := st.needName("delete sync"); err != nil {
		return err
	}
	if err := st.begin(ctx, "delete sync"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	if err := st.fenceLocked("delete sync"); err != nil {
		return err
	}
	if err := st.casLocked("delete sync", dcs.KeySync, prev); err != nil {
		return err
	}
	st.srv.deleteLocked(st.cl, dcs.KeySync)
	return nil
}

// SetHistory implements dcs.Store.
func (st *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	if err := st.needName("set history"); err != nil {
		return err
	}
	if h == nil {
		h = &dcs.TimelineHistory{}
	}
	value := dcs.EncodeHistory(h)
	if err := st.begin(ctx, "set history"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	if err := st.fenceLocked("set history"); err != nil {
		return err
	}
	st.srv.putLocked(st.cl, dcs.KeyHistory, value, nil)
	return nil
}

// DeleteCluster implements dcs.Store.
func (st *Store) DeleteCluster(ctx context.Context) error {
	if err := st.begin(ctx, "delete cluster"); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	for key := range st.cl.keys {
		st.srv.deleteLocked(st.cl, key)
	}
	return nil
}

// SetTTL implements dcs.Store. Values <= 0 are ignored.
func (st *Store) SetTTL(ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	st.srv.mu.Lock()
	defer st.srv.mu.Unlock()
	st.ttl = ttl
}

// Close implements dcs.Store. The lease is not revoked: the member and
// leader keys expire after the TTL. Close is idempotent.
func (st *Store) Close() error {
	st.srv.mu.Lock()
	defer st.srv.mu.Unlock()
	st.closed = true
	delete(st.cl.watchers, st)
	return nil
}

// PutRaw implements dcs.RawWriter: it stores value as is under key
// (relative to the cluster prefix). The leader key and member keys are
// bound to the store's lease, which is granted if needed but not refreshed.
func (st *Store) PutRaw(ctx context.Context, key string, value []byte) error {
	value = slices.Clone(value)
	if value == nil {
		value = []byte{}
	}
	if err := st.begin(ctx, "put "+key); err != nil {
		return err
	}
	defer st.srv.mu.Unlock()
	var l *lease
	if key == dcs.KeyLeader || strings.HasPrefix(key, dcs.KeyMembers) {
		l = st.leaseLocked()
	}
	st.srv.putLocked(st.cl, key, value, l)
	return nil
}
