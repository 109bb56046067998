package dcstest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// wakeSamples is the least number of wake-ups MeasureWake times whatever
// b.N is, so that `make bench` (-benchtime 1x, b.N = 1) reports
// percentiles of a sample, not of one wake-up. Each costs the quiet wait
// before it (wakeQuiet) plus a write's round trip: 200 take about 11 s on
// a local server, and p99 is then the third slowest.
const wakeSamples = 200

// wakeQuiet is how long waiter's Changes must stay silent before a sample's
// write, so that a late event of the previous write is not timed as the
// wake-up of the next one.
const wakeQuiet = 50 * time.Millisecond

// MeasureWake is the speed half of the Changes contract, for a backend's
// benchmark: how soon a waiter wakes after another client's change
// (spec/dcs-layout.md §10.6; ARCHITECTURE.md "Timing": the loop wakes on
// DCS events instead of sleeping out loop_wait). The conformance suite
// only checks that the waiter wakes within Harness.WatchLatency; the
// latency target lives here, where a loaded machine cannot fail a test.
//
// It takes max(b.N, 200) samples. Each lets waiter's Changes go quiet,
// writes the failover key through writer (another client, with its own
// watch), and records the time from the write's start to the wake-up, so
// the write's round trip is included. It reports the number of samples
// (wakes), their mean as ns/op, and the median, 90th and 99th percentile
// and slowest wake-up as wake-p50-ms, wake-p90-ms, wake-p99-ms and
// wake-max-ms. A waiter not woken within 10 s fails b.
func MeasureWake(b *testing.B, writer, waiter dcs.Store) {
	b.Helper()
	measureWake(b, writer, waiter, wakeQuiet)
}

func measureWake(b *testing.B, writer, waiter dcs.Store, quiet time.Duration) {
	b.Helper()
	n := max(b.N, wakeSamples)
	b.ResetTimer()
	lat, err := wakeLatencies(b.Context(), writer, waiter, n, quiet)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	at := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(lat)), "wakes")
	b.ReportMetric(float64(sum)/float64(len(lat)), "ns/op")
	b.ReportMetric(at(0.5), "wake-p50-ms")
	b.ReportMetric(at(0.9), "wake-p90-ms")
	b.ReportMetric(at(0.99), "wake-p99-ms")
	b.ReportMetric(at(1), "wake-max-ms")
}

// wakeLatencies takes n samples of MeasureWake, each after quiet.
func wakeLatencies(ctx context.Context, writer, waiter dcs.Store, n int, quiet time.Duration) ([]time.Duration, error) {
	ch := waiter.Changes()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		Drain(ch, quiet)
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := writer.SetFailover(wctx, &dcs.Failover{Candidate: fmt.Sprintf("m%d", i)}, "")
		cancel()
		if err != nil {
			return nil, fmt.Errorf("sample %d: SetFailover: %w", i, err)
		}
		select {
		case <-ch:
			lat = append(lat, time.Since(start))
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("sample %d: Changes did not fire within 10s of another client's write", i)
		}
	}
	return lat, nil
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
