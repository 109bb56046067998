// Package dcstest is the conformance suite of dcs.Store: every backend
// (dcs/memory, etcd, ZooKeeper, Consul, Kubernetes) must pass the same
// tests, which check the contract documented on dcs.Store and the
// semantics of spec/dcs-layout.md §1–3 and §10.
//
// Usage, in a backend's tests:
//
//  1. Start (or reach) one test DCS for the whole run.
//  2. Fill a Harness: New opens a new client of that DCS for a cluster
//     scope and member name, TTL is the lease duration the clients use, and
//     Advance steps the backend's fake clock (nil for real time).
//  3. Call Run(t, h). Each subtest uses its own scope and fresh clients, so
//     subtests do not depend on each other and a failure names one rule.
//
// The suite assumes nothing about a backend beyond the dcs.Store contract:
// no key layout, no version format, no session format, no synchronous
// watch delivery.
package dcstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// Harness connects the suite to a backend.
type Harness struct {
	// New returns a new client of the shared test DCS for the cluster
	// scope, acting as member name ("" opens a store without a member, as
	// ctl does). Every call returns a distinct client with its own lease or
	// session, whose TTL is TTL. The harness closes the store when t ends
	// (t.Cleanup) and must tolerate a store the suite already closed.
	// Scopes are short lowercase names of letters, digits and '-', unique
	// per subtest.
	New func(t *testing.T, scope, name string) dcs.Store
	// TTL is the lease duration the harness configured for its clients
	// (for example 3s for a fake clock; at least the backend's minimum for
	// real servers). Expiry subtests take about TTL+ExpiryGrace of
	// (possibly fake) time each.
	TTL time.Duration
	// Advance, when non-nil, moves the backend's fake clock forward by d;
	// the suite then never sleeps to let time pass. nil means the backend
	// runs on real time and the suite sleeps.
	Advance func(d time.Duration)
	// ExpiryGrace is how long after TTL an unrenewed key may still be
	// visible (default 1s): backends expire on their own timers (Consul
	// may take up to its session TTL of ttl/2 again).
	ExpiryGrace time.Duration
	// WatchLatency is how long after a change the suite waits for the
	// Changes channel to fire, and for a member's Cluster to show another
	// client's write or an expiry (default 1s, as spec/dcs-layout.md §10.6
	// expects a prompt wake-up). Backends that serve Cluster from a
	// watch-fed cache pass the suite in that mode.
	WatchLatency time.Duration
}

// Run runs the conformance suite against h as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.New, "dcstest: Harness.New is required")
	require.Positive(t, h.TTL, "dcstest: Harness.TTL is required")
	if h.ExpiryGrace <= 0 {
		h.ExpiryGrace = time.Second
	}
	if h.WatchLatency <= 0 {
		h.WatchLatency = time.Second
	}
	s := &suite{h: h, run: runID()}
	for _, c := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Initialize", s.testInitialize},
		{"Leader", s.testLeader},
		{"FencedWrites", s.testFencedWrites},
		{"Expiry", s.testExpiry},
		{"Members", s.testMembers},
		{"Config", s.testConfig},
		{"Failover", s.testFailover},
		{"Sync", s.testSync},
		{"History", s.testHistory},
		{"StatusAndFailsafe", s.testStatusAndFailsafe},
		{"Changes", s.testChanges},
		{"DeleteCluster", s.testDeleteCluster},
		{"BadData", s.testBadData},
		{"Context", s.testContext},
		{"Close", s.testClose},
	} {
		t.Run(c.name, c.fn)
	}
}

// suite holds the harness and what the subtests share.
type suite struct {
	h     Harness
	run   string       // random per Run, so reruns against a kept DCS do not collide
	seq   atomic.Int64 // scopes handed out
	faked atomic.Int64 // fake time advanced so far, in nanoseconds
}

func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "dt" + hex.EncodeToString(b[:])
}

// scope returns a fresh cluster name.
func (s *suite) scope() string {
	return fmt.Sprintf("%s-%d", s.run, s.seq.Add(1))
}

// cluster opens one store per name in a fresh scope.
func (s *suite) cluster(t *testing.T, names ...string) (string, map[string]dcs.Store) {
	scope := s.scope()
	stores := make(map[string]dcs.Store, len(names))
	for _, n := range names {
		stores[n] = s.h.New(t, scope, n)
	}
	return scope, stores
}

