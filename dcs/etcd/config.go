package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"k8s.io/utils/clock"
)

// Defaults of Config. They are Patroni's defaults (spec/dcs-layout.md §3).
const (
	// DefaultNamespace is the first path element of every key.
	DefaultNamespace = "/service"
	// DefaultTTL is the lease duration: a member that stops calling
	// TouchMember/UpdateLeader loses its keys this long after its last
	// refresh. Patroni's default; the minimum Patroni accepts is 20 s.
	DefaultTTL = 30 * time.Second
	// DefaultDialTimeout bounds connecting and authenticating in Open when
	// the caller's context has no earlier deadline.
	DefaultDialTimeout = 10 * time.Second
)

// Config opens a Store. Only Endpoints (or Client) and Scope are required.
type Config struct {
	// Endpoints are the etcd client URLs ("http://127.0.0.1:2379",
	// "https://h:2379") or bare "host:port" (http, or https when TLS is
	// configured). The client balances over all of them and fails over
	// when one stops answering.
	Endpoints []string
	// Client, when set, is used instead of dialing Endpoints; the Store
	// does not close it. Lets a caller add interceptors or share a client
	// with the embedded server.
	Client *clientv3.Client

	// Namespace is the first path element (default "/service"); leading,
	// trailing and repeated slashes are tolerated.
	Namespace string
	// Scope is the cluster name, the second path element. Required.
	Scope string
	// Name is this member's name. Empty for ctl-style tools, which then
	// cannot call member or leader methods (dcs.ErrNoMember).
	Name string

	// TTL is the lease duration (default 30 s). etcd rounds it up to whole
	// seconds and enforces its own minimum (about 2 s with default raft
	// timings).
	TTL time.Duration
	// DialTimeout bounds connecting and authenticating when the context
	// given to Open has no earlier deadline (default 10 s).
	DialTimeout time.Duration

	// ReadMode says how Cluster reads (default ReadSynced). Stores
	// without a Name always use ReadConsistent, as patronictl does.
	ReadMode ReadMode
	// SyncWait bounds the wait for a progress notification in ReadSynced
	// mode before Cluster falls back to a range read (default 1 s).
	SyncWait time.Duration

	// Username and Password enable etcd authentication (both or neither).
	Username string
	Password string
	// CACert, Cert and Key are PEM file paths: the CA that signed the
	// servers' certificates, and the client certificate and key for mutual
	// TLS. Setting any of them turns TLS on.
	CACert string
	Cert   string
	Key    string
	// TLS, when non-nil, is used as is and the three files are ignored.
	TLS *tls.Config
	// DialOptions are extra gRPC dial options (interceptors in tests).
	DialOptions []grpc.DialOption

	// Logger receives connection and cache events; nil means
	// slog.Default().
	Logger *slog.Logger
	// Clock times lease refreshes and retry back-off; nil means the real
	// clock. Lease expiry itself is timed by the etcd server.
	Clock clock.Clock
}

// ReadMode selects how Store.Cluster reads the cluster.
type ReadMode int

const (
	// ReadSynced serves the watch-fed cache after one progress request on
	// the open watch stream, so the snapshot includes every change the
	// watched member had applied when Cluster was called, including other
	// clients' writes. No range request.
	ReadSynced ReadMode = iota
	// ReadCache serves the watch-fed cache as it is: no request at all;
	// other clients' writes show up as soon as the watch delivers them
	// (milliseconds). Patroni's etcd3 cache behaves this way.
	ReadCache
	// ReadConsistent does a linearizable range read of the prefix on every
	// call (what ctl-style tools want).
	ReadConsistent
)

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.SyncWait <= 0 {
		c.SyncWait = time.Second
	}
	return c
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.Client == nil && len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("etcd: no endpoints"))
	}
	for _, e := range c.Endpoints {
		if _, err := normalizeEndpoint(e, false); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.Trim(c.Scope, "/") == "" {
		errs = append(errs, fmt.Errorf("etcd: scope %q is empty", c.Scope))
	} else if strings.Contains(strings.Trim(c.Scope, "/"), "/") {
		errs = append(errs, fmt.Errorf("etcd: scope %q contains a slash", c.Scope))
	}
	if strings.Contains(c.Name, "/") {
		errs = append(errs, fmt.Errorf("etcd: member name %q contains a slash", c.Name))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, errors.New("etcd: username and password must be set together"))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, fmt.Errorf("etcd: cert %q and key %q must be set together", c.Cert, c.Key))
	}
	return errors.Join(errs...)
}

// Prefix returns the key prefix of a cluster: "/<namespace>/<scope>/"
// (spec/dcs-layout.md §1).
func Prefix(namespace, scope string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	var parts []string
	for _, p := range strings.Split(namespace+"/"+scope, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return "/" + strings.Join(parts, "/") + "/"
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS != nil {
		return c.TLS, nil
	}
	if c.CACert == "" && c.Cert == "" {
		for _, e := range c.Endpoints {
			if strings.HasPrefix(e, "https://") {
				return &tls.Config{MinVersion: tls.VersionTLS12}, nil
			}
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd: read cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: cacert %s: no PEM certificate found", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd: load client cert %s/%s: %w", c.Cert, c.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// normalizeEndpoint turns "host:port" into a URL with the right scheme.
func normalizeEndpoint(e string, useTLS bool) (string, error) {
	if !strings.Contains(e, "://") {
		scheme := "http"
		if useTLS {
			scheme = "https"
		}
		e = scheme + "://" + e
	}
	u, err := url.Parse(e)
	if err != nil {
		return "", fmt.Errorf("etcd: endpoint %q: %w", e, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
		return "", fmt.Errorf("etcd: endpoint %q: scheme must be http or https", e)
	}
	if u.Host == "" && u.Scheme != "unix" && u.Scheme != "unixs" {
		return "", fmt.Errorf("etcd: endpoint %q has no host", e)
	}
	return e, nil
}
