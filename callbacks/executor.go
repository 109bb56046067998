package callbacks

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds one callback run when Config.Timeout is zero. Patroni
// sets no limit; a minute is far above what a notification script needs and
// still frees the slot if a script hangs on a dead endpoint.
const DefaultTimeout = time.Minute

// Config configures an Executor.
type Config struct {
	// Scope is the cluster name passed as the third script argument.
	Scope string
	// Callbacks maps events to what to run; events without an entry are
	// ignored by Fire.
	Callbacks map[Event]Callback
	// Timeout bounds each run; zero means DefaultTimeout, negative means no
	// limit (Patroni's behaviour).
	Timeout time.Duration
	// Logger receives one line per outcome; nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts what the executor did since it was created.
type Stats struct {
	// Fired counts accepted Fire calls.
	Fired int64
	// Succeeded, Failed, TimedOut count finished runs by outcome.
	Succeeded, Failed, TimedOut int64
	// Killed counts runs cancelled (or never started) because a newer
	// callback in the same slot was fired, or because of Close.
	Killed int64
}

// Errors stored as the cancellation cause of a run.
var (
	// ErrSuperseded is the cause when a newer callback replaced a run.
	ErrSuperseded = errors.New("callbacks: superseded by a newer callback")
	// ErrTimeout is the cause when a run exceeded Config.Timeout.
	ErrTimeout = errors.New("callbacks: timed out")
	// ErrClosed is the cause when the executor was closed.
	ErrClosed = errors.New("callbacks: executor closed")
)

// Executor runs callbacks asynchronously, one at a time per slot: every
// event shares one slot except on_reload, which has its own (spec/postgres.md
// §11). Firing a callback cancels (kills) the run still going in its slot;
// the new run starts once the old one has returned. All methods are safe for
// concurrent use.
type Executor struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	slots  [2]*run
	closed bool
	wg     sync.WaitGroup

	fired, ok, failed, timedOut, killed atomic.Int64
}

type run struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// NewExecutor returns an executor; it starts no goroutine until Fire.
func NewExecutor(cfg Config) *Executor {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Executor{cfg: cfg, log: log.With("scope", cfg.Scope)}
}

// Has reports whether a callback is configured for ev.
func (e *Executor) Has(ev Event) bool {
	return e != nil && e.cfg.Callbacks[ev] != nil
}

// Fire schedules the callback for ev with the given role and returns at
// once. Role "promoted" is passed as "primary", as Patroni does. It reports
// whether a callback was scheduled (false when none is configured for ev or
// the executor is closed). A nil Executor ignores every call.
func (e *Executor) Fire(ev Event, role string) bool {
	if e == nil {
		return false
	}
	cb := e.cfg.Callbacks[ev]
	if cb == nil {
		return false
	}
	if role == "promoted" {
		role = "primary"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	idx := 0
	if ev == OnReload {
		idx = 1
	}
	prev := e.slots[idx]
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	e.slots[idx] = r
	if prev != nil {
		prev.cancel(ErrSuperseded)
	}
	e.fired.Add(1)
	e.wg.Go(func() {
		defer close(r.done)
		defer cancel(nil)
		if prev != nil {
			<-prev.done
		}
		e.execute(ctx, cb, ev, role)
	})
	return true
}

func (e *Executor) execute(ctx context.Context, cb Callback, ev Event, role string) {
	log := e.log.With("action", ev.String(), "role", role)
	if ctx.Err() != nil {
		e.killed.Add(1)
		log.Info("callback skipped", "reason", context.Cause(ctx))
		return
	}
	if e.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.cfg.Timeout, ErrTimeout)
		defer cancel()
	}
	start := time.Now()
	err := cb.Run(ctx, ev, role, e.cfg.Scope)
	took := time.Since(start)
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, ErrSuperseded) || errors.Is(cause, ErrClosed):
		e.killed.Add(1)
		log.Warn("callback killed", "reason", cause, "took", took)
	case errors.Is(cause, ErrTimeout):
		e.timedOut.Add(1)
		log.Warn("callback timed out", "timeout", e.cfg.Timeout, "error", err)
	case err != nil:
		e.failed.Add(1)
		log.Warn("callback failed", "error", err, "took", took)
	default:
		e.ok.Add(1)
		log.Info("callback finished", "took", took)
	}
}

// Wait blocks until every callback fired so far has finished. It is meant
// for tests and shutdown; callers must not Fire concurrently with Wait.
func (e *Executor) Wait() {
	if e != nil {
		e.wg.Wait()
	}
}

// Close kills running callbacks, waits for them, and makes later Fire
// calls no-ops.
func (e *Executor) Close() {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.closed = true
	for _, r := range e.slots {
		if r != nil {
			r.cancel(ErrClosed)
		}
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// Stats returns the counters.
func (e *Executor) Stats() Stats {
	return Stats{
		Fired:     e.fired.Load(),
		Succeeded: e.ok.Load(),
		Failed:    e.failed.Load(),
		TimedOut:  e.timedOut.Load(),
		Killed:    e.killed.Load(),
	}
}
