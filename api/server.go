package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// ServerTLSConfig builds the TLS configuration of the REST API from the
// restapi section (spec/rest-api.md §2.3). It returns nil when certfile is
// not set (plain HTTP). verify_client none asks for no certificate;
// optional asks for one and verifies it if given (the access check of
// unsafe endpoints then requires it); required rejects clients without a
// valid certificate during the handshake.
func ServerTLSConfig(ra config.RestAPI) (*tls.Config, error) {
	if ra.CertFile == "" {
		return nil, nil
	}
	keyFile := ra.KeyFile
	if keyFile == "" {
		keyFile = ra.CertFile
	}
	cert, err := loadKeyPair(ra.CertFile, keyFile, ra.KeyFilePassword)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if ra.CAFile != "" {
		pem, err := os.ReadFile(ra.CAFile)
		if err != nil {
			return nil, fmt.Errorf("api: read cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api: cafile %s holds no certificate", ra.CAFile)
		}
		cfg.ClientCAs = pool
	}
	switch strings.ToLower(ra.VerifyClient) {
	case "", "none":
		cfg.ClientAuth = tls.NoClientCert
	case "optional":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "required":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("api: verify_client %q: want none, optional or required", ra.VerifyClient)
	}
	return cfg, nil
}

func loadKeyPair(certFile, keyFile, password string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api: read certfile: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api: read keyfile: %w", err)
	}
	if password != "" {
		var out []byte
		for rest := keyPEM; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			//nolint:staticcheck // legacy encrypted PEM is what keyfile_password protects
			if x509.IsEncryptedPEMBlock(b) {
				der, err := x509.DecryptPEMBlock(b, []byte(password)) //nolint:staticcheck
				if err != nil {
					return tls.Certificate{}, fmt.Errorf("api: decrypt keyfile: %w", err)
				}
				b = &pem.Block{Type: b.Type, Bytes: der}
			}
			out = append(out, pem.EncodeToMemory(b)...)
		}
		keyPEM = out
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api: load certificate: %w", err)
	}
	return cert, nil
}

// Serve runs the REST API on listen ("host:port"; an empty or "*" host
// means all interfaces) until ctx ends, then shuts down gracefully within
// 5 seconds. tlsCfg nil serves plain HTTP.
func Serve(ctx context.Context, listen string, h http.Handler, tlsCfg *tls.Config) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("api: listen %q: %w", listen, err)
	}
	if host == "*" {
		host = ""
	}
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Count: 3, Interval: 10 * time.Second}}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", listen, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}
