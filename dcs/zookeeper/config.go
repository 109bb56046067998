package zookeeper

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"k8s.io/utils/clock"
)

// Defaults of Config: Patroni's (spec/dcs-layout.md §3, spec/config.md).
const (
	// DefaultNamespace is the first path element of every znode.
	DefaultNamespace = "/service"
	// DefaultTTL is the session timeout. The leader and member znodes are
	// ephemeral, so they vanish at most this long after the session last
	// reached a server (or after the HA loop last refreshed them; see the
	// package doc on liveness).
	DefaultTTL = 30 * time.Second
	// DefaultLoopWait is Patroni's loop_wait; it only shapes the connect
	// timeout after SetTTL.
	DefaultLoopWait = 10 * time.Second
	// DefaultRetryTimeout bounds a call whose context has no deadline, and
	// sets the per-attempt connect timeout (retry_timeout/2, at least 1 s).
	DefaultRetryTimeout = 10 * time.Second
	// DefaultPort is ZooKeeper's client port, used for hosts without one.
	DefaultPort = 2181
	// DefaultExhibitorPollInterval is how often the Exhibitor ensemble list
	// is polled (Patroni's poll_interval default, 300 s).
	DefaultExhibitorPollInterval = 300 * time.Second
	// DefaultExhibitorPort is the port of the Exhibitor REST API.
	DefaultExhibitorPort = 8181
)

