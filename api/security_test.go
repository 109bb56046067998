package api

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// spec/rest-api.md §2.2: Basic auth on unsafe endpoints only.
func TestBasicAuth(t *testing.T) {
	hs := newHarness(t, primaryStatus(), func(c *Config) {
		c.RestAPI.Authentication = &config.BasicAuth{Username: "admin", Password: "s3cret"}
	})
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		user, pass string
		code       int
		msg        string
	}{
		{name: "GET is open", method: http.MethodGet, path: "/patroni", code: 200},
		{name: "HEAD is open", method: http.MethodHead, path: "/primary", code: 200},
		{name: "no header", method: http.MethodPost, path: "/reload", code: 401, msg: "no auth header received"},
		{name: "wrong password", method: http.MethodPost, path: "/reload", user: "admin", pass: "x", code: 401, msg: "not authenticated"},
		{name: "wrong user", method: http.MethodDelete, path: "/restart", user: "root", pass: "s3cret", code: 401, msg: "not authenticated"},
		{name: "right", method: http.MethodPost, path: "/reload", user: "admin", pass: "s3cret", code: 202, msg: "reload scheduled"},
		{name: "config patch protected", method: http.MethodPatch, path: "/config", code: 401},
		{name: "switchover protected", method: http.MethodPost, path: "/switchover", code: 401},
		{name: "failsafe protected", method: http.MethodPost, path: "/failsafe", code: 401},
		{name: "sigterm protected", method: http.MethodPost, path: "/sigterm", code: 401},
		{name: "mpp is not", method: http.MethodPost, path: "/mpp", code: 411},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{BaseURL: hs.srv.URL, Username: tc.user, Password: tc.pass}
			r, err := c.Do(t.Context(), tc.method, tc.path, nil, nil)
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code)
			if tc.msg != "" {
				require.Equal(t, tc.msg, r.Text())
			}
			if tc.code == 401 {
				require.Equal(t, `Basic realm="Patroni"`, r.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// spec/rest-api.md §2.2: allowlist and allowlist_include_members.
func TestAllowlist(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   []string
		members bool
		apiURL  string
		path    string
		code    int
	}{
		{name: "loopback allowed by CIDR", allow: []string{"10.0.0.0/8", "127.0.0.0/8"}, path: "/reload", code: 202},
		{name: "loopback allowed by IP", allow: []string{"127.0.0.1"}, path: "/reload", code: 202},
		{name: "loopback allowed by name", allow: []string{"localhost"}, path: "/reload", code: 202},
		{name: "denied", allow: []string{"10.0.0.0/8"}, path: "/reload", code: 403},
		{name: "GET not checked", allow: []string{"10.0.0.0/8"}, path: "/patroni", code: 200},
		{name: "member allowed", members: true, apiURL: "http://127.0.0.1:8008/patroni", path: "/reload", code: 202},
		{name: "member not matching", members: true, apiURL: "http://10.1.1.1:8008/patroni", path: "/reload", code: 403},
		{name: "failsafe skips member check", members: true, apiURL: "http://10.1.1.1:8008/patroni", path: "/failsafe", code: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := primaryStatus()
			if tc.apiURL != "" {
				st.Cluster.Members[1].APIURL = tc.apiURL
				st.Global.FailsafeMode = false
			}
			hs := newHarness(t, st, func(c *Config) {
				c.RestAPI.Allowlist = tc.allow
				c.RestAPI.AllowlistIncludeMembers = tc.members
				c.Resolve = func(_ context.Context, host string) ([]net.IP, error) {
					return []net.IP{net.ParseIP("127.0.0.1")}, nil
				}
			})
			method := http.MethodPost
			if tc.path == "/patroni" {
				method = http.MethodGet
			}
			var body any
			if tc.path == "/failsafe" {
				body = FailsafeRequest{Name: "x"}
			}
			r, err := hs.client.Do(t.Context(), method, tc.path, nil, body)
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code)
			if tc.code == 403 {
				require.Equal(t, "Access is denied", r.Text())
			}
		})
	}
}

// pki is a test CA with a server certificate valid for 127.0.0.1 only
// and a client certificate.
type pki struct {
	caFile               string
	caPool               *x509.CertPool
	serverCert, serverKy string
	client               tls.Certificate
}

// newPKI creates the CA and its certificates in a temp dir. The server key
// is encrypted with password when non-empty.
func newPKI(t *testing.T, password string) *pki {
	t.Helper()
	ca := testutil.NewTestCA(t, "test CA")
	srv, cli := ca.IssueCert("server", "127.0.0.1"), ca.IssueCert("client", "127.0.0.1")
	if password != "" {
		b, err := os.ReadFile(srv.KeyFile)
		require.NoError(t, err)
		kb, _ := pem.Decode(b)
		require.NotNil(t, kb)
		//lint:ignore SA1019 legacy encrypted PEM is what keyfile_password protects
		kb, err = x509.EncryptPEMBlock(rand.Reader, kb.Type, kb.Bytes, []byte(password), x509.PEMCipherAES256) //nolint:staticcheck
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(srv.KeyFile, pem.EncodeToMemory(kb), 0o600))
	}
	return &pki{caFile: ca.CertFile, caPool: ca.Pool, serverCert: srv.CertFile, serverKy: srv.KeyFile, client: cli.TLS}
}

