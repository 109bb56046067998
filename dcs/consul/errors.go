package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/pgwarden/pgwarden/dcs"
)

// rollbackError is a transaction Consul rolled back: one of its operations
// failed (a CAS index, a lock, a session check).
type rollbackError struct {
	// OpIndex is the index of the first failing operation.
	OpIndex int
	// What is Consul's explanation.
	What string
}

func (e *rollbackError) Error() string {
	return fmt.Sprintf("transaction rolled back at operation %d: %s", e.OpIndex, e.What)
}

// invalidSession reports whether Consul refused an operation because the
// session it names does not exist (expired or destroyed).
func (e *rollbackError) invalidSession() bool {
	w := strings.ToLower(e.What)
	return strings.Contains(w, "invalid session") || strings.Contains(w, "session") && strings.Contains(w, "not exist")
}

// unavailable wraps a client error as dcs.ErrUnavailable, keeping the
// cause, unless it already carries one of our sentinels.
func unavailable(op string, err error) error {
	switch {
	case errors.Is(err, dcs.ErrConflict), errors.Is(err, dcs.ErrLeaderLost),
		errors.Is(err, dcs.ErrUnavailable), errors.Is(err, dcs.ErrNoMember),
		errors.Is(err, dcs.ErrClosed):
		return fmt.Errorf("consul: %s: %w", op, err)
	}
	return fmt.Errorf("consul: %s: %w: %w", op, dcs.ErrUnavailable, err)
}

// retryable reports whether err is a transient failure after which the
// request certainly did not take effect, or was a read: the agent refused
// the connection, or answered that the servers have no leader or are
// rate-limiting.
func retryable(err error, read bool) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var se api.StatusError
	if errors.As(err, &se) {
		switch {
		case se.Code == http.StatusTooManyRequests:
			return true
		case se.Code >= 500 && read:
			return true
		case se.Code >= 500 && strings.Contains(strings.ToLower(se.Body), "no cluster leader"):
			return true
		}
		return false
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "no cluster leader") {
		return true
	}
	// Any other transport error on a read (reset, EOF, timeout) is safe to
	// retry; a write's outcome is then unknown and not retried.
	return read && !strings.Contains(msg, "unexpected response code")
}
