package ha_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/ha/internal/sim"
)

func quantiles(ds []time.Duration) string {
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	within := 0
	for _, d := range ds {
		if d <= time.Second {
			within++
		}
	}
	return fmt.Sprintf("n=%d min=%s p50=%s p90=%s p99=%s max=%s within 1s=%.1f%%", len(ds), ds[0], q(0.5), q(0.9), q(0.99), ds[len(ds)-1], 100*float64(within)/float64(len(ds)))
}

// TestTiming measures, in the simulation, the time from a leader crash to
// the promotion (total and after the key expired), from a clean shutdown
// and from a switchover request (ARCHITECTURE.md "Timing"; issue 5
// acceptance: within 1 s of expiry / shutdown / request in 99%).
func TestTiming(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 100
	}
	timings := []struct {
		name        string
		ttl, lw, rt time.Duration
	}{
		{"ttl30-lw10-rt10", 30 * time.Second, 10 * time.Second, 10 * time.Second},
		{"ttl5-lw1-rt2", 5 * time.Second, time.Second, 2 * time.Second},
	}
	for _, tc := range timings {
		for _, sync := range []string{"off", "on"} {
			t.Run(tc.name+"-sync-"+sync, func(t *testing.T) {
				var crashTotal, crashExpiry, shutdown, switchover []time.Duration
				for i := range runs {
					opt := sim.Options{Seed: uint64(i + 1), Nodes: 3, TTL: tc.ttl, LoopWait: tc.lw, RetryTimeout: tc.rt, SyncMode: sync}
					c := sim.Measure(opt, "crash")
					require.GreaterOrEqual(t, c.SinceFault, time.Duration(0), "crash seed %d: no promotion", i+1)
					crashTotal = append(crashTotal, c.SinceFault)
					crashExpiry = append(crashExpiry, c.SinceExpiry)
					s := sim.Measure(opt, "shutdown")
					require.GreaterOrEqual(t, s.SinceFault, time.Duration(0), "shutdown seed %d: no promotion", i+1)
					shutdown = append(shutdown, s.SinceFault)
					w := sim.Measure(opt, "switchover")
					require.GreaterOrEqual(t, w.SinceFault, time.Duration(0), "switchover seed %d: no promotion", i+1)
					switchover = append(switchover, w.SinceFault)
				}
				t.Logf("crash -> promotion:           %s", quantiles(crashTotal))
				t.Logf("key expiry -> promotion:      %s", quantiles(crashExpiry))
				t.Logf("clean shutdown -> promotion:  %s", quantiles(shutdown))
				t.Logf("switchover request -> promote: %s", quantiles(switchover))
				p99 := func(ds []time.Duration) time.Duration { return ds[min(len(ds)-1, len(ds)*99/100)] }
				require.LessOrEqual(t, p99(crashExpiry), time.Second)
				require.LessOrEqual(t, p99(shutdown), time.Second)
				require.LessOrEqual(t, p99(switchover), time.Second)
			})
		}
	}
}
