package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for the servers tests start (daemons, PostgreSQL, etcd, Consul,
// ZooKeeper, kube-apiserver) are picked so that nothing else takes them
// between the pick and the server's bind:
//
//   - at random below (or above) the kernel's ephemeral range, where the
//     kernel never puts the local port of an outgoing connection: a port
//     the kernel handed out for a listen-then-close probe is free again at
//     once, and any process connecting anywhere may get it;
//   - reserved for the life of the test process by an abstract Unix socket
//     named after the port, so that test binaries running at the same time
//     (go test runs packages in parallel) never pick the same one. The
//     kernel drops the reservation when the process exits, however it
//     exits; no file is left behind.

// ports holds this process's reservations.
var ports struct {
	mu   sync.Mutex
	held map[int]net.Listener
}

// lowestPort is where the search starts: below it are the well-known and
// commonly configured ports (5432, 8008, 2379, ...).
const lowestPort = 10000

// maxPortAttempts bounds the random search for one port.
const maxPortAttempts = 1000

// FreePort returns a TCP port on 127.0.0.1 that was free when it was
// picked and that no other test process and no earlier call hands out
// (see above). Another program may still take it before the test binds it,
// which is rare enough for tests.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct ports as FreePort does.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	return pickPorts(t, n, "port", func(p, _, _ int) bool { return ReservePort(p) })
}

// FreePortPairs returns n ports p for which p+offset is free too, both
// picked outside the ephemeral range and reserved as FreePorts does it. An
// embedded etcd member configured from a Patroni raft section, for
// example, serves clients on its raft port + 10000.
func FreePortPairs(t testing.TB, n, offset int) []int {
	t.Helper()
	return pickPorts(t, n, fmt.Sprintf("pair of ports p, p+%d", offset), func(p, lo, hi int) bool {
		q := p + offset
		return q >= lowestPort && q <= 65535 && (q < lo || q > hi) && ReservePort(p) && ReservePort(q)
	})
}

// pickPorts draws random ports outside the ephemeral range lo-hi until
// take has accepted n of them.
func pickPorts(t testing.TB, n int, what string, take func(p, lo, hi int) bool) []int {
	t.Helper()
	lo, hi, err := portRange()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	out := make([]int, 0, n)
	for attempts := 0; len(out) < n; attempts++ {
		if attempts >= maxPortAttempts+n {
			t.Fatalf("testutil: no free %s on 127.0.0.1 outside the ephemeral range %d-%d after %d attempts (got %d of %d)",
				what, lo, hi, attempts, len(out), n)
		}
		if p := randomPort(lo, hi); take(p, lo, hi) {
			out = append(out, p)
		}
	}
	return out
}

// randomPort returns a random port in lowestPort-65535 outside lo-hi.
func randomPort(lo, hi int) int {
	p := lowestPort + rand.IntN(lo-lowestPort+65535-hi)
	if p >= lo {
		p += hi - lo + 1
	}
	return p
}

// ReservePort reserves port for this test process and reports whether it
// could: false when this process or another test process holds it already,
// or when something listens on it. For tests that need ports in a fixed
// relation (p and p+10000); FreePorts is the usual way.
func ReservePort(port int) bool {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.held[port] != nil {
		return false
	}
	lock, err := net.Listen("unix", "@pgwarden-test-port-"+strconv.Itoa(port))
	if err != nil {
		return false // another test process has it
	}
	probe, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		_ = lock.Close()
		return false
	}
	_ = probe.Close()
	if ports.held == nil {
		ports.held = make(map[int]net.Listener)
	}
	ports.held[port] = lock
	return true
}

// portRange returns the kernel's ephemeral port range and checks that
// enough ports lie outside it.
func portRange() (lo, hi int, err error) {
	lo, hi = 32768, 60999 // Linux's default
	if b, rerr := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); rerr == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l <= h {
				lo, hi = l, h
			}
		}
	}
	lo = max(lo, lowestPort)
	hi = min(max(hi, lo-1), 65535)
	if outside := lo - lowestPort + 65535 - hi; outside < 1000 {
		return 0, 0, fmt.Errorf("the ephemeral port range %d-%d leaves only %d ports in %d-65535 for test servers; narrow net.ipv4.ip_local_port_range",
			lo, hi, outside, lowestPort)
	}
	return lo, hi, nil
}
