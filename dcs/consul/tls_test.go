package consul

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
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
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeServerCert(t, dir, ca, caKey)
	https := testutil.FreePort(t)
	testutil.StartConsulWith(t, testutil.ConsulOptions{HCL: []string{
		fmt.Sprintf(`ports { https = %d }`, https),
		fmt.Sprintf(`tls { defaults { ca_file = %q
  cert_file = %q
  key_file = %q
  verify_incoming = false } }`,
			filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")),
	}})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
	cases := []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"verified with our CA", TLSConfig{CACert: filepath.Join(dir, "ca.pem")}, false},
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

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgwarden test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

func writeServerCert(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "server.dc1.consul"},
		DNSNames:     []string{"server.dc1.consul", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writePEM(t, filepath.Join(dir, "server-key.pem"), "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// spec/config.md ("consul": cert, key): a client certificate for an agent
// that verifies incoming HTTPS clients.
func TestMutualTLS(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeServerCert(t, dir, ca, caKey) // also valid for client auth
	https := testutil.FreePort(t)
	testutil.StartConsulWith(t, testutil.ConsulOptions{HCL: []string{
		fmt.Sprintf(`ports { https = %d }`, https),
		fmt.Sprintf(`tls { defaults { ca_file = %q
  cert_file = %q
  key_file = %q }
  https { verify_incoming = true } }`,
			filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")),
	}})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
	ca1 := filepath.Join(dir, "ca.pem")
	cases := []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"with client certificate", TLSConfig{CACert: ca1, Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")}, false},
		{"without client certificate", TLSConfig{CACert: ca1}, true},
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
