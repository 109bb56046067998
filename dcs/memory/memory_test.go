package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/dcs/memory"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// epoch is the fake clocks' start; any fixed time will do.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const testTTL = 3 * time.Second

// runServer starts srv.Run until the test ends.
func runServer(t *testing.T, srv *memory.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, srv.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestConformance runs the dcs.Store conformance suite (dcstest, which
// cites spec/dcs-layout.md §1–3 and §10) on a fake clock, with Run
// delivering expiry notifications.
func TestConformance(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	srv := memory.NewServer(memory.ServerConfig{Clock: clk, Logger: testutil.Logger(t)})
	runServer(t, srv)
	dcstest.Run(t, dcstest.Harness{
		New: func(t *testing.T, scope, name string) dcs.Store {
			st := srv.Client(memory.ClientConfig{Scope: scope, Name: name, TTL: testTTL, Logger: testutil.Logger(t)})
			t.Cleanup(func() { require.NoError(t, st.Close()) })
			return st
		},
		TTL:     testTTL,
		Advance: clk.Step,
	})
}

// TestConformanceNoRun runs the suite without Run: ExpireLeases after each
// step is what a single-goroutine simulation does.
func TestConformanceNoRun(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	srv := memory.NewServer(memory.ServerConfig{Clock: clk, Logger: testutil.Logger(t)})
	dcstest.Run(t, dcstest.Harness{
		New: func(t *testing.T, scope, name string) dcs.Store {
			st := srv.Client(memory.ClientConfig{Scope: scope, Name: name, TTL: testTTL, Namespace: "/pg//"})
			t.Cleanup(func() { require.NoError(t, st.Close()) })
			return st
		},
		TTL:     testTTL,
		Advance: func(d time.Duration) { clk.Step(d); srv.ExpireLeases() },
	})
}

// TestConformanceRealClock runs the suite on the real clock, the way real
// backends run it (Harness.Advance nil: the suite sleeps and polls). It
// takes several seconds, so it is not part of the short tier; the
// fake-clock runs above check the same rules.
func TestConformanceRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time conformance run (several seconds); the fake-clock runs cover the same rules in -short")
	}
	srv := memory.NewServer(memory.ServerConfig{Logger: testutil.Logger(t)})
	runServer(t, srv)
	const ttl = time.Second
	dcstest.Run(t, dcstest.Harness{
		New: func(t *testing.T, scope, name string) dcs.Store {
			st := srv.Client(memory.ClientConfig{Scope: scope, Name: name, TTL: ttl})
			t.Cleanup(func() { require.NoError(t, st.Close()) })
			return st
		},
		TTL:         ttl,
		ExpiryGrace: 300 * time.Millisecond,
	})
}
