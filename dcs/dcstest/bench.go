package dcstest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// MeasureWake is the speed half of the Changes contract, for a backend's
// benchmark: how soon a waiter wakes after another client's change
// (spec/dcs-layout.md §10.6; ARCHITECTURE.md "Timing": the loop wakes on
// DCS events instead of sleeping out loop_wait). The conformance suite
// only checks that the waiter wakes within Harness.WatchLatency; the
// latency target lives here, where a loaded machine cannot fail a test.
//
// Each of b.N iterations lets waiter's Changes go quiet, writes the
// failover key through writer (another client, with its own watch), and
// records the time from the write's start to the wake-up, so the write's
// round trip is included. It reports the median, 90th percentile and
// slowest wake-up as wake-p50-ms, wake-p90-ms and wake-max-ms. A waiter not
// woken within 10 s fails b.
func MeasureWake(b *testing.B, writer, waiter dcs.Store) {
	b.Helper()
	ch := waiter.Changes()
	lat := make([]time.Duration, 0, b.N)
	for i := range b.N {
		b.StopTimer()
		Drain(ch, 50*time.Millisecond)
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		_, err := writer.SetFailover(ctx, &dcs.Failover{Candidate: fmt.Sprintf("m%d", i)}, "")
		cancel()
		if err != nil {
			b.Fatalf("iteration %d: SetFailover: %v", i, err)
		}
		select {
		case <-ch:
			lat = append(lat, time.Since(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("iteration %d: Changes did not fire within 10s of another client's write", i)
		}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "wake-p50-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "wake-p90-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "wake-max-ms")
}

// Drain empties a Changes channel until it stays quiet for quiet, so that
// a test then sees only the wake-ups of later changes (watch events of
// real backends arrive asynchronously).
func Drain(ch <-chan struct{}, quiet time.Duration) {
	for {
		select {
		case <-ch:
		case <-time.After(quiet):
			return
		}
	}
}
