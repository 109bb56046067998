// Command benchserver serves the REST API handler with a fake primary status,
// or a trivial stand-in, so an external client (wrk, or this program's own
// load mode) can measure throughput in a separate process. See
// api/BENCHMARKS.md for how the figures there were taken.
//
//	benchserver -mode api     -listen 127.0.0.1:18008   # the real handler via api.Serve
//	benchserver -mode trivial -listen 127.0.0.1:18009   # net/http, fixed 200, no handler work
//	benchserver -mode raw     -listen 127.0.0.1:18010   # accept, read, fixed 200, close: no net/http
//	benchserver -mode load -addr 127.0.0.1:18008 -c 16 -n 100000 -path /primary [-method OPTIONS]
//
// The server modes run until SIGINT or SIGTERM and then print the process's
// CPU time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/api/internal/httpbench"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "api", "api, trivial, raw (servers) or load (client)")
	listen := flag.String("listen", "127.0.0.1:18008", "server modes: address to listen on")
	keepAlive := flag.Bool("keepalive", false, "api mode: keep connections open between requests (api.Config.KeepAlive)")
	addr := flag.String("addr", "127.0.0.1:18008", "load mode: server address")
	workers := flag.Int("c", 16, "load mode: concurrent connections")
	requests := flag.Int("n", 100000, "load mode: total requests")
	path := flag.String("path", "/primary", "load mode: request path")
	method := flag.String("method", "GET", "load mode: request method (GET, HEAD or OPTIONS)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *mode {
	case "api":
		err = serveAPI(ctx, *listen, *keepAlive)
	case "trivial":
		fmt.Printf("fixed 200 via net/http on %s\n", *listen)
		err = api.Serve(ctx, *listen, httpbench.FixedHandler{}, nil)
	case "raw":
		var ln net.Listener
		lc := net.ListenConfig{KeepAlive: -1} // no per-connection setsockopt, as Serve
		if ln, err = lc.Listen(ctx, "tcp", *listen); err == nil {
			fmt.Printf("fixed 200 without net/http on %s\n", *listen)
			err = httpbench.ServeFixed(ctx, ln)
		}
	case "load":
		return load(ctx, *addr, *method, *path, *workers, *requests)
	default:
		return fmt.Errorf("-mode %q: want api, trivial, raw or load", *mode)
	}
	fmt.Printf("cpu %.3f s\n", cpuTime().Seconds())
	return err
}

// serveAPI serves the real handler, republishing a fresh primary status
// every 10 s as the HA loop would every loop_wait.
func serveAPI(ctx context.Context, listen string, keepAlive bool) error {
	cur := &published{}
	publish := func() {
		st := primaryStatus(time.Now())
		cur.Store(&st)
	}
	publish()
	h, err := api.NewHandler(api.Config{Status: cur, KeepAlive: keepAlive, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				publish()
			}
		}
	}()
	fmt.Printf("api handler on %s (keepalive %t)\n", listen, keepAlive)
	return api.Serve(ctx, listen, h, nil)
}

// published holds the latest status, as the reference daemon does.
type published struct{ atomic.Pointer[api.Status] }

// Status implements api.StatusSource.
func (p *published) Status() api.Status { return *p.Load() }

// SharedStatus implements api.SharedStatusSource.
func (p *published) SharedStatus() *api.Status { return p.Load() }

// primaryStatus is the status of a running primary holding the leader key
// in a three-member cluster.
func primaryStatus(now time.Time) api.Status {
	tl := 1
	m := func(name, ip string) *dcs.Member {
		return &dcs.Member{Name: name, Role: "replica", State: "running", Timeline: &tl,
			ConnURL: "postgres://" + ip + ":5432/postgres", APIURL: "http://" + ip + ":8008/patroni"}
	}
	m1, m2, m3 := m("pg1", "10.0.0.1"), m("pg2", "10.0.0.2"), m("pg3", "10.0.0.3")
	m1.Role = "primary"
	global, _ := config.NewDynamic().Settings()
	return api.Status{Name: "pg1", Scope: "demo", State: "running", Role: "primary", QueryOK: true,
		PostmasterStartTime: now.Add(-time.Hour), ServerVersion: 150004, Timeline: 1,
		XLogLocation: 67108960, SystemID: "7268616322854375442",
		Cluster: &dcs.Cluster{Leader: &dcs.Leader{Name: "pg1", Member: m1}, Members: []*dcs.Member{m1, m2, m3},
			Status: dcs.Status{LastLSN: 67108960}},
		DCSLastSeen: now, Global: global, LeaderUntil: now.Add(30 * time.Second),
		LeaseRenewed: now, NextLoop: now.Add(10 * time.Second)}
}

// load runs the connection-per-request client and prints its figures and
// its own CPU time per request.
func load(ctx context.Context, addr, method, path string, workers, requests int) error {
	cpu0 := cpuTime()
	res, err := httpbench.Run(ctx, httpbench.Config{Addr: addr, Request: httpbench.NewRequest(method, path), Workers: workers, Requests: requests})
	cpu := cpuTime() - cpu0
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Printf("requests %d failed %d in %.2f s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, client cpu %.1f us/req\n",
		res.OK, res.Failed, res.Elapsed.Seconds(), res.Rate(),
		ms(res.Quantile(0.5)), ms(res.Quantile(0.99)), float64(cpu.Microseconds())/float64(max(res.OK, 1)))
	if res.FirstError != nil {
		fmt.Println("first error:", res.FirstError)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