// now is the suite's view of the backend's time: the wall clock, or a
// fixed origin plus everything advanced so far.
func (s *suite) now() time.Time {
	if s.h.Advance != nil {
		return time.Unix(0, 0).Add(time.Duration(s.faked.Load()))
	}
	return time.Now()
}

// waitUntil lets the backend's time reach at.
func (s *suite) waitUntil(at time.Time) {
	d := at.Sub(s.now())
	if d <= 0 {
		return
	}
	if s.h.Advance != nil {
		s.faked.Add(int64(d))
		s.h.Advance(d)
		return
	}
	time.Sleep(d)
}

// wait lets d of backend time pass.
func (s *suite) wait(d time.Duration) { s.waitUntil(s.now().Add(d)) }

// parallel marks t parallel when the backend runs on real time, so slow
// expiry subtests overlap; with a shared fake clock they must not.
func (s *suite) parallel(t *testing.T) {
	if s.h.Advance == nil {
		t.Parallel()
	}
}

// ctx returns a context for one call: the dcs.Store contract says every
// call returns by its deadline.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// read returns a snapshot through st. Use it where the contract says the
// snapshot is current: for the reader's own writes, and for stores without
// a member name, which read linearizably (store.go Cluster).
func read(t *testing.T, st dcs.Store) *dcs.Cluster {
	t.Helper()
	c, err := st.Cluster(ctx(t))
	require.NoError(t, err, "Cluster")
	require.NotNil(t, c, "Cluster returned nil without error")
	return c
}

// see reads through st until check passes on the snapshot, and returns
// that snapshot. A member's store may serve Cluster from a watch-fed
// cache, where another client's write, or a key's expiry, shows up only
// once the watch delivered it (store.go Cluster: the same latency as
// Changes). So a member's read that must see such a change retries for up
// to the watch latency; if check never passes, its complaints about the
// last snapshot fail t.
func (s *suite) see(t *testing.T, st dcs.Store, check func(t require.TestingT, c *dcs.Cluster)) *dcs.Cluster {
	t.Helper()
	var seen *dcs.Cluster
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		cctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := st.Cluster(cctx)
		require.NoError(ct, err, "Cluster")
		require.NotNil(ct, c, "Cluster returned nil without error")
		check(ct, c)
		seen = c
	}, s.h.WatchLatency, 10*time.Millisecond, "a member's read must show the change within the watch latency %s", s.h.WatchLatency)
	return seen
}

// leaderName returns the holder of the leader key, or "".
func leaderName(c *dcs.Cluster) string {
	if c.Leader == nil {
		return ""
	}
	return c.Leader.Name
}

// member returns a member value to publish for name.
func member(name string, lsn dcs.LSN) *dcs.Member {
	tl := 3
	return &dcs.Member{
		Name:           name,
		ConnURL:        "postgres://127.0.0.1:5432/postgres",
		APIURL:         "http://127.0.0.1:8008/patroni",
		State:          "running",
		Role:           "replica",
		PatroniVersion: "4.1.4",
		XLogLocation:   &lsn,
		Timeline:       &tl,
	}
}

// settle drains the Changes channel until it stays quiet for a while, so
// that later checks see only the wake-ups of later changes (watch events
// of real backends arrive asynchronously).
func (s *suite) settle(ch <-chan struct{}) {
	quiet := 300 * time.Millisecond
	if s.h.Advance != nil {
		quiet = 20 * time.Millisecond
	}
	Drain(ch, quiet)
}

// requireWake fails unless ch fires within the watch latency.
func (s *suite) requireWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(s.h.WatchLatency):
		t.Fatalf("Changes did not fire within %s after %s", s.h.WatchLatency, what)
	}
}

// requireNoWake fails if ch fires within a short window.
func (s *suite) requireNoWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	window := s.h.WatchLatency / 2
	if s.h.Advance != nil {
		window = 50 * time.Millisecond
	}
	select {
	case <-ch:
		t.Fatalf("Changes fired after %s, which must not wake the loop", what)
	case <-time.After(window):
	}
}
