package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority for TLS tests. Its certificate and the
// certificates it issues are PEM files in a temporary directory of the
// test, removed with it.
type CA struct {
	// CertFile is the CA certificate (PEM), what servers and clients are
	// given as their CA file.
	CertFile string
	// Pool holds the CA certificate, for a tls.Config's RootCAs or
	// ClientCAs.
	Pool *x509.CertPool

	t      testing.TB
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

// Cert is a certificate issued by a CA.
type Cert struct {
	// CertFile and KeyFile are the certificate and its unencrypted EC
	// private key (PEM).
	CertFile, KeyFile string
	// TLS is the same pair, for a tls.Config's Certificates.
	TLS tls.Certificate
}

// certLifetime is how long test certificates are valid before and after
// their creation: far longer than any test runs, so a slow machine never
// sees one expire.
const certLifetime = 24 * time.Hour

// NewTestCA creates a self-signed CA with common name name; its certificate
// is <name>.pem in a new temporary directory of t.
func NewTestCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testutil: CA %s key: %v", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-certLifetime), NotAfter: now.Add(certLifetime),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testutil: CA %s certificate: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testutil: CA %s certificate: %v", name, err)
	}
	ca := &CA{Pool: x509.NewCertPool(), t: t, dir: t.TempDir(), cert: cert, key: key, serial: 1}
	ca.Pool.AddCert(cert)
	ca.CertFile = ca.write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// IssueCert issues a certificate with common name name for both server
// and client authentication, written as <name>.pem and <name>-key.pem in
// the CA's directory. hosts are the DNS names and IP addresses it is valid
// for; none means 127.0.0.1 and localhost.
func (ca *CA) IssueCert(name string, hosts ...string) Cert {
	ca.t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatalf("testutil: certificate %s key: %v", name, err)
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-certLifetime), NotAfter: now.Add(certLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatalf("testutil: certificate %s: %v", name, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatalf("testutil: certificate %s key: %v", name, err)
	}
	return Cert{
		CertFile: ca.write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyFile:  ca.write(name+"-key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// write stores b as file name in the CA's directory and returns its path.
func (ca *CA) write(name string, b *pem.Block) string {
	ca.t.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		ca.t.Fatalf("testutil: write %s: %v", path, err)
	}
	return path
}
