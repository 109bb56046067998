package dcstest

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs/memory"
)

// TestMeasureWakeAtOneX runs MeasureWake as `make bench` does, with
// -benchtime 1x: b.N is 1, and the percentiles still come from
// wakeSamples wake-ups.
func TestMeasureWakeAtOneX(t *testing.T) {
	old := flag.Lookup("test.benchtime").Value.String()
	require.NoError(t, flag.Set("test.benchtime", "1x"))
	t.Cleanup(func() { _ = flag.Set("test.benchtime", old) })

	srv := memory.NewServer(memory.ServerConfig{})
	writer := srv.Client(memory.ClientConfig{Scope: "wake", Name: "writer"})
	waiter := srv.Client(memory.ClientConfig{Scope: "wake", Name: "waiter"})
	res := testing.Benchmark(func(b *testing.B) { measureWake(b, writer, waiter, time.Millisecond) })

	require.Equal(t, 1, res.N)
	require.InDelta(t, wakeSamples, res.Extra["wakes"], 0)
	p50, p99, most := res.Extra["wake-p50-ms"], res.Extra["wake-p99-ms"], res.Extra["wake-max-ms"]
	require.Positive(t, p50)
	require.LessOrEqual(t, p50, p99)
	require.LessOrEqual(t, p99, most)
	require.Positive(t, res.Extra["ns/op"])
	t.Logf("memory store, %v wake-ups: p50 %.3f ms, p99 %.3f ms, max %.3f ms", res.Extra["wakes"], p50, p99, most)
}
