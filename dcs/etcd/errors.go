package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgwarden/pgwarden/dcs"
)

var (
	// ErrAuth is returned (together with dcs.ErrUnavailable) when etcd
	// rejects the username/password or the user lacks a permission.
	ErrAuth = errors.New("etcd: authentication failed")
	// ErrTLS is returned (together with dcs.ErrUnavailable) when the TLS
	// handshake with an endpoint fails: unknown CA, wrong host name, a
	// missing or rejected client certificate, or TLS spoken to a plain
	// endpoint.
	ErrTLS = errors.New("etcd: TLS handshake failed")
)

// mapErr converts a client error at the package edge: it keeps the cause
// and adds the dcs sentinel the caller matches on.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, dcs.ErrUnavailable) || errors.Is(err, dcs.ErrConflict) ||
		errors.Is(err, dcs.ErrLeaderLost) || errors.Is(err, dcs.ErrClosed) {
		return fmt.Errorf("etcd %s: %w", op, err)
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty),
		errors.Is(err, rpctypes.ErrAuthOldRevision):
		return fmt.Errorf("etcd %s: %w: %w: %w", op, dcs.ErrUnavailable, ErrAuth, err)
	case isTLSError(err):
		return fmt.Errorf("etcd %s: %w: %w: %w", op, dcs.ErrUnavailable, ErrTLS, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd %s: %w: %w", op, dcs.ErrUnavailable, err)
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted,
			codes.ResourceExhausted, codes.Internal, codes.Unknown:
			return fmt.Errorf("etcd %s: %w: %w", op, dcs.ErrUnavailable, err)
		}
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted,
			codes.ResourceExhausted, codes.Internal, codes.Unknown:
			return fmt.Errorf("etcd %s: %w: %w", op, dcs.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("etcd %s: %w", op, err)
}

func isTLSError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "authentication handshake failed") ||
		strings.Contains(s, "x509:") || strings.Contains(s, "tls: ") ||
		strings.Contains(s, "first record does not look like a TLS handshake")
}
