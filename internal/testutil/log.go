package testutil

import (
	"io"
	"log/slog"
	"sync"
	"testing"
)

// Logger returns a logger that writes text records at Debug level and above
// to t.Output(), so they appear only when the test fails (or with -v).
// Records logged after the test and its cleanups have finished, for
// example by a goroutine that outlived the test, are dropped instead of
// making the testing package panic.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{out: t.Output()}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter forwards to the test's output until stop is called.
type testWriter struct {
	mu      sync.Mutex
	out     io.Writer
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	return w.out.Write(p)
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}
