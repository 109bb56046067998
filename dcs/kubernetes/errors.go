package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/pgwarden/pgwarden/dcs"
)

// retry calls fn until it succeeds, fails with an error that is not
// transient, or ctx ends (spec/dcs-layout.md §3: retries with backoff, max
// delay 1 s, never beyond retry_timeout). It returns fn's last error
// unmapped, joined with ctx's error when the deadline cut it short.
func (s *Store) retry(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	delay := 50 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil || !s.retriable(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		s.log.Debug("kubernetes request failed, retrying", "op", op, "error", err, "delay", delay)
		if d, ok := apierrors.SuggestsClientDelay(err); ok && time.Duration(d)*time.Second > delay {
			delay = min(time.Duration(d)*time.Second, maxRetryDelay)
		}
		t := s.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C():
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// retriable reports whether err is transient: a network error, 5xx,
// 429, 401/403 (a token or RBAC change in progress, as Patroni retries
// them), any answer with Retry-After, or a configured code.
func (s *Store) retriable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true // transport errors: refused, reset, TLS, timeouts
	}
	code := int(st.Status().Code)
	if slices.Contains(s.cfg.RetriableHTTPCodes, code) {
		return true
	}
	if _, ok := apierrors.SuggestsClientDelay(err); ok {
		return true
	}
	switch {
	case code >= 500, code == 429, code == 401, code == 403, code == 408:
		return true
	}
	return false
}

// mapErr maps an API error at the backend edge, keeping the cause
// (STYLE.md §2): 409 is dcs.ErrConflict; transport errors, timeouts and
// server errors are dcs.ErrUnavailable.
func (s *Store) mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, dcs.ErrConflict) || errors.Is(err, dcs.ErrLeaderLost) || errors.Is(err, dcs.ErrUnavailable) {
		return err
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%w: kubernetes: %s: %w", dcs.ErrConflict, op, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || s.retriable(err) {
		return fmt.Errorf("%w: kubernetes: %s: %w", dcs.ErrUnavailable, op, err)
	}
	return fmt.Errorf("kubernetes: %s: %w", op, err)
}
