package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/postgres"
)

// BenchmarkBootstrapInitdb measures Bootstrap with initdb up to a running
// primary.
func BenchmarkBootstrapInitdb(b *testing.B) {
	skipShort(b)
	for b.Loop() {
		b.StopTimer()
		n := newNode(b, "bench", nil)
		b.StartTimer()
		require.NoError(b, n.m.Bootstrap(b.Context()))
		b.StopTimer()
		require.NoError(b, n.m.Stop(b.Context(), postgres.StopOptions{Mode: postgres.StopImmediate}))
		b.StartTimer()
	}
}

// BenchmarkBasebackup100MB measures CreateReplica (pg_basebackup) of a
// primary holding about 100 MB.
func BenchmarkBasebackup100MB(b *testing.B) {
	skipShort(b)
	p := fastPrimary(b, "node1", nil)
	p.exec(b, "CREATE TABLE big AS SELECT g AS id, repeat('x', 900) AS pad FROM generate_series(1, 100000) g")
	p.exec(b, "CHECKPOINT")
	var size int64
	require.NoError(b, p.m.QueryRow(b.Context(), "SELECT pg_database_size('postgres')", nil, &size))
	for b.Loop() {
		b.StopTimer()
		n := newNode(b, "node2", nil)
		up := p.upstream()
		b.StartTimer()
		require.NoError(b, n.m.CreateReplica(b.Context(), &up))
	}
	b.ReportMetric(float64(size)/(1<<20), "db-MB")
}

// BenchmarkPromote measures Promote of a streaming replica until it is
// out of recovery.
func BenchmarkPromote(b *testing.B) {
	skipShort(b)
	p := fastPrimary(b, "node1", nil)
	for b.Loop() {
		b.StopTimer()
		r := cloneReplica(b, p, "node2", nil)
		b.StartTimer()
		start := time.Now()
		require.NoError(b, r.m.Promote(b.Context()))
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "promote-ms")
		b.StopTimer()
		require.NoError(b, r.m.Stop(b.Context(), postgres.StopOptions{Mode: postgres.StopImmediate}))
		b.StartTimer()
	}
}
