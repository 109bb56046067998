package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/pgwarden/pgwarden/dcs"
)

// The cache holds every key of the cluster prefix, fed by one range read and
// then by a prefix watch (spec/dcs-layout.md §4 "Watch/cache"). Entries are
// only replaced by a newer mod_revision; deletions stay as tombstones so a
// late event can not resurrect a key.

// entry is one cached key; deleted marks a tombstone.
type entry struct {
	value   []byte
	modRev  int64
	lease   int64
	deleted bool
}

// relevantKeys are the keys whose changes wake the HA loop (dcs.Store
// Changes).
var relevantKeys = map[string]bool{
	dcs.KeyLeader:     true,
	dcs.KeyFailover:   true,
	dcs.KeyConfig:     true,
	dcs.KeySync:       true,
	dcs.KeyInitialize: true,
}

var errStale = errors.New("etcd: stale response from a lagging member")

// checkHeaderLocked rejects a response from a member that is behind what this
// Store already saw: a raft term or a revision going backwards within the
// same etcd cluster. s.mu must be held.
func (s *Store) checkHeaderLocked(h *pb.ResponseHeader, isSnapshot bool) error {
	if h == nil {
		return nil
	}
	if s.clusterID != 0 && h.ClusterId != s.clusterID {
		s.log.Warn("etcd cluster id changed, resetting the stale-read guard",
			"old", fmt.Sprintf("%x", s.clusterID), "new", fmt.Sprintf("%x", h.ClusterId))
		s.term, s.rev = 0, 0
	}
	s.clusterID = h.ClusterId
	if h.RaftTerm < s.term {
		return fmt.Errorf("%w: member %x raft term %d < %d", errStale, h.MemberId, h.RaftTerm, s.term)
	}
	if isSnapshot && h.Revision < s.rev {
		return fmt.Errorf("%w: member %x revision %d < %d", errStale, h.MemberId, h.Revision, s.rev)
	}
	s.term = h.RaftTerm
	if h.Revision > s.rev {
		s.rev = h.Revision
	}
	return nil
}

// rel returns key relative to the cluster prefix, or false.
func (s *Store) rel(key []byte) (string, bool) {
	k := string(key)
	if !strings.HasPrefix(k, s.prefix) {
		return "", false
	}
	return k[len(s.prefix):], true
}

// setLocked stores e under key if it is newer than what the cache holds and
// reports whether a relevant value changed. s.mu must be held.
func (s *Store) setLocked(key string, e entry) bool {
	old, ok := s.entries[key]
	if ok && old.modRev >= e.modRev {
		return false
	}
	if !ok && e.modRev <= s.floor && !e.deleted {
		// Older than the snapshot that showed the key absent.
		return false
	}
	s.entries[key] = e
	if !relevantKeys[key] {
		return false
	}
	wasPresent := ok && !old.deleted
	isPresent := !e.deleted
	if wasPresent != isPresent {
		return true
	}
	return isPresent && !bytes.Equal(old.value, e.value)
}

// resetLocked replaces the cache with a range response; entries written
// after the snapshot's revision (our own writes) are kept. It reports whether
// a relevant value changed. s.mu must be held.
func (s *Store) resetLocked(resp *clientv3.GetResponse) (bool, error) {
	if err := s.checkHeaderLocked(resp.Header, true); err != nil {
		return false, err
	}
	rev := resp.Header.Revision
	next := make(map[string]entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k, ok := s.rel(kv.Key)
		if !ok {
			continue
		}
		next[k] = entry{value: kv.Value, modRev: kv.ModRevision, lease: kv.Lease}
	}
	for k, e := range s.entries {
		if e.modRev > rev {
			next[k] = e
		}
	}
	changed := false
	for k := range relevantKeys {
		o, ok1 := s.entries[k]
		n, ok2 := next[k]
		p1, p2 := ok1 && !o.deleted, ok2 && !n.deleted
		if p1 != p2 || (p1 && !bytes.Equal(o.value, n.value)) {
			changed = true
		}
	}
	s.entries = next
	if rev > s.floor {
		s.floor = rev
	}
	return changed, nil
}

// applyEventsLocked applies a watch response. s.mu must be held.
func (s *Store) applyEventsLocked(wr *clientv3.WatchResponse) (bool, error) {
	if err := s.checkHeaderLocked(&wr.Header, false); err != nil {
		return false, err
	}
	changed := false
	for _, ev := range wr.Events {
		k, ok := s.rel(ev.Kv.Key)
		if !ok || ev.Kv.ModRevision <= s.floor {
			continue
		}
		e := entry{value: ev.Kv.Value, modRev: ev.Kv.ModRevision, lease: ev.Kv.Lease}
		if ev.Type == mvccpb.DELETE {
			e = entry{modRev: ev.Kv.ModRevision, deleted: true}
		}
		if s.setLocked(k, e) {
			changed = true
		}
	}
	return changed, nil
}