// Config opens a Store. Scope and either Hosts or Exhibitor are required.
type Config struct {
	// Hosts are the ZooKeeper servers as "host:port" ("host" alone means
	// port 2181). Patroni's `zookeeper.hosts` (a list or a comma-separated
	// string: see ParseHosts).
	Hosts []string
	// Exhibitor, when set, discovers the ensemble from Exhibitor's REST API
	// instead of Hosts (Patroni's `exhibitor` section).
	Exhibitor *Exhibitor

	// Namespace is the first path element (default "/service"); leading,
	// trailing and repeated slashes are tolerated.
	Namespace string
	// Scope is the cluster name, the second path element. Required.
	Scope string
	// Name is this member's name. Empty for ctl-style tools, which then
	// cannot call member or leader methods (dcs.ErrNoMember).
	Name string

	// TTL is the ZooKeeper session timeout (default 30 s). The server
	// clamps it to its minSessionTimeout..maxSessionTimeout (by default
	// 2..20 ticks, 4..40 s with tickTime=2000).
	TTL time.Duration
	// LoopWait is the HA loop interval (default 10 s).
	LoopWait time.Duration
	// RetryTimeout bounds calls whose context has no deadline (default
	// 10 s). A connect attempt to one server times out after
	// max(1 s, RetryTimeout/2).
	RetryTimeout time.Duration

	// UseSSL turns TLS on (`use_ssl`). CACert, Cert and Key are PEM file
	// paths; KeyPassword decrypts a legacy encrypted PEM key. Verify false
	// skips server certificate verification (nil means true).
	UseSSL      bool
	CACert      string
	Cert        string
	Key         string
	KeyPassword string
	Verify      *bool
	// TLS, when non-nil, is used as is (and turns TLS on); the fields
	// above are then ignored.
	TLS *tls.Config

	// AuthData maps an authentication scheme to its credential
	// (`auth_data`, for example {"digest": "user:password"}); each pair is
	// sent with addauth on every new session.
	AuthData map[string]string
	// SetACLs maps a principal to the permissions every created znode
	// grants it (`set_acls`; permissions CREATE, READ, WRITE, DELETE, ADMIN,
	// ALL). A principal "scheme:id" names its scheme (world, auth, digest,
	// ip, x509, sasl); any other principal is an x509 principal, as in
	// Patroni. Empty means world:anyone with all permissions.
	SetACLs map[string][]string

	// Dial, when set, opens connections to servers instead of net.Dialer
	// (and the TLS settings). Tests use it to cut links.
	Dial func(network, address string, timeout time.Duration) (net.Conn, error)
	// Clock times the liveness check (nil: the real clock).
	Clock clock.WithTicker
	// Logger receives connection and session events; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Exhibitor configures ensemble discovery through Netflix Exhibitor.
type Exhibitor struct {
	// Hosts are Exhibitor hosts (names or addresses, no port).
	Hosts []string
	// Port is the Exhibitor REST API port (default 8181).
	Port int
	// PollInterval is how often the ensemble list is re-read (default
	// 300 s). A changed list takes effect at once: when the server the
	// session is connected to left the ensemble, the client reconnects to
	// one that is in it, keeping its session.
	PollInterval time.Duration
	// Scheme is "http" (default) or "https".
	Scheme string
}

// ParseHosts splits Patroni's `hosts` value: a list, or one string with
// comma-separated "host:port" entries. Blank entries are dropped.
func ParseHosts(v any) ([]string, error) {
	var raw []string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		raw = strings.Split(x, ",")
	case []string:
		raw = x
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("zookeeper: hosts entry %v is not a string", e)
			}
			raw = append(raw, s)
		}
	default:
		return nil, fmt.Errorf("zookeeper: hosts %v is neither a list nor a string", v)
	}
	var out []string
	for _, h := range raw {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out, nil
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.LoopWait <= 0 {
		c.LoopWait = DefaultLoopWait
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = DefaultRetryTimeout
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Exhibitor != nil {
		e := *c.Exhibitor
		if e.Port == 0 {
			e.Port = DefaultExhibitorPort
		}
		if e.PollInterval <= 0 {
			e.PollInterval = DefaultExhibitorPollInterval
		}
		if e.Scheme == "" {
			e.Scheme = "http"
		}
		c.Exhibitor = &e
	}
	return c
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if len(c.Hosts) == 0 && c.Exhibitor == nil {
		errs = append(errs, errors.New("zookeeper: no hosts and no exhibitor"))
	}
	for _, h := range c.Hosts {
		if _, err := hostPort(h); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Exhibitor != nil {
		if len(c.Exhibitor.Hosts) == 0 {
			errs = append(errs, errors.New("zookeeper: exhibitor has no hosts"))
		}
		if c.Exhibitor.Port < 0 || c.Exhibitor.Port > 65535 {
			errs = append(errs, fmt.Errorf("zookeeper: exhibitor port %d out of range", c.Exhibitor.Port))
		}
		if s := c.Exhibitor.Scheme; s != "" && s != "http" && s != "https" {
			errs = append(errs, fmt.Errorf("zookeeper: exhibitor scheme %q is not http or https", s))
		}
	}
	if strings.Trim(c.Scope, "/") == "" {
		errs = append(errs, fmt.Errorf("zookeeper: scope %q is empty", c.Scope))
	} else if strings.Contains(strings.Trim(c.Scope, "/"), "/") {
		errs = append(errs, fmt.Errorf("zookeeper: scope %q contains a slash", c.Scope))
	}
	if strings.Contains(c.Name, "/") {
		errs = append(errs, fmt.Errorf("zookeeper: member name %q contains a slash", c.Name))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, fmt.Errorf("zookeeper: cert %q and key %q must be set together", c.Cert, c.Key))
	}
	if _, err := acls(c.SetACLs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Prefix returns the znode path of a cluster, "/<namespace>/<scope>"
// (spec/dcs-layout.md §1), without a trailing slash.
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
	return "/" + strings.Join(parts, "/")
}

// hostPort normalizes a host to "host:port".
func hostPort(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", errors.New("zookeeper: empty host")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or a bare IPv6 address).
		return net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(DefaultPort)), nil
	}
	if host == "" {
		return "", fmt.Errorf("zookeeper: host %q has no host name", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("zookeeper: host %q: bad port", h)
	}
	return h, nil
}

// permissions of set_acls, by name.
var permNames = map[string]int32{
	"CREATE": zk.PermCreate, "READ": zk.PermRead, "WRITE": zk.PermWrite,
	"DELETE": zk.PermDelete, "ADMIN": zk.PermAdmin, "ALL": zk.PermAll,
}

var aclSchemes = []string{"world", "auth", "digest", "ip", "x509", "sasl"}

// acls turns set_acls into ZooKeeper ACLs, sorted by principal; nil when
// none is configured (world:anyone, all permissions).
func acls(set map[string][]string) ([]zk.ACL, error) {
	if len(set) == 0 {
		return nil, nil
	}
	var errs []error
	var out []zk.ACL
	for _, principal := range slices.Sorted(func(yield func(string) bool) {
		for k := range set {
			if !yield(k) {
				return
			}
		}
	}) {
		var perms int32
		for _, p := range set[principal] {
			v, ok := permNames[strings.ToUpper(strings.TrimSpace(p))]
			if !ok {
				errs = append(errs, fmt.Errorf("zookeeper: set_acls %s: unknown permission %q", principal, p))
				continue
			}
			perms |= v
		}
		scheme, id := "x509", principal
		if s, rest, ok := strings.Cut(principal, ":"); ok && slices.Contains(aclSchemes, s) {
			scheme, id = s, rest
		}
		out = append(out, zk.ACL{Perms: perms, Scheme: scheme, ID: id})
	}
	return out, errors.Join(errs...)
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS != nil {
		return c.TLS, nil
	}
	if !c.UseSSL {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.Verify != nil && !*c.Verify {
		cfg.InsecureSkipVerify = true
	}
	if c.CACert != "" {
		b, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("zookeeper: read cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("zookeeper: cacert %s: no PEM certificate found", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := loadKeyPair(c.Cert, c.Key, c.KeyPassword)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// loadKeyPair loads a client certificate and key; password decrypts a
// legacy encrypted PEM key ("Proc-Type: 4,ENCRYPTED").
func loadKeyPair(certFile, keyFile, password string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("zookeeper: read cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("zookeeper: read key: %w", err)
	}
	if password != "" {
		block, _ := pem.Decode(keyPEM)
		//nolint:staticcheck // legacy encrypted PEM is what key_password is for.
		if block != nil && x509.IsEncryptedPEMBlock(block) {
			//nolint:staticcheck // see above
			der, err := x509.DecryptPEMBlock(block, []byte(password))
			if err != nil {
				return tls.Certificate{}, fmt.Errorf("zookeeper: decrypt key %s: %w", keyFile, err)
			}
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("zookeeper: load client cert %s/%s: %w", certFile, keyFile, err)
	}
	return cert, nil
}