// spec/rest-api.md §2.3: TLS and verify_client none/optional/required.
func TestTLS(t *testing.T) {
	p := newPKI(t, "keypass")
	for _, tc := range []struct {
		name     string
		verify   string
		withCert bool
		getOK    bool
		postCode int
		postMsg  string
	}{
		{name: "none without cert", verify: "none", getOK: true, postCode: 202},
		{name: "optional without cert", verify: "optional", getOK: true, postCode: 403, postMsg: "client certificate required"},
		{name: "optional with cert", verify: "optional", withCert: true, getOK: true, postCode: 202},
		{name: "required without cert", verify: "required", getOK: false},
		{name: "required with cert", verify: "required", withCert: true, getOK: true, postCode: 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := config.RestAPI{CertFile: p.serverCert, KeyFile: p.serverKy, KeyFilePassword: "keypass",
				CAFile: p.caFile, VerifyClient: tc.verify, HTTPSExtraHeaders: map[string]string{"Strict-Transport-Security": "max-age=1"}}
			tlsCfg, err := ServerTLSConfig(ra)
			require.NoError(t, err)
			st := &fakeStatus{}
			st.set(primaryStatus())
			h, err := NewHandler(Config{Status: st, Controller: &fakeController{}, RestAPI: ra})
			require.NoError(t, err)
			srv := httptest.NewUnstartedServer(h)
			srv.TLS = tlsCfg
			srv.StartTLS()
			defer srv.Close()

			ctls := &tls.Config{RootCAs: p.caPool}
			if tc.withCert {
				ctls.Certificates = []tls.Certificate{p.client}
			}
			c := &Client{BaseURL: srv.URL, TLS: ctls}
			r, err := c.Do(t.Context(), http.MethodGet, "/patroni", nil, nil)
			if !tc.getOK {
				require.Error(t, err, "the handshake must reject a client without a certificate")
				return
			}
			require.NoError(t, err)
			require.Equal(t, 200, r.Code)
			require.Equal(t, "max-age=1", r.Header.Get("Strict-Transport-Security"))
			r, err = c.Do(t.Context(), http.MethodPost, "/reload", nil, nil)
			require.NoError(t, err)
			require.Equal(t, tc.postCode, r.Code)
			if tc.postMsg != "" {
				require.Equal(t, tc.postMsg, r.Text())
			}
		})
	}

	t.Run("wrong key password", func(t *testing.T) {
		_, err := ServerTLSConfig(config.RestAPI{CertFile: p.serverCert, KeyFile: p.serverKy, KeyFilePassword: "nope"})
		require.Error(t, err)
	})
	t.Run("plain", func(t *testing.T) {
		cfg, err := ServerTLSConfig(config.RestAPI{})
		require.NoError(t, err)
		require.Nil(t, cfg)
	})
}

// Serve runs a real listener and stops with its context.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	st := &fakeStatus{}
	st.set(replicaStatus())
	h, err := NewHandler(Config{Status: st})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr, h, nil) }()
	c := &Client{BaseURL: "http://" + addr}
	require.Eventually(t, func() bool {
		code, err := c.Check(t.Context(), http.MethodHead, "/replica", nil)
		return err == nil && code == 200
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	_ = dcs.ErrUnavailable
}

// spec/rest-api.md §2.3: a renewed certificate is picked up without
// re-creating the listener.
func TestCertReload(t *testing.T) {
	p1 := newPKI(t, "")
	p2 := newPKI(t, "")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	cp := func(src, dst string) {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, b, 0o600))
	}
	cp(p1.serverCert, cert)
	cp(p1.serverKy, key)
	r := &certReloader{certFile: cert, keyFile: key}
	require.NoError(t, r.load())
	first := r.cert.Certificate[0]

	cp(p2.serverCert, cert)
	cp(p2.serverKy, key)
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(cert, later, later))
	r.checked = time.Time{}
	got, err := r.get(nil)
	require.NoError(t, err)
	require.NotEqual(t, first, got.Certificate[0])

	// A broken file keeps the previous certificate.
	require.NoError(t, os.WriteFile(cert, []byte("garbage"), 0o600))
	require.NoError(t, os.Chtimes(cert, later.Add(time.Hour), later.Add(time.Hour)))
	r.checked = time.Time{}
	again, err := r.get(nil)
	require.NoError(t, err)
	require.Equal(t, got, again)
}

// spec/rest-api.md §2.3: member-to-member calls verify the chain (with a
// client certificate) but never the host name.
func TestClientProber(t *testing.T) {
	p := newPKI(t, "")
	other := newPKI(t, "")
	ra := config.RestAPI{CertFile: p.serverCert, KeyFile: p.serverKy, CAFile: p.caFile, VerifyClient: "optional"}
	tlsCfg, err := ServerTLSConfig(ra)
	require.NoError(t, err)
	st := &fakeStatus{}
	st.set(replicaStatus())
	h, err := NewHandler(Config{Status: st, RestAPI: ra})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = tlsCfg
	srv.StartTLS()
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	m := &dcs.Member{Name: "n", APIURL: "https://localhost:" + port + "/patroni"} // name not in the certificate

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{name: "no client certificate: insecure", cfg: nil, ok: true},
		{name: "client certificate, right CA", cfg: &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.client}}, ok: true},
		{name: "client certificate, wrong CA", cfg: &tls.Config{RootCAs: other.caPool, Certificates: []tls.Certificate{p.client}}, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := NewClientProber(tc.cfg, "", "").Probe(t.Context(), m)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "replica", doc.Role)
		})
	}
}
