package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/api/internal/httpbench"
)

// benchRequests is the least number of requests a throughput benchmark
// makes whatever b.N is, so that `make bench` (-benchtime 1x) prints
// meaningful rates and percentiles. ns/op is reported per request.
const benchRequests = 20000

// benchClients is the number of concurrent clients (issue 6).
const benchClients = 16

// BenchmarkPrimary16Clients measures GET /primary with 16 concurrent
// clients that open a new TCP connection per request, write the raw request
// and read until the server closes, as HAProxy's checks do (issue 6: goal
// >= 20,000 req/s and p99 < 5 ms on 2 cores). The server is the real
// handler on an httptest server. Reports req/s, p50, p99 and the CPU time
// of the whole process (client and server) per request. api/BENCHMARKS.md
// holds the figures and the floors below.
func BenchmarkPrimary16Clients(b *testing.B) {
	srv := startBench(b, primaryHandler(b, false))
	benchRaw(b, srv.Listener.Addr().String())
}

// BenchmarkPrimary16ClientsNetHTTP is the same load made with net/http
// clients without keep-alive: the client's Transport (dial goroutine, read
// and write loops per connection) costs about as much as the server.
func BenchmarkPrimary16ClientsNetHTTP(b *testing.B) {
	benchNetHTTP(b, startBench(b, primaryHandler(b, false)), false)
}

// BenchmarkPrimary16ClientsKeepAlive uses persistent connections
// (Config.KeepAlive and net/http keep-alive clients), for comparison: it
// takes TCP connection setup and teardown out of the figure.
func BenchmarkPrimary16ClientsKeepAlive(b *testing.B) {
	benchNetHTTP(b, startBench(b, primaryHandler(b, true)), true)
}

// BenchmarkFloorNetHTTP16Clients is BenchmarkPrimary16Clients against a
// handler that writes a fixed 200 and does nothing else: what net/http and
// the kernel cost without any work of ours.
func BenchmarkFloorNetHTTP16Clients(b *testing.B) {
	srv := startBench(b, httpbench.FixedHandler{})
	benchRaw(b, srv.Listener.Addr().String())
}

// BenchmarkFloorRawTCP16Clients is the same against a server without
// net/http (accept, read the request head, write a fixed 200, close): what
// Go's network poller and the kernel's TCP connection setup and teardown
// cost on their own.
func BenchmarkFloorRawTCP16Clients(b *testing.B) {
	lc := net.ListenConfig{KeepAlive: -1} // no per-connection setsockopt, as Serve
	ln, err := lc.Listen(b.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	pprof.Do(ctx, pprof.Labels("side", "server"), func(ctx context.Context) {
		go func() { done <- httpbench.ServeFixed(ctx, ln) }()
	})
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	benchRaw(b, ln.Addr().String())
}

// primaryHandler is the handler of a running primary holding the leader
// key.
func primaryHandler(b *testing.B, keepAlive bool) http.Handler {
	st := &fakeStatus{}
	ps := primaryStatus()
	ps.LeaderUntil = time.Now().Add(time.Hour)
	ps.DCSLastSeen = time.Now()
	st.set(ps)
	h, err := NewHandler(Config{Status: st, KeepAlive: keepAlive})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// startBench starts an httptest server with the listener and http.Server
// settings of Serve. Its goroutines carry the pprof label side=server
// (benchmark goroutines carry side=client), so a CPU profile separates the
// two: go tool pprof -tagfocus side=server.
func startBench(b *testing.B, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	ln, err := listenTCP(b.Context(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv.Listener = ln
	srv.Config = newServer(h)
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) { srv.Start() })
	b.Cleanup(srv.Close)
	return srv
}

// benchRaw runs the raw connection-per-request client.
func benchRaw(b *testing.B, addr string) {
	n := max(b.N, benchRequests)
	var res httpbench.Result
	var err error
	b.ResetTimer()
	cpu0 := cpuTime()
	pprof.Do(b.Context(), pprof.Labels("side", "client"), func(ctx context.Context) {
		res, err = httpbench.Run(ctx, httpbench.Config{Addr: addr, Request: httpbench.GetRequest("/primary"),
			Workers: benchClients, Requests: n})
	})
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Errorf("%d of %d requests failed, first: %v", res.Failed, n, res.FirstError)
	}
	report(b, res, cpu)
}

// benchNetHTTP runs net/http clients, with or without keep-alive.
func benchNetHTTP(b *testing.B, srv *httptest.Server, keepAlive bool) {
	n := int64(max(b.N, benchRequests))
	var next atomic.Int64
	lat := make([][]time.Duration, benchClients)
	var fails atomic.Int64
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	pprof.Do(b.Context(), pprof.Labels("side", "client"), func(context.Context) {
		var wg sync.WaitGroup
		for i := range benchClients {
			wg.Go(func() {
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
				defer c.CloseIdleConnections()
				for next.Add(1) <= n {
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
						continue
					}
					lat[i] = append(lat[i], time.Since(t0))
				}
			})
		}
		wg.Wait()
	})
	res := httpbench.Result{Elapsed: time.Since(start), Failed: int(fails.Load()), Latencies: slices.Concat(lat...)}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(res.Latencies)
	res.OK = len(res.Latencies)
	if res.Failed > 0 {
		b.Errorf("%d of %d requests failed", res.Failed, n)
	}
	report(b, res, cpu)
}

// report prints the figures of a run as benchmark metrics.
func report(b *testing.B, res httpbench.Result, cpu time.Duration) {
	if res.OK == 0 {
		b.Fatal("no successful request")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(res.Elapsed.Nanoseconds())/float64(res.OK+res.Failed), "ns/op")
	b.ReportMetric(res.Rate(), "req/s")
	b.ReportMetric(ms(res.Quantile(0.5)), "p50_ms")
	b.ReportMetric(ms(res.Quantile(0.99)), "p99_ms")
	b.ReportMetric(float64(res.Failed), "failed")
	// CPU time of the process (server and clients together) per request:
	// 2 cores divided by this is the throughput on an idle machine, and it
	// depends much less on other load than req/s does.
	b.ReportMetric(float64(cpu.Microseconds())/float64(res.OK), "cpu_us/req")
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
