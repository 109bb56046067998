package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// pki writes a CA and certificates it signs into dir.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T, dir, name string) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: dir, caCert: cert, caKey: key}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return p
}

// issue writes <name>.pem and <name>-key.pem for 127.0.0.1.
func (p *pki) issue(t *testing.T, name string, serial int64) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// TestTLS runs a Store against an embedded member that serves clients over
// TLS and requires client certificates (spec/config.md etcd3 cacert, cert,
// key), and checks that each kind of mismatch is reported as ErrTLS.
func TestTLS(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	rogue := newPKI(t, dir, "rogue")
	srvCert, srvKey := ca.issue(t, "server", 2)
	cliCert, cliKey := ca.issue(t, "client", 3)
	rogueCert, rogueKey := rogue.issue(t, "intruder", 4)

	ports := testutil.FreePorts(t, 2)
	url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv, err := etcd.StartServer(ctx, etcd.ServerConfig{
		Name: "tls0", DataDir: filepath.Join(dir, "data"),
		ClientURLs: []string{url}, PeerURLs: []string{"http://127.0.0.1:" + strconv.Itoa(ports[1])},
		ClientTLS: &etcd.TLSFiles{CertFile: srvCert, KeyFile: srvKey, CAFile: filepath.Join(dir, "ca.pem"), ClientCertAuth: true},
		Logger:    quietLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })

	st := openStore(t, []string{url}, "tls", "a", func(c *etcd.Config) {
		c.CACert, c.Cert, c.Key = filepath.Join(dir, "ca.pem"), cliCert, cliKey
	})
	require.NoError(t, st.TouchMember(t.Context(), member("a", 1)))
	require.NoError(t, st.AcquireLeader(t.Context()))

	for _, tc := range []struct {
		name string
		cfg  etcd.Config
	}{
		{"server cert from an unknown CA", etcd.Config{Endpoints: []string{url}, CACert: filepath.Join(dir, "rogue.pem"), Cert: cliCert, Key: cliKey}},
		{"no client certificate", etcd.Config{Endpoints: []string{url}, CACert: filepath.Join(dir, "ca.pem")}},
		{"client certificate from another CA", etcd.Config{Endpoints: []string{url}, CACert: filepath.Join(dir, "ca.pem"), Cert: rogueCert, Key: rogueKey}},
		{"plain http to a TLS endpoint", etcd.Config{Endpoints: []string{"http" + url[len("https"):]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Scope, cfg.Name, cfg.Logger = "tls", "b", quietLogger(t)
			octx, ocancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer ocancel()
			_, err := etcd.Open(octx, cfg)
			require.ErrorIs(t, err, dcs.ErrUnavailable)
			require.ErrorIs(t, err, etcd.ErrTLS)
			t.Logf("%v", err)
		})
	}
}
