package callbacks_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgwarden/pgwarden/callbacks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// spec/postgres.md §11: commands are shlex-split.
func TestSplit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  bool
	}{
		{name: "plain", in: "/usr/bin/cb.sh  a b", want: []string{"/usr/bin/cb.sh", "a", "b"}},
		{name: "single quotes", in: `cb 'a b' c`, want: []string{"cb", "a b", "c"}},
		{name: "double quotes with escapes", in: `cb "a \"b\" \x"`, want: []string{"cb", `a "b" \x`}},
		{name: "backslash outside quotes", in: `cb a\ b`, want: []string{"cb", "a b"}},
		{name: "adjacent quoted parts", in: `cb a'b'"c"`, want: []string{"cb", "abc"}},
		{name: "empty quoted word", in: `cb ''`, want: []string{"cb", ""}},
		{name: "empty", in: "  ", want: nil},
		{name: "unclosed quote", in: `cb 'a`, err: true},
		{name: "trailing backslash", in: `cb a\`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := callbacks.Split(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestEventNames(t *testing.T) {
	for _, ev := range callbacks.Events() {
		t.Run(ev.String(), func(t *testing.T) {
			got, err := callbacks.ParseEvent(ev.String())
			require.NoError(t, err)
			require.Equal(t, ev, got)
		})
	}
	_, err := callbacks.ParseEvent("on_nothing")
	require.Error(t, err)
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cb.sh")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
	return p
}

// spec/postgres.md §11: a script is run without a shell as
// "script ACTION ROLE SCOPE", one at a time, in the order fired.
func TestScriptArgumentsInOrder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "calls")
	script := writeScript(t, `echo "$0|$1|$2|$3|$4|$5" | sed "s|^[^|]*/||" >> "`+out+`"`+"\n")
	s, err := callbacks.ParseScript(script + " 'first arg'")
	require.NoError(t, err)
	ex := callbacks.NewExecutor(callbacks.Config{
		Scope:  "batman",
		Logger: testLogger(t),
		Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart: s, callbacks.OnRoleChange: s, callbacks.OnStop: s,
		},
	})
	defer ex.Close()
	steps := []struct {
		ev   callbacks.Event
		role string
	}{
		{callbacks.OnStart, "replica"},
		{callbacks.OnRoleChange, "promoted"},
		{callbacks.OnStop, "primary"},
	}
	for _, st := range steps {
		require.True(t, ex.Fire(st.ev, st.role))
		ex.Wait() // a newer callback would kill this one: let each finish
	}
	require.False(t, ex.Fire(callbacks.OnReload, "primary"), "no on_reload configured")
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, []string{
		"cb.sh|first arg|on_start|replica|batman|",
		"cb.sh|first arg|on_role_change|primary|batman|",
		"cb.sh|first arg|on_stop|primary|batman|",
	}, strings.Split(strings.TrimSpace(string(data)), "\n"))
	require.Equal(t, callbacks.Stats{Fired: 3, Succeeded: 3}, ex.Stats())
}

// spec/postgres.md §11: starting a new callback kills the running one and
// its children.
func TestSlowScriptKilledByNext(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	slow := writeScript(t, `touch "`+marker+`"; sleep 30 & wait; echo survived >> "`+dir+`/survived"`+"\n")
	fast := writeScript(t, `echo "$1" > "`+dir+`/fast"`+"\n")
	slowCB, err := callbacks.ParseScript(slow)
	require.NoError(t, err)
	fastCB, err := callbacks.ParseScript(fast)
	require.NoError(t, err)
	ex := callbacks.NewExecutor(callbacks.Config{
		Scope:  "s",
		Logger: testLogger(t),
		Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart: slowCB, callbacks.OnStop: fastCB,
		},
	})
	defer ex.Close()
	start := time.Now()
	require.True(t, ex.Fire(callbacks.OnStart, "replica"))
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 5*time.Second, 10*time.Millisecond)
	require.True(t, ex.Fire(callbacks.OnStop, "replica"))
	ex.Wait()
	require.Less(t, time.Since(start), 10*time.Second)
	got, err := os.ReadFile(filepath.Join(dir, "fast"))
	require.NoError(t, err)
	require.Equal(t, "on_stop\n", string(got))
	require.NoFileExists(t, filepath.Join(dir, "survived"))
	require.Equal(t, callbacks.Stats{Fired: 2, Succeeded: 1, Killed: 1}, ex.Stats())
}

func TestScriptTimeoutAndFailure(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		timeout time.Duration
		want    callbacks.Stats
	}{
		{name: "timeout", body: "sleep 30 & wait\n", timeout: 200 * time.Millisecond, want: callbacks.Stats{Fired: 1, TimedOut: 1}},
		// A generous timeout: on a loaded machine starting /bin/sh alone can
		// take longer than the 200 ms of the timeout case.
		{name: "non-zero exit", body: "exit 3\n", timeout: 30 * time.Second, want: callbacks.Stats{Fired: 1, Failed: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := callbacks.ParseScript(writeScript(t, tc.body))
			require.NoError(t, err)
			ex := callbacks.NewExecutor(callbacks.Config{
				Timeout:   tc.timeout,
				Logger:    testLogger(t),
				Callbacks: map[callbacks.Event]callbacks.Callback{callbacks.OnStart: s},
			})
			ex.Fire(callbacks.OnStart, "primary")
			ex.Wait()
			ex.Close()
			require.Equal(t, tc.want, ex.Stats())
		})
	}
}

// spec/postgres.md §11: Fire never blocks; on_reload has its own slot.
func TestGoCallbacksSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex
			calls []string
		)
		block := func(ctx context.Context, ev callbacks.Event, role, scope string) error {
			mu.Lock()
			calls = append(calls, ev.String()+" "+role+" "+scope)
			mu.Unlock()
			<-ctx.Done()
			return ctx.Err()
		}
		quick := func(ctx context.Context, ev callbacks.Event, role, scope string) error {
			mu.Lock()
			calls = append(calls, ev.String()+" "+role+" "+scope)
			mu.Unlock()
			return nil
		}
		ex := callbacks.NewExecutor(callbacks.Config{
			Scope:   "demo",
			Timeout: time.Hour,
			Logger:  testLogger(t),
			Callbacks: map[callbacks.Event]callbacks.Callback{
				callbacks.OnStart:      callbacks.Func(block),
				callbacks.OnReload:     callbacks.Func(block),
				callbacks.OnRoleChange: callbacks.Func(quick),
			},
		})
		defer ex.Close()
		ex.Fire(callbacks.OnStart, "replica")
		ex.Fire(callbacks.OnReload, "replica")
		synctest.Wait()
		// Both slots are busy and blocked; Fire still returns at once.
		ex.Fire(callbacks.OnRoleChange, "promoted")
		synctest.Wait()
		mu.Lock()
		require.ElementsMatch(t, []string{"on_start replica demo", "on_reload replica demo", "on_role_change primary demo"}, calls)
		mu.Unlock()
		require.Equal(t, callbacks.Stats{Fired: 3, Succeeded: 1, Killed: 1}, ex.Stats())
		time.Sleep(2 * time.Hour) // the blocked on_reload hits its timeout
		synctest.Wait()
		require.Equal(t, callbacks.Stats{Fired: 3, Succeeded: 1, Killed: 1, TimedOut: 1}, ex.Stats())
		ex.Close()
		require.False(t, ex.Fire(callbacks.OnStart, "replica"))
	})
}

// A callback superseded before it started is never run.
func TestSupersededBeforeStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ran []string
		var mu sync.Mutex
		cb := callbacks.Func(func(ctx context.Context, ev callbacks.Event, role, scope string) error {
			mu.Lock()
			ran = append(ran, ev.String())
			mu.Unlock()
			if ev == callbacks.OnStart {
				<-ctx.Done()
				time.Sleep(time.Second) // slow to die
			}
			return nil
		})
		ex := callbacks.NewExecutor(callbacks.Config{Logger: testLogger(t), Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart: cb, callbacks.OnStop: cb, callbacks.OnRestart: cb,
		}})
		ex.Fire(callbacks.OnStart, "r")
		synctest.Wait()
		ex.Fire(callbacks.OnStop, "r")
		ex.Fire(callbacks.OnRestart, "r")
		ex.Wait()
		require.Equal(t, []string{"on_start", "on_restart"}, ran)
		require.Equal(t, callbacks.Stats{Fired: 3, Succeeded: 1, Killed: 2}, ex.Stats())
	})
}

// Split never panics, and words without special characters survive a
// join/split round trip.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{`a 'b c' "d\"e" f\ g`, `'`, `\`, `"a\`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := callbacks.Split(s)
		if err != nil {
			return
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		again, err := callbacks.Split(strings.Join(quoted, " "))
		require.NoError(t, err)
		if len(words) == 0 {
			require.Empty(t, again)
			return
		}
		require.Equal(t, words, again)
	})
}
