package consul

import (
	"context"
	"time"
)

// watchGrace is added to a blocking query's wait (plus Consul's 1/16
// jitter) before its answer counts as overdue and the cache as stale.
const watchGrace = 2 * time.Second

// watch keeps the cache current with blocking queries on the cluster prefix
// (spec/dcs-layout.md §6, "Watch"): each query returns as soon as anything
// under the prefix changes, or after WatchWait with nothing new. It runs in
// its own goroutine until ctx is cancelled. It only reads: the session is
// never renewed here (dcs.Store's liveness rule).
func (s *Store) watch(ctx context.Context) {
	var index uint64
	restart := false // the previous query failed
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// Bound each query: an agent that vanished without closing the
		// connection must not hang the watcher for good.
		qctx, cancel := context.WithTimeout(ctx, s.cfg.WatchWait+s.cfg.WatchWait/16+watchGrace)
		q := s.readOptions(qctx)
		q.WaitIndex = index
		q.WaitTime = s.cfg.WatchWait
		s.mu.Lock()
		seq := s.dirtySeq
		s.mu.Unlock()
		pairs, meta, err := s.client.KV().List(s.prefix, q)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			wasOK := s.watchOK
			s.watchOK = false
			s.mu.Unlock()
			if wasOK {
				s.log.Warn("consul watch failed; reads go to the agent until it recovers", "err", err)
			}
			// Start over with a plain read: the agent may come back with
			// other state (and lower indexes) than it had.
			index, restart = 0, true
			if !s.sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// Consul: an index that goes backwards means the servers lost their
		// state (or reaped tombstones); take the read as it is rather than
		// wait for the index to catch up. 0 is never valid to wait on.
		reset := restart || meta.LastIndex < index
		restart = false
		s.install(pairs, meta.LastIndex, seq, reset, false)
		s.mu.Lock()
		if !s.watchOK {
			s.log.Info("consul watch recovered")
		}
		s.watchOK = true
		s.watchUntil = s.cfg.Clock.Now().Add(s.cfg.WatchWait + s.cfg.WatchWait/16 + watchGrace)
		s.mu.Unlock()
		index = max(meta.LastIndex, 1)
		if reset {
			// Do not spin if the index keeps going backwards.
			if !s.sleep(ctx, backoff) {
				return
			}
		}
	}
}

// sleep waits d on the Store's clock; false when ctx ended first.
func (s *Store) sleep(ctx context.Context, d time.Duration) bool {
	t := s.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
