package testutil

import (
	"testing"
	"time"
)

// DefaultSucceedsSoonDuration is how long SucceedsSoon retries. It is
// generous because CI machines run many tests on few cores; a condition
// that holds returns at once, so the bound only matters for failures.
const DefaultSucceedsSoonDuration = 45 * time.Second

// Backoff bounds of the retry loop: start fast so quick conditions finish
// quickly, and cap the delay so a slow condition is noticed within a second.
const (
	minRetryDelay = time.Millisecond
	maxRetryDelay = time.Second
)

// SucceedsSoon calls fn until it returns nil, retrying with exponential
// backoff for up to DefaultSucceedsSoonDuration of wall time. fn's error
// says what is not true yet ("member m2 is not streaming: state=starting");
// if the time runs out the test fails with the last error.
//
// SucceedsSoon waits on the wall clock; code driven by a fake clock should
// step the clock instead.
func SucceedsSoon(t testing.TB, fn func() error) {
	t.Helper()
	SucceedsWithin(t, DefaultSucceedsSoonDuration, fn)
}

// SucceedsWithin is SucceedsSoon with an explicit bound d.
func SucceedsWithin(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	if err := retryFor(d, fn); err != nil {
		t.Fatalf("condition not met within %s: %v", d, err)
	}
}

// retryFor calls fn until it returns nil or d has passed, and returns the
// last error. fn is always called at least once, and once more at the end
// of the period.
func retryFor(d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	delay := minRetryDelay
	for {
		err := fn()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(delay, left))
		delay = min(2*delay, maxRetryDelay)
	}
}
