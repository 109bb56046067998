package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPrimary16Clients measures GET /primary with 16 concurrent
// clients that open a new connection per request, as HAProxy checks do
// (issue 6: goal >= 20,000 req/s and p99 < 5 ms on 2 cores). Run with
// -benchtime=Nx; reports req/s, p50 and p99.
func BenchmarkPrimary16Clients(b *testing.B) { benchPrimary(b, false) }

// BenchmarkPrimary16ClientsKeepAlive is the same with persistent
// connections (Config.KeepAlive), for comparison: it isolates the handler
// from TCP connection setup.
func BenchmarkPrimary16ClientsKeepAlive(b *testing.B) { benchPrimary(b, true) }

func benchPrimary(b *testing.B, keepAlive bool) {
	st := &fakeStatus{}
	ps := primaryStatus()
	ps.LeaderUntil = time.Now().Add(time.Hour)
	ps.DCSLastSeen = time.Now()
	st.set(ps)
	h, err := NewHandler(Config{Status: st, KeepAlive: keepAlive})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const clients = 16
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var fails atomic.Int64
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := c.Get(srv.URL + "/primary")
				if err != nil {
					fails.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fails.Add(1)
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no successful request")
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(fails.Load()), "failed")
	// CPU time (server and clients together) per request: 2 cores divided
	// by this is the throughput on an idle machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu_us/req")
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHealthHandler measures the handler alone (no network).
func BenchmarkHealthHandler(b *testing.B) {
	st := &fakeStatus{}
	ps := primaryStatus()
	ps.LeaderUntil = time.Now().Add(time.Hour)
	st.set(ps)
	h, err := NewHandler(Config{Status: st})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/primary", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}
