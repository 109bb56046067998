package ha_test

import (
	"flag"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/ha/internal/sim"
)

var (
	simRuns  = flag.Int("simulate.runs", 0, "number of random schedules (default 10000)")
	simSeed  = flag.Uint64("simulate.seed", 0, "replay one seed (prints its script)")
	simSteps = flag.Int("simulate.steps", 150, "random steps per schedule")
	simFirst = flag.Uint64("simulate.first", 1, "first seed of the run")
)

// simOptions derives a run's shape from its seed, so a seed alone replays
// it: node count, timings (a third at ttl 5/loop_wait 1/retry_timeout 2)
// and synchronous mode.
func simOptions(seed uint64) sim.Options {
	o := sim.Options{Seed: seed, Nodes: 2 + int(seed%3), Steps: *simSteps}
	switch (seed / 3) % 3 {
	case 0:
		o.TTL, o.LoopWait, o.RetryTimeout = 30*time.Second, 10*time.Second, 10*time.Second
	case 1:
		o.TTL, o.LoopWait, o.RetryTimeout = 5*time.Second, time.Second, 2*time.Second
	default:
		o.TTL, o.LoopWait, o.RetryTimeout = 10*time.Second, 2*time.Second, 3*time.Second
	}
	o.SyncMode = []string{"off", "on", "strict", "quorum"}[(seed/9)%4]
	if seed%5 == 0 {
		o.Tags = map[string]map[string]any{"n2": {"nofailover": true}}
	}
	if seed%7 == 0 {
		o.Tags = map[string]map[string]any{"n1": {"failover_priority": 2}, "n3": {"failover_priority": 0}}
	}
	return o
}

// TestSimulate runs random fault schedules and checks the invariants of
// spec/ha-loop.md after every tick (see package sim).
func TestSimulate(t *testing.T) {
	if *simSeed != 0 {
		opt := simOptions(*simSeed)
		r := sim.Run(opt)
		for _, s := range r.Script {
			t.Log(s)
		}
		require.False(t, r.Failed(), r.Report(opt))
		return
	}
	runs := *simRuns
	if runs == 0 {
		runs = 10000
		// The race detector makes each schedule about 20 times slower and
		// adds nothing to a single-goroutine simulation beyond the first
		// few hundred runs; the plain -short tier runs all 10,000.
		if raceEnabled {
			runs = 500
		}
	}
	start := time.Now()
	var next atomic.Uint64
	var failed atomic.Pointer[string]
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if int(i) > runs || failed.Load() != nil {
					return
				}
				i += *simFirst - 1
				opt := simOptions(i)
				if r := sim.Run(opt); r.Failed() {
					rep := r.Report(opt)
					failed.CompareAndSwap(nil, &rep)
					return
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(*f)
	}
	t.Logf("%d schedules in %s", runs, time.Since(start))
}
