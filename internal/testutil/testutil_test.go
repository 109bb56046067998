package testutil

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeTB records what a helper reports instead of ending the real test.
// Fatalf and Skipf panic with stopTest, which run recovers, the way the
// testing package stops the test goroutine.
type fakeTB struct {
	testing.TB // nil: any method not overridden panics
	out        bytes.Buffer
	fatal      string
	skip       string
	cleanups   []func()
}

type stopTest struct{}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Output() io.Writer { return &f.out }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(stopTest{})
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	panic(stopTest{})
}

// run calls fn with f, recovering a stop, then runs the cleanups.
func (f *fakeTB) run(fn func(tb testing.TB)) {
	defer func() {
		for i := len(f.cleanups) - 1; i >= 0; i-- {
			f.cleanups[i]()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopTest); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
}

// Tests: ARCHITECTURE.md "Tests: tiers" (random free loopback ports).
func TestFreePorts(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 5 {
		for _, p := range append(FreePorts(t, 10), FreePort(t)) {
			require.False(t, seen[p], "port %d handed out twice", p)
			seen[p] = true
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			require.NoError(t, err, "port %d should be bindable", p)
			require.NoError(t, l.Close())
		}
	}
	require.Len(t, seen, 55)

	lo, hi, err := portRange()
	require.NoError(t, err)
	for p := range seen {
		require.True(t, p >= lowestPort && (p < lo || p > hi),
			"port %d is in the ephemeral range %d-%d, where outgoing connections may take it", p, lo, hi)
		require.False(t, ReservePort(p), "port %d reserved twice", p)
		// What another test process would try: the reservation is
		// system-wide.
		_, err := net.Listen("unix", "@pgwarden-test-port-"+strconv.Itoa(p))
		require.Error(t, err, "port %d is not reserved against other processes", p)
	}

	for _, p := range FreePortPairs(t, 5, 10000) {
		for _, q := range []int{p, p + 10000} {
			require.False(t, seen[q], "port %d handed out twice", q)
			seen[q] = true
			require.True(t, q < lo || q > hi, "port %d is in the ephemeral range %d-%d", q, lo, hi)
			require.False(t, ReservePort(q), "port %d of a pair is not reserved", q)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			require.NoError(t, err, "port %d should be bindable", q)
			require.NoError(t, l.Close())
		}
	}
}

// Tests: STYLE.md §10 (wait with SucceedsSoon, whose error says what is not
// true yet).
func TestSucceedsWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		failures  int // calls that fail before one succeeds; -1 = never
		bound     time.Duration
		wantFatal string
	}{
		{name: "at once", failures: 0, bound: time.Second},
		{name: "after retries", failures: 4, bound: 5 * time.Second},
		{name: "never", failures: -1, bound: 50 * time.Millisecond, wantFatal: "not met within 50ms: replica m2 not streaming (call"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			f := &fakeTB{}
			start := time.Now()
			f.run(func(tb testing.TB) {
				SucceedsWithin(tb, tc.bound, func() error {
					calls++
					if tc.failures < 0 || calls <= tc.failures {
						return fmt.Errorf("replica m2 not streaming (call %d)", calls)
					}
					return nil
				})
			})
			if tc.wantFatal == "" {
				require.Empty(t, f.fatal)
				require.Equal(t, tc.failures+1, calls)
				return
			}
			require.Contains(t, f.fatal, tc.wantFatal)
			// The last error is reported, not the first.
			require.True(t, strings.HasSuffix(f.fatal, fmt.Sprintf("(call %d)", calls)), f.fatal)
			require.GreaterOrEqual(t, calls, 2)
			require.Less(t, time.Since(start), tc.bound+time.Second)
		})
	}
}

// Tests: ARCHITECTURE.md "Tests: tiers" (a missing binary fails with an
// install hint; PGWARDEN_ALLOW_SKIP=1 skips on purpose).
func TestRequireBinary(t *testing.T) {
	tests := []struct {
		name      string
		binary    string
		allowSkip string
		wantFatal bool
		wantSkip  bool
	}{
		{name: "present", binary: "sh"},
		{name: "missing fails", binary: "pgwarden-no-such-binary", wantFatal: true},
		{name: "missing skips when allowed", binary: "pgwarden-no-such-binary", allowSkip: "1", wantSkip: true},
		{name: "other values do not skip", binary: "pgwarden-no-such-binary", allowSkip: "true", wantFatal: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(AllowSkipEnv, tc.allowSkip)
			f := &fakeTB{}
			var got string
			f.run(func(tb testing.TB) { got = RequireBinary(tb, tc.binary, "apt-get install pgwarden-test") })
			switch {
			case tc.wantFatal:
				require.Contains(t, f.fatal, "apt-get install pgwarden-test")
				require.Contains(t, f.fatal, AllowSkipEnv+"=1")
				require.Empty(t, f.skip)
			case tc.wantSkip:
				require.Contains(t, f.skip, "apt-get install pgwarden-test")
				require.Empty(t, f.fatal)
			default:
				require.Empty(t, f.fatal)
				require.Empty(t, f.skip)
				require.NotEmpty(t, got)
			}
		})
	}
}

// Tests: STYLE.md §7 (tests send logs to t.Output()).
func TestLogger(t *testing.T) {
	t.Parallel()
	f := &fakeTB{}
	var log *slog.Logger
	f.run(func(tb testing.TB) {
		log = Logger(tb)
		log.Debug("observed", "member", "m1")
	})
	require.Contains(t, f.out.String(), "member=m1")
	require.Contains(t, f.out.String(), "level=DEBUG")
	before := f.out.Len()
	log.Info("after the test") // must not panic nor write
	require.Equal(t, before, f.out.Len())
}
