package testutil

import (
	"net"
	"sync"
	"testing"
)

// ports remembers every port handed out in this process, so that two calls
// never return the same port even when the first one is not bound yet.
var ports struct {
	mu   sync.Mutex
	used map[int]bool
}

// maxPortAttempts bounds the search for a port not handed out before; the
// kernel picks ephemeral ports at random, so a few attempts suffice.
const maxPortAttempts = 100

// FreePort returns a TCP port on 127.0.0.1 that was free when it was picked
// and was not returned before in this process. The port is chosen by the
// kernel (random); another process may still take it before the test binds
// it, which is rare enough for tests.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct ports as FreePort does.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	// Keep every listener open until all ports are picked, so the kernel
	// cannot hand out the same port twice within this call.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.used == nil {
		ports.used = make(map[int]bool)
	}
	out := make([]int, 0, n)
	for attempts := 0; len(out) < n; attempts++ {
		if attempts >= maxPortAttempts+n {
			t.Fatalf("testutil: no unused free port on 127.0.0.1 after %d attempts (got %d of %d)", attempts, len(out), n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testutil: listen on 127.0.0.1:0: %v", err)
		}
		listeners = append(listeners, l)
		port := l.Addr().(*net.TCPAddr).Port
		if ports.used[port] {
			continue
		}
		ports.used[port] = true
		out = append(out, port)
	}
	return out
}
