package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
)

// diagnose explains why no endpoint answered: it dials each endpoint once,
// with a TLS handshake when TLS is configured, and reports what failed. It
// returns nil when some endpoint looks healthy at this level (then the
// problem is above TCP/TLS: no quorum, a stopped member, a slow server).
func diagnose(ctx context.Context, cfg Config) error {
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	var errs []error
	for _, ep := range cfg.Endpoints {
		n, err := normalizeEndpoint(ep, tlsCfg != nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		u, err := url.Parse(n)
		if err != nil || u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		if err := probe(ctx, u.Host, u.Scheme == "https", tlsCfg); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", n, err))
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}

func probe(ctx context.Context, host string, useTLS bool, tlsCfg *tls.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if !useTLS {
		// A TLS server answers an HTTP/2 preface with an alert or a 400.
		if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
			return nil
		}
		// A plain HTTP/2 server answers with its SETTINGS frame; a TLS
		// server answers with an alert, a 400, or closes the connection.
		buf := make([]byte, 128)
		n, err := conn.Read(buf)
		if (n > 0 && (buf[0] == 0x15 || bytes.Contains(buf[:n], []byte("HTTPS")))) ||
			(n == 0 && errors.Is(err, io.EOF)) {
			return fmt.Errorf("%w: the endpoint rejected a plaintext request and seems to expect TLS; use https:// and cacert", ErrTLS)
		}
		return nil
	}
	c := tlsCfg.Clone()
	if c == nil {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		h, _, _ := net.SplitHostPort(host)
		c.ServerName = h
	}
	c.NextProtos = []string{"h2"}
	tc := tls.Client(conn, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the endpoint closed the connection during the handshake; does it serve plain http? %w", ErrTLS, err)
		}
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	// With TLS 1.3 a rejected client certificate shows only on the first
	// read: the server sends an alert instead of its HTTP/2 settings.
	if _, err := tc.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	buf := make([]byte, 64)
	if _, err := tc.Read(buf); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		var ae tls.AlertError
		if errors.As(err, &ae) || isTLSError(err) {
			return fmt.Errorf("%w: %w", ErrTLS, err)
		}
	}
	return nil
}