// snapshotLocked builds a Cluster from the cache. s.mu must be held.
func (s *Store) snapshotLocked() *dcs.Cluster {
	keys := make([]string, 0, len(s.entries))
	for k, e := range s.entries {
		if !e.deleted {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	entries := make([]dcs.Entry, 0, len(keys))
	for _, k := range keys {
		e := s.entries[k]
		entries = append(entries, dcs.Entry{
			Key:     k,
			Value:   bytes.Clone(e.value),
			Version: version(e.modRev),
			Session: session(e.lease),
		})
	}
	return dcs.BuildCluster(entries)
}

func version(rev int64) dcs.Version {
	if rev == 0 {
		return ""
	}
	return dcs.Version(strconv.FormatInt(rev, 10))
}

func session(lease int64) string {
	if lease == 0 {
		return ""
	}
	return strconv.FormatInt(lease, 16)
}

func parseVersion(v dcs.Version) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: version %q is not an etcd revision", dcs.ErrConflict, v)
	}
	return n, nil
}

// isLive reports whether the cache is fed by an established watch over a
// working connection, so that Cluster may be served from it.
func (s *Store) isLive() bool {
	s.mu.Lock()
	live := s.live
	s.mu.Unlock()
	if !live {
		return false
	}
	// Only a connection that is up right now vouches for the watch: while
	// the client reconnects (Connecting, TransientFailure) the watch may
	// be silently behind.
	return s.client.ActiveConnection().GetState() == connectivity.Ready
}

// syncCache waits until the cache holds every change the watched etcd
// member had applied when the call started: it asks for a progress
// notification on the existing watch stream (no range request, no raft
// round) and waits for it. It reports false when no notification came
// within the wait (the caller then reads the prefix).
func (s *Store) syncCache(ctx context.Context) bool {
	s.mu.Lock()
	ch := s.progress
	s.mu.Unlock()
	wait := s.cfg.SyncWait
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	if wait <= 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), wait)
	defer cancel()
	for {
		if err := s.client.RequestProgress(ctx); err != nil {
			return false
		}
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		case <-s.clock.After(progressResend):
		}
	}
}

// progressResend is how long syncCache waits for a progress notification
// before it asks again. etcd answers a progress request only while every
// watcher on the stream is synced and the member's revision has reached
// the watch's start; otherwise it drops the request without a reply (etcd
// 3.6 keeps no deferred request). A member a few milliseconds behind the
// write our watch started after, or a watcher being caught up, would
// otherwise cost the whole SyncWait and a range read.
const progressResend = 50 * time.Millisecond

// reload does one range read of the prefix and resets the cache from it.
func (s *Store) reload(ctx context.Context) (int64, error) {
	// etcd hands a write's event to watchers just before the write's
	// transaction ends, so a range read sent right after that event can
	// still show the previous revision on a healthy member. A read behind
	// by that much is retried briefly before the member counts as lagging.
	for attempt := 1; ; attempt++ {
		rev, err := s.reloadOnce(ctx)
		if err == nil || !errors.Is(err, errStale) || attempt == staleRetries {
			return rev, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-s.clock.After(staleRetryDelay):
		}
	}
}

// staleRetries and staleRetryDelay bound reload's retries of a read that
// is behind a revision already seen: 5 x 20 ms covers the few
// milliseconds between an event and the end of its write transaction,
// even on a loaded machine, while a really lagging member still fails
// within 0.1 s.
const (
	staleRetries    = 5
	staleRetryDelay = 20 * time.Millisecond
)

func (s *Store) reloadOnce(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	changed, err := s.resetLocked(resp)
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if changed {
		s.notify()
	}
	return resp.Header.Revision, nil
}

// run keeps the cache fed until the Store closes: a watch from rev, and a
// fresh range read whenever the watch breaks (compaction, lost leader,
// stale member, closed stream).
func (s *Store) run(rev int64) {
	defer s.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		err := s.watch(rev)
		s.mu.Lock()
		s.live = false
		s.mu.Unlock()
		if s.ctx.Err() != nil {
			return
		}
		s.log.Info("etcd watch ended, re-reading the cluster", "error", err)
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-s.clock.After(backoff):
			}
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
			var rerr error
			rev, rerr = s.reload(ctx)
			cancel()
			if rerr == nil {
				backoff = 50 * time.Millisecond
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("etcd cluster read failed", "error", rerr)
			backoff = min(2*backoff, time.Second)
		}
	}
}

func (s *Store) watch(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()
	// The watch starts at the snapshot's revision, not the one after: etcd
	// answers a progress request only once the member's revision has
	// reached the watch's start, so a watch from rev+1 would get no
	// progress notification (and every synced read would wait out SyncWait
	// and read the prefix) until somebody wrote to etcd. The events of rev
	// itself are in the snapshot already; applyEventsLocked skips them.
	wch := s.client.Watch(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev),
		clientv3.WithCreatedNotify(), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.Canceled {
			return errors.New("etcd: watch canceled")
		}
		s.mu.Lock()
		if wr.Created {
			s.live = true
		}
		changed, err := s.applyEventsLocked(&wr)
		if err == nil && wr.IsProgressNotify() {
			// Every event up to this revision has been delivered on the
			// stream before the notification.
			close(s.progress)
			s.progress = make(chan struct{})
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if changed {
			s.notify()
		}
	}
	return errors.New("etcd: watch channel closed")
}

// notify wakes the Changes receiver without blocking.
func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}
