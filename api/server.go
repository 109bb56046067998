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
	"sync"
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
	rl := &certReloader{certFile: ra.CertFile, keyFile: keyFile, password: ra.KeyFilePassword}
	if err := rl.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: rl.get, Certificates: []tls.Certificate{*rl.cert}, MinVersion: tls.VersionTLS12}
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

// certReloader serves the certificate and re-reads the files when their
// modification time changes, so a renewed certificate is used without
// re-creating the listener (Patroni re-creates it on reload when the
// serial changed). A file that fails to load keeps the previous one.
type certReloader struct {
	certFile, keyFile, password string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func (r *certReloader) stamp() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

func (r *certReloader) load() error {
	mt := r.stamp()
	c, err := loadKeyPair(r.certFile, r.keyFile, r.password)
	if err != nil {
		return err
	}
	r.cert, r.modTime = &c, mt
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		if mt := r.stamp(); !mt.Equal(r.modTime) {
			_ = r.load() // keep serving the old certificate on error
		}
	}
	return r.cert, nil
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

// TCP keep-alive of accepted connections (spec/rest-api.md §1, as
// Patroni): probes start after 10 s of silence, 10 s apart, and 3 lost
// probes drop the connection.
const (
	keepAliveIdle     = 10 * time.Second
	keepAliveInterval = 10 * time.Second
	keepAliveCount    = 3
)

// listenTCP opens the REST API's listener. Its accepted connections have
// TCP keep-alive on (keepAliveIdle, keepAliveInterval, keepAliveCount).
func listenTCP(ctx context.Context, addr string) (net.Listener, error) {
	lc := listenConfig()
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", addr, err)
	}
	return ln, nil
}

// newServer returns the http.Server of the REST API. A client gets 10 s to
// send its request head and 30 s for the whole request; an idle
// keep-alive connection is closed after 30 s.
func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
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
	ln, err := listenTCP(ctx, net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := newServer(h)
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
