package consul

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// spec/config.md ("consul": scheme, cacert, verify): HTTPS to the agent,
// verified against our CA; an unknown CA is refused unless verify is off.
func TestTLS(t *testing.T) {
	skipShort(t)
	addr, ca, _ := startHTTPSAgent(t, false)
	for _, tc := range []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"verified with our CA", TLSConfig{CACert: ca.CertFile}, false},
		{"unknown CA", TLSConfig{}, true},
		{"verify off", TLSConfig{InsecureSkipVerify: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHTTPS(t, addr, "tls", tc.tls, tc.wantErr) })
	}
}

// spec/config.md ("consul": cert, key): a client certificate for an agent
// that verifies incoming HTTPS clients.
func TestMutualTLS(t *testing.T) {
	skipShort(t)
	addr, ca, srv := startHTTPSAgent(t, true)
	for _, tc := range []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		// The server certificate is valid for client authentication too.
		{"with client certificate", TLSConfig{CACert: ca.CertFile, Cert: srv.CertFile, Key: srv.KeyFile}, false},
		{"without client certificate", TLSConfig{CACert: ca.CertFile}, true},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHTTPS(t, addr, "mtls", tc.tls, tc.wantErr) })
	}
}

// startHTTPSAgent starts an agent serving HTTPS with a certificate from a
// new test CA; verifyIncoming makes it require client certificates. It
// returns the HTTPS address, the CA and the server certificate.
func startHTTPSAgent(t *testing.T, verifyIncoming bool) (string, *testutil.CA, testutil.Cert) {
	t.Helper()
	ca := testutil.NewTestCA(t, "pgwarden test CA")
	srv := ca.IssueCert("server.dc1.consul", "server.dc1.consul", "localhost", "127.0.0.1")
	https := testutil.FreePort(t)
	testutil.StartConsulWith(t, testutil.ConsulOptions{HCL: []string{
		fmt.Sprintf(`ports { https = %d }`, https),
		fmt.Sprintf(`tls { defaults { ca_file = %q
  cert_file = %q
  key_file = %q }
  https { verify_incoming = %t } }`,
			ca.CertFile, srv.CertFile, srv.KeyFile, verifyIncoming),
	}})
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(https)), ca, srv
}

// checkHTTPS opens a store over HTTPS with tlsCfg and checks that a member
// write fails as unavailable (wantErr) or is read back.
func checkHTTPS(t *testing.T, addr, scope string, tlsCfg TLSConfig, wantErr bool) {
	t.Helper()
	st := openStore(t, addr, scope, "pg0", func(c *Config) { c.Scheme, c.TLS = "https", tlsCfg })
	err := st.TouchMember(callCtx(t, 3*time.Second), member("pg0", "primary"))
	if wantErr {
		require.ErrorIs(t, err, dcs.ErrUnavailable)
		return
	}
	require.NoError(t, err)
	c, err := st.Cluster(callCtx(t, 3*time.Second))
	require.NoError(t, err)
	require.NotNil(t, c.Member("pg0"))
}
