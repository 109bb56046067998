package zookeeper

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// testTTL is the session timeout of the test stores: short, so expiry
// tests are quick, but 4 s so that go-zookeeper's read timeout (2/3 of it)
// does not fire spuriously on a loaded machine.
const testTTL = 4 * time.Second

// openStore opens a Store on hosts for scope and member name; it is closed
// when t ends.
func openStore(t testing.TB, hosts []string, scope, name string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Hosts: hosts, Scope: scope, Name: name, TTL: testTTL, RetryTimeout: 5 * time.Second,
		Logger: testutil.Logger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	st, err := Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func harness(hosts func() []string) dcstest.Harness {
	return dcstest.Harness{
		New: func(t *testing.T, scope, name string) dcs.Store {
			return openStore(t, hosts(), scope, name)
		},
		TTL: testTTL,
	}
}

// TestConformance runs the dcs.Store conformance suite against a real
// standalone ZooKeeper (spec/dcs-layout.md §1–3, §7, §10).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	zk := testutil.StartZooKeeper(t)
	dcstest.Run(t, harness(func() []string { return []string{zk.Addr()} }))
}

// BenchmarkWakeLatency measures how soon a member waiting on Changes wakes
// after another client's write on a real ZooKeeper: the data watch fires
// at once (goal: well under 100 ms).
func BenchmarkWakeLatency(b *testing.B) {
	zk := testutil.StartZooKeeper(b)
	hosts := []string{zk.Addr()}
	dcstest.MeasureWake(b, openStore(b, hosts, "wake", "writer"), openStore(b, hosts, "wake", "waiter"))
}

// TestConformanceEnsemble runs the suite against a three-server ensemble
// and stops the ensemble's leader halfway through the run: the stores must
// move to the two servers left, keeping their sessions (spec/dcs-layout.md
// §7, §10).
func TestConformanceEnsemble(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three ZooKeeper servers")
	}
	t.Parallel()
	e := testutil.StartZooKeeperEnsemble(t)
	h := harness(e.Hosts)
	var opened atomic.Int64
	var stopped atomic.Bool
	newStore := h.New
	h.New = func(t *testing.T, scope, name string) dcs.Store {
		// The suite opens about 125 stores; stop a server at the 63rd.
		if opened.Add(1) == 63 && stopped.CompareAndSwap(false, true) {
			for _, s := range e.Servers {
				out, err := testutil.ZooKeeperCommand(s.Addr(), "srvr")
				if err == nil && strings.Contains(out, "Mode: leader") {
					t.Logf("stopping ZooKeeper server %d, the ensemble leader", s.ID)
					s.Stop()
					break
				}
			}
		}
		return newStore(t, scope, name)
	}
	dcstest.Run(t, h)
	require.True(t, stopped.Load(), "the suite opened fewer stores than expected; no server was stopped")
}
