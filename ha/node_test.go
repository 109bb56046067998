package ha_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/memory"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/internal/sim"
)

type running struct {
	node   *ha.Node
	cancel context.CancelFunc
	done   chan error
}

// TestNodeRun runs three ha.Node loops (Run, real goroutines, background
// operations) over dcs/memory inside a synctest bubble, and checks the
// timing rules of ARCHITECTURE.md: a clean shutdown of the leader and a
// switchover are completed by a watch wake-up within 1 s, without waiting
// for loop_wait (spec/ha-loop.md §1 watch, §5.1-5.3, §15).
func TestNodeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w := sim.New(sim.Options{Seed: 1, Nodes: 3, NoFaults: true, TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second})
		w.Concurrent()
		discard := slog.New(slog.DiscardHandler)
		srv := memory.NewServer(memory.ServerConfig{Clock: clock.RealClock{}, Logger: discard})
		srvDone := make(chan struct{})
		go func() { _ = srv.Run(ctx); close(srvDone) }()
		ctl := srv.Client(memory.ClientConfig{Scope: "batman", Logger: discard})
		_, err := ctl.SetConfig(ctx, []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10}`), "")
		require.NoError(t, err)

		nodes := map[string]*running{}
		start := func(n *sim.Node) {
			store := srv.Client(memory.ClientConfig{Scope: "batman", Name: n.Name, TTL: 30 * time.Second, Logger: discard})
			node, err := ha.New(ha.Options{
				Config: w.Config(n), Store: store, Postgres: n.PG, Peers: w.Peers(n),
				Clock: clock.RealClock{}, APIURL: "sim://" + n.Name, ConnURL: "postgres://" + n.Name,
			})
			require.NoError(t, err)
			nctx, ncancel := context.WithCancel(ctx)
			r := &running{node: node, cancel: ncancel, done: make(chan error, 1)}
			go func() { r.done <- node.Run(nctx) }()
			nodes[n.Name] = r
		}
		for _, n := range w.Nodes {
			start(n)
		}
		replDone := make(chan struct{})
		go func() {
			defer close(replDone)
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
					w.Replicate()
				}
			}
		}()

		leaderOf := func() string {
			c, err := ctl.Cluster(ctx)
			require.NoError(t, err)
			if c.Leader == nil {
				return ""
			}
			return c.Leader.Name
		}
		time.Sleep(45 * time.Second)
		first := leaderOf()
		require.NotEmpty(t, first, "a leader after bootstrap")
		for _, n := range w.Nodes {
			pg := w.PGState(n)
			if n.Name == first {
				require.True(t, pg.Running && pg.Primary, "%s primary", n.Name)
				continue
			}
			require.True(t, pg.Running && !pg.Primary && pg.Streaming && pg.Upstream == first, "%s streams from %s: %+v", n.Name, first, pg)
		}
		require.Equal(t, "primary", nodes[first].node.Status().Role)
		hist := nodes[first].node.History()
		require.NotEmpty(t, hist, "decision log")
		require.Contains(t, hist[len(hist)-1].Inputs, "leader="+first)

		// Clean shutdown of the leader: Run returns after stopping
		// Postgres and releasing the key; a replica promotes at once.
		before := len(w.PromotionsCopy())
		t0 := time.Now()
		nodes[first].cancel()
		require.NoError(t, <-nodes[first].done)
		var second string
		for time.Since(t0) < 5*time.Second && len(w.PromotionsCopy()) == before {
			time.Sleep(10 * time.Millisecond)
		}
		ps := w.PromotionsCopy()
		require.Greater(t, len(ps), before, "promotion after clean shutdown")
		second = ps[before].Name
		shutdownToPromote := ps[before].At.Sub(t0)
		t.Logf("clean shutdown of %s -> %s promoted after %s", first, second, shutdownToPromote)
		require.LessOrEqual(t, shutdownToPromote, time.Second)

		// Switchover to the remaining replica, driven by watch wake-ups.
		time.Sleep(15 * time.Second)
		var cand string
		for _, n := range w.Nodes {
			if n.Name != first && n.Name != second {
				cand = n.Name
			}
		}
		before = len(w.PromotionsCopy())
		t1 := time.Now()
		_, err = ctl.SetFailover(ctx, &dcs.Failover{Leader: second, Candidate: cand}, "")
		require.NoError(t, err)
		for time.Since(t1) < 5*time.Second && len(w.PromotionsCopy()) == before {
			time.Sleep(10 * time.Millisecond)
		}
		ps = w.PromotionsCopy()
		require.Greater(t, len(ps), before, "promotion after switchover request")
		require.Equal(t, cand, ps[before].Name)
		t.Logf("switchover %s -> %s took %s", second, cand, ps[before].At.Sub(t1))
		require.LessOrEqual(t, ps[before].At.Sub(t1), time.Second)
		time.Sleep(2 * time.Second)
		require.Equal(t, cand, leaderOf())

		for name, r := range nodes {
			if name != first {
				r.cancel()
				require.NoError(t, <-r.done)
			}
		}
		cancel()
		<-replDone
		<-srvDone
	})
}
