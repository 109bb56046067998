package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// KubeInstallHint says how to get the kube-apiserver binary.
const KubeInstallHint = "run scripts/install-deps.sh (it builds kube-apiserver v1.34.4 into ${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin)"

// KubeAPIServerBinary returns where scripts/build-kube-apiserver.sh puts
// kube-apiserver, or $PGWARDEN_KUBE_APISERVER when that is set.
func KubeAPIServerBinary() string {
	if p := os.Getenv("PGWARDEN_KUBE_APISERVER"); p != "" {
		return p
	}
	cache := os.Getenv("PGWARDEN_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "pgwarden")
	}
	return filepath.Join(cache, "bin", "kube-apiserver")
}

// Timings of the test API server.
const (
	// kubeStartTimeout is generous: on a loaded 2-core machine the API
	// server takes 3 s alone and over 20 s when the CPU is shared.
	kubeStartTimeout = 120 * time.Second
	kubeStopTimeout  = 15 * time.Second
)

// KubeAPIServer is a kube-apiserver process on a random loopback port,
// backed by its own etcd (Debian's /usr/bin/etcd), with a self-signed
// serving certificate, a static bearer token and AlwaysAllow
// authorization. No controller or kubelet runs: tests create namespaces
// and pods themselves, and objects are never garbage-collected.
type KubeAPIServer struct {
	// Port is the HTTPS port on 127.0.0.1.
	Port int
	// Token is the bearer token of a system:masters user.
	Token string
	// CACert is the PEM of the CA that signed the serving certificate.
	CACert []byte
	// Dir holds the service account keys, the token file and the log.
	Dir string

	bin  string
	etcd *EtcdProcess
	args []string

	mu   sync.Mutex
	proc *process // nil when stopped
}

// Host returns the server URL.
func (k *KubeAPIServer) Host() string { return "https://127.0.0.1:" + strconv.Itoa(k.Port) }

// RESTConfig returns a client configuration for the server (a fresh copy).
func (k *KubeAPIServer) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            k.Host(),
		BearerToken:     k.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), k.CACert...)},
		QPS:             -1, // no client-side rate limit in tests
		WarningHandler:  rest.NoWarnings{},
	}
}

// StartKubeAPIServer starts etcd and a kube-apiserver and waits for
// /readyz; both are stopped by t.Cleanup. A missing binary fails the test
// with an install hint (skips with PGWARDEN_ALLOW_SKIP=1). Start-up takes
// about 3 s on an idle machine; share one server between the subtests of
// a package (distinct namespaces keep them apart).
func StartKubeAPIServer(t testing.TB) *KubeAPIServer {
	t.Helper()
	bin := RequireBinary(t, KubeAPIServerBinary(), KubeInstallHint)
	etcd := StartEtcdProcess(t)
	k := &KubeAPIServer{Port: FreePort(t), Token: "pgwarden-test-token", Dir: t.TempDir(), bin: bin, etcd: etcd}
	ca := NewTestCA(t, "pgwarden-test-apiserver CA")
	serving := ca.IssueCert("pgwarden-test-apiserver", "127.0.0.1", "localhost", "kubernetes.default.svc")
	if err := k.prepare(ca.CertFile, serving); err != nil {
		t.Fatalf("testutil: kube-apiserver files: %v", err)
	}
	t.Cleanup(k.Close)
	if err := k.Start(); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return k
}

// prepare writes the service account key pair and the token file, and
// builds the argument list with the serving certificate signed by the CA
// in caFile.
func (k *KubeAPIServer) prepare(caFile string, serving Cert) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
		"tokens.csv": []byte(k.Token + `,pgwarden-admin,pgwarden-admin-uid,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(k.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	k.CACert = caPEM
	p := func(name string) string { return filepath.Join(k.Dir, name) }
	k.args = []string{
		"--etcd-servers=" + k.etcd.Endpoint(),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(k.Port),
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
		"--token-auth-file=" + p("tokens.csv"), "--anonymous-auth=false",
		"--authorization-mode=AlwaysAllow",
		"--service-account-issuer=" + k.Host(),
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		// Only an allocation range (RFC 2544 benchmarking addresses);
		// nothing is ever sent there.
		"--service-cluster-ip-range=198.18.0.0/24",
		// No controller creates service accounts, so pods could not be
		// admitted with this plugin on.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		"--profiling=false", "--v=0",
	}
	return nil
}

// Start starts the API server process (again, after Stop) on the same
// port and etcd, and waits until /readyz answers ok.
func (k *KubeAPIServer) Start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		return nil
	}
	logPath := filepath.Join(k.Dir, "kube-apiserver.log")
	cmd := exec.Command(k.bin, k.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p, err := startProcess(cmd, logPath, 0o600)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	k.proc = p
	if err := k.waitReady(p); err != nil {
		k.stopLocked()
		return fmt.Errorf("%w; log:\n%s", err, tail(logPath))
	}
	return nil
}

// waitReady polls /readyz until it answers ok.
func (k *KubeAPIServer) waitReady(p *process) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CACert)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	if err := p.waitReady(kubeStartTimeout, 100*time.Millisecond, func() error { return k.probe(client) }); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

func (k *KubeAPIServer) probe(client *http.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.Host()+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, body.String())
	}
	return nil
}

// Stop terminates the API server process (SIGTERM, SIGKILL after a grace
// period) and waits for it; etcd keeps running, so Start brings the same
// data back. Safe to call more than once.
func (k *KubeAPIServer) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
}

// Kill kills the API server process at once (a crash: connections reset,
// watches cut) and waits for it. Start brings it back.
func (k *KubeAPIServer) Kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc == nil {
		return
	}
	k.proc.stop(syscall.SIGKILL, kubeStopTimeout)
	k.proc = nil
}

func (k *KubeAPIServer) stopLocked() {
	if k.proc == nil {
		return
	}
	k.proc.stop(syscall.SIGTERM, kubeStopTimeout)
	k.proc = nil
}

// Close stops the API server and its etcd.
func (k *KubeAPIServer) Close() {
	k.Stop()
	k.etcd.Stop()
}

// LogTail returns the end of the API server's log.
func (k *KubeAPIServer) LogTail() string { return tail(filepath.Join(k.Dir, "kube-apiserver.log")) }
