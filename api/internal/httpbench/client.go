package httpbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	// Addr is the server's "host:port".
	Addr string
	// Request is written as is on every new connection. It should ask the
	// server to close the connection after the answer (GetRequest does).
	Request []byte
	// Workers is the number of concurrent clients. Default 16.
	Workers int
	// Requests is the total number of requests over all workers.
	Requests int
	// WantStatus is the status code a successful answer carries. Default
	// 200.
	WantStatus int
}

// GetRequest returns a raw HTTP/1.1 GET of path that asks the server to
// close the connection after the answer.
func GetRequest(path string) []byte { return NewRequest("GET", path) }

// NewRequest returns a raw HTTP/1.1 request without a body (GET, HEAD,
// OPTIONS) that asks the server to close the connection after the answer.
func NewRequest(method, path string) []byte {
	return fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pgwarden-httpbench\r\nConnection: close\r\n\r\n", method, path)
}

// Result is the outcome of a run.
type Result struct {
	// OK counts answers with the wanted status; Failed counts connection
	// errors, read errors and other status codes.
	OK, Failed int
	// FirstError is the first failure seen, nil when none.
	FirstError error
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
	// Latencies holds one sorted entry per successful request: from
	// before connect to the server's close.
	Latencies []time.Duration
}

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0 < q <= 1) of the latencies, 0 when
// there are none.
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := min(int(float64(len(r.Latencies))*q), len(r.Latencies)-1)
	return r.Latencies[i]
}

// Run makes cfg.Requests requests with cfg.Workers concurrent workers.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Addr == "" || len(cfg.Request) == 0 || cfg.Requests <= 0 {
		return Result{}, errors.New("httpbench: Addr, Request and a positive Requests are required")
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = 16
	}
	want := cfg.WantStatus
	if want == 0 {
		want = 200
	}
	prefix := fmt.Appendf(nil, " %d ", want)
	// TCP keep-alive probes are useless on a connection that lives for one
	// request; leaving them off saves four setsockopt calls per connect.
	d := net.Dialer{KeepAlive: -1}
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
		lat      = make([][]time.Duration, workers)
	)
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 16<<10)
			own := make([]time.Duration, 0, cfg.Requests/workers+1)
			for next.Add(1) <= int64(cfg.Requests) && ctx.Err() == nil {
				t0 := time.Now()
				resp, err := roundTrip(ctx, &d, cfg.Addr, cfg.Request, buf)
				switch {
				case err != nil:
					fail(err)
				case !statusIs(resp, prefix):
					fail(fmt.Errorf("httpbench: unexpected answer %q", firstLine(resp)))
				default:
					own = append(own, time.Since(t0))
				}
			}
			lat[w] = own
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start), Failed: int(failed.Load()), FirstError: firstErr}
	res.Latencies = slices.Concat(lat...)
	slices.Sort(res.Latencies)
	res.OK = len(res.Latencies)
	return res, ctx.Err()
}

// roundTrip makes one request on a new connection and returns the answer,
// read until the server closes, in buf.
func roundTrip(ctx context.Context, d *net.Dialer, addr string, req, buf []byte) ([]byte, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("httpbench: connect %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		return nil, fmt.Errorf("httpbench: write request: %w", err)
	}
	n := 0
	for {
		if n == len(buf) {
			return nil, fmt.Errorf("httpbench: answer longer than %d bytes", len(buf))
		}
		m, err := conn.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, fmt.Errorf("httpbench: read answer: %w", err)
		}
	}
}

// statusIs reports whether resp starts with an HTTP/1.x status line
// carrying the code in prefix (" 200 ").
func statusIs(resp, prefix []byte) bool {
	return bytes.HasPrefix(resp, []byte("HTTP/1.")) && len(resp) >= 8+len(prefix) &&
		bytes.Equal(resp[8:8+len(prefix)], prefix)
}

func firstLine(resp []byte) []byte {
	if i := bytes.IndexByte(resp, '\n'); i >= 0 {
		return resp[:i]
	}
	return resp
}
