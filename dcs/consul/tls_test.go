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
	ca := testutil.NewTestCA(t, "pgwarden test CA")
	srv := ca.IssueCert("server.dc1.consul", "server.dc1.consul", "localhost", "127.0.0.1")
	https := testutil.FreePort(t)
	testutil.StartConsulWith(t, testutil.ConsulOptions{HCL: []string{
		fmt.Sprintf(`ports { https = %d }`, https),
		fmt.Sprintf(`tls { defaults { ca_file = %q
  cert_file = %q
  key_file = %q
  verify_incoming = false } }`,
			ca.CertFile, srv.CertFile, srv.KeyFile),
	}})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
	cases := []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"verified with our CA", TLSConfig{CACert: ca.CertFile}, false},
		{"unknown CA", TLSConfig{}, true},
		{"verify off", TLSConfig{InsecureSkipVerify: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, addr, "tls", "pg0", func(c *Config) { c.Scheme, c.TLS = "https", tc.tls })
			err := st.TouchMember(callCtx(t, 3*time.Second), member("pg0", "primary"))
			if tc.wantErr {
				require.ErrorIs(t, err, dcs.ErrUnavailable)
				return
			}
			require.NoError(t, err)
			c, err := st.Cluster(callCtx(t, 3*time.Second))
			require.NoError(t, err)
			require.NotNil(t, c.Member("pg0"))
		})
	}
}

// spec/config.md ("consul": cert, key): a client certificate for an agent
// that verifies incoming HTTPS clients.
func TestMutualTLS(t *testing.T) {
	skipShort(t)
	ca := testutil.NewTestCA(t, "pgwarden test CA")
	srv := ca.IssueCert("server.dc1.consul", "server.dc1.consul", "localhost", "127.0.0.1") // also valid for client auth
	https := testutil.FreePort(t)
	testutil.StartConsulWith(t, testutil.ConsulOptions{HCL: []string{
		fmt.Sprintf(`ports { https = %d }`, https),
		fmt.Sprintf(`tls { defaults { ca_file = %q
  cert_file = %q
  key_file = %q }
  https { verify_incoming = true } }`,
			ca.CertFile, srv.CertFile, srv.KeyFile),
	}})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
	cases := []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"with client certificate", TLSConfig{CACert: ca.CertFile, Cert: srv.CertFile, Key: srv.KeyFile}, false},
		{"without client certificate", TLSConfig{CACert: ca.CertFile}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, addr, "mtls", "pg0", func(c *Config) { c.Scheme, c.TLS = "https", tc.tls })
			err := st.TouchMember(callCtx(t, 3*time.Second), member("pg0", "primary"))
			if tc.wantErr {
				require.ErrorIs(t, err, dcs.ErrUnavailable)
				return
			}
			require.NoError(t, err)
		})
	}
}
