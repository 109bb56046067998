package consul

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// Consistency is the read mode of KV reads (spec/dcs-layout.md §3, §6).
type Consistency string

// Read modes, as the "consistency" key of the consul section names them.
const (
	// ConsistencyDefault reads from the Consul leader without the extra
	// round of leadership verification: stale only across a leader change.
	ConsistencyDefault Consistency = "default"
	// ConsistencyConsistent verifies leadership on every read
	// (linearizable); what ctl-style tools use.
	ConsistencyConsistent Consistency = "consistent"
	// ConsistencyStale lets any server answer, possibly behind the leader.
	ConsistencyStale Consistency = "stale"
)

// ReadMode selects how Store.Cluster reads the cluster.
type ReadMode int

const (
	// ReadCache serves the watcher's cache: no request at all in steady
	// state. Writes of this Store are always visible; other clients'
	// writes appear as soon as the blocking query returns (milliseconds),
	// which is also when Changes fires. What a daemon wants.
	ReadCache ReadMode = iota
	// ReadSynced asks Consul for the prefix's index first (a key listing
	// without values) and serves the cache once it has caught up, so a
	// snapshot includes every write completed before the call. One small
	// request per call.
	ReadSynced
	// ReadConsistent reads the whole prefix with a consistent read on every
	// call, as patronictl does.
	ReadConsistent
)

// Config configures one Store. Use DefaultConfig and change what you need;
// zero fields take the defaults documented on each field.
type Config struct {
	// Address is the agent's HTTP address, host:port. Default
	// "127.0.0.1:8500".
	Address string
	// Scheme is "http" or "https". Default "http".
	Scheme string
	// Token is the ACL token sent as X-Consul-Token; "" sends none (the
	// agent's default token applies).
	Token string
	// Datacenter is the datacenter queried ("dc"); "" means the agent's.
	Datacenter string
	// Consistency is the read mode of Cluster reads. Default
	// ConsistencyDefault. The watcher's blocking queries use it too.
	Consistency Consistency
	// TLS configures HTTPS to the agent.
	TLS TLSConfig
	// ReadMode says how Cluster reads. Default ReadCache. A Store without
	// a Name always uses ReadConsistent.
	ReadMode ReadMode

	// Namespace is the first path element. Default "service"; leading,
	// trailing and repeated slashes are ignored (spec/dcs-layout.md §1).
	Namespace string
	// Scope is the cluster name. Required.
	Scope string
	// Name is this member's name. "" opens a Store without a member, as
	// ctl-style tools do: member and leader writes then fail with
	// dcs.ErrNoMember.
	Name string

	// TTL is the cluster's ttl: how long the leader and member keys outlive
	// the last refresh. The session is created with TTL/2 because Consul
	// invalidates a session up to twice its TTL after the last renewal, so
	// the effective expiry is TTL (spec/dcs-layout.md §6). Default 30 s.
	// SetTTL changes it later.
	TTL time.Duration
	// RetryTimeout bounds a call whose ctx has no deadline. ha.Node always
	// passes a deadline (retry_timeout); this only guards other callers
	// from a hung agent. Default 10 s.
	RetryTimeout time.Duration
	// WatchWait is how long one blocking query of the watcher waits for a
	// change before Consul answers "unchanged" (Consul adds up to 1/16 of
	// jitter). Shorter means more idle requests; the cache counts as stale
	// when no answer came within WatchWait*17/16 + 2 s, so it also bounds
	// how long a silently hung agent goes unnoticed by Cluster. Default
	// 10 s.
	WatchWait time.Duration
	// Checks are the health checks bound to the session (the "checks"
	// key). Default none: only the TTL can invalidate the session, which is
	// what the safety rule needs (a check failing on another node must not
	// drop our leader key).
	Checks []string

	// Service configures registration of the member in the Consul catalog.
	Service ServiceConfig

	// Clock is the time source. Default clock.RealClock{}.
	Clock clock.WithTicker
	// Logger receives the store's logs. nil means slog.Default().
	Logger *slog.Logger
}

// TLSConfig configures HTTPS to the agent. File paths are read when the
// Store is opened.
type TLSConfig struct {
	// CACert is the CA bundle to verify the agent with ("cacert"); "" uses
	// the system roots.
	CACert string
	// Cert and Key are the client certificate and key ("cert", "key").
	Cert string
	Key  string
	// InsecureSkipVerify turns off server verification ("verify: false").
	InsecureSkipVerify bool
}

// ServiceConfig configures the catalog registration of the member
// (spec/dcs-layout.md §6, "register_service").
type ServiceConfig struct {
	// Register turns registration on ("register_service"). Default false.
	Register bool
	// Tags are added to the role tag ("service_tags").
	Tags []string
	// CheckInterval is the interval of the HTTP check against the member's
	// REST API ("service_check_interval"). Default 5 s.
	CheckInterval time.Duration
	// CheckTLSServerName is the SNI name the check uses against an HTTPS
	// REST API ("service_check_tls_server_name").
	CheckTLSServerName string
}

// Defaults, each with why it is safe.
const (
	// defaultTTL is Patroni's ttl default.
	defaultTTL = 30 * time.Second
	// defaultRetryTimeout is Patroni's retry_timeout default.
	defaultRetryTimeout = 10 * time.Second
	// defaultWatchWait keeps one idle request per member every 10 s; a
	// change still answers at once.
	defaultWatchWait = 10 * time.Second
	// defaultCheckInterval is Patroni's service_check_interval default.
	defaultCheckInterval = 5 * time.Second
	// lockDelay is the session's lock-delay. Consul's default of 15 s
	// would keep the leader key unacquirable for 15 s after the leader's
	// session is invalidated, adding that to every failover; Patroni sets
	// 1 ms. The safety of failover rests on the TTL, not on the delay.
	lockDelay = time.Millisecond
	// minSessionTTL is Consul's default session_ttl_min: the lowest session
	// TTL an agent accepts unless configured otherwise. Used only to
	// report the effective expiry when the agent rejects our TTL and does
	// not say its limit.
	minSessionTTL = 10 * time.Second
)

// DefaultConfig returns a Config with every default filled in except Scope
// and Name.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = "127.0.0.1:8500"
	}
	if c.Scheme == "" {
		c.Scheme = "http"
	}
	if c.Consistency == "" {
		c.Consistency = ConsistencyDefault
	}
	if c.Namespace == "" {
		c.Namespace = "service"
	}
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = defaultRetryTimeout
	}
	if c.WatchWait == 0 {
		c.WatchWait = defaultWatchWait
	}
	if c.Service.CheckInterval == 0 {
		c.Service.CheckInterval = defaultCheckInterval
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Checks = append([]string(nil), c.Checks...)
	c.Service.Tags = append([]string(nil), c.Service.Tags...)
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	if c.Scope == "" {
		errs = append(errs, errors.New("consul: scope is required"))
	}
	if strings.Contains(c.Name, "/") {
		errs = append(errs, fmt.Errorf("consul: member name %q contains a slash", c.Name))
	}
	if strings.Contains(c.Scope, "/") {
		errs = append(errs, fmt.Errorf("consul: scope %q contains a slash", c.Scope))
	}
	if c.Scheme != "http" && c.Scheme != "https" {
		errs = append(errs, fmt.Errorf("consul: scheme %q: want http or https", c.Scheme))
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("consul: address %q: want host:port: %w", c.Address, err))
	}
	switch c.Consistency {
	case ConsistencyDefault, ConsistencyConsistent, ConsistencyStale:
	default:
		errs = append(errs, fmt.Errorf("consul: consistency %q: want default, consistent or stale", c.Consistency))
	}
	if c.TTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("consul: ttl %s: want at least 2s", c.TTL))
	}
	if c.RetryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("consul: retry timeout %s: want > 0", c.RetryTimeout))
	}
	if c.WatchWait < time.Second {
		errs = append(errs, fmt.Errorf("consul: watch wait %s: want at least 1s", c.WatchWait))
	}
	if c.ReadMode < ReadCache || c.ReadMode > ReadConsistent {
		errs = append(errs, fmt.Errorf("consul: read mode %d: unknown", c.ReadMode))
	}
	if c.Service.CheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("consul: service check interval %s: want > 0", c.Service.CheckInterval))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("consul: tls cert and key must be set together"))
	}
	return errors.Join(errs...)
}

// prefix returns the KV prefix of the cluster, without a leading slash and
// with a trailing one: "service/batman/".
func (c Config) prefix() string {
	var parts []string
	for p := range strings.SplitSeq(c.Namespace, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	parts = append(parts, c.Scope)
	return strings.Join(parts, "/") + "/"
}

// FileConfig is the "consul" section of a Patroni configuration file
// (spec/config.md, DCS sections). Decode the section into it (YAML or JSON
// tags match Patroni's keys) and turn it into a Config with Config.
type FileConfig struct {
	// Host is host or host:port of the agent. Default "127.0.0.1:8500".
	Host string `yaml:"host" json:"host,omitempty"`
	// URL is scheme://host:port; it takes precedence over Host, Port and
	// Scheme.
	URL string `yaml:"url" json:"url,omitempty"`
	// Port is the agent port when Host has none. Default 8500.
	Port int `yaml:"port" json:"port,omitempty"`
	// Scheme is http or https. Default http.
	Scheme string `yaml:"scheme" json:"scheme,omitempty"`
	Token  string `yaml:"token" json:"token,omitempty"`
	// Verify checks the agent's certificate. Default true.
	Verify *bool  `yaml:"verify" json:"verify,omitempty"`
	CACert string `yaml:"cacert" json:"cacert,omitempty"`
	Cert   string `yaml:"cert" json:"cert,omitempty"`
	Key    string `yaml:"key" json:"key,omitempty"`
	DC     string `yaml:"dc" json:"dc,omitempty"`
	// Consistency is default, consistent or stale. Default "default".
	Consistency     string   `yaml:"consistency" json:"consistency,omitempty"`
	Checks          []string `yaml:"checks" json:"checks,omitempty"`
	RegisterService bool     `yaml:"register_service" json:"register_service,omitempty"`
	ServiceTags     []string `yaml:"service_tags" json:"service_tags,omitempty"`
	// ServiceCheckInterval is a Consul duration ("5s", "1m"; a bare number
	// is seconds). Default "5s".
	ServiceCheckInterval      string `yaml:"service_check_interval" json:"service_check_interval,omitempty"`
	ServiceCheckTLSServerName string `yaml:"service_check_tls_server_name" json:"service_check_tls_server_name,omitempty"`
}

// Config maps the section to a Config for the given cluster and member.
// Fields the section does not cover (TTL, Namespace, Clock, Logger, ...)
// keep their defaults; set them on the result.
func (f FileConfig) Config(scope, name string) (Config, error) {
	c := Config{
		Scope:       scope,
		Name:        name,
		Scheme:      f.Scheme,
		Token:       f.Token,
		Datacenter:  f.DC,
		Consistency: Consistency(f.Consistency),
		Checks:      f.Checks,
		TLS: TLSConfig{
			CACert:             f.CACert,
			Cert:               f.Cert,
			Key:                f.Key,
			InsecureSkipVerify: f.Verify != nil && !*f.Verify,
		},
		Service: ServiceConfig{
			Register:           f.RegisterService,
			Tags:               f.ServiceTags,
			CheckTLSServerName: f.ServiceCheckTLSServerName,
		},
	}
	var errs []error
	switch {
	case f.URL != "":
		u, err := url.Parse(f.URL)
		if err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("consul: url %q: want scheme://host:port", f.URL))
			break
		}
		c.Scheme = u.Scheme
		c.Address = withPort(u.Host, defaultPort(u.Scheme, f.Port))
	case f.Host != "":
		c.Address = withPort(f.Host, defaultPort(f.Scheme, f.Port))
	case f.Port != 0:
		c.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port))
	}
	if f.ServiceCheckInterval != "" {
		d, err := parseConsulDuration(f.ServiceCheckInterval)
		if err != nil {
			errs = append(errs, fmt.Errorf("consul: service_check_interval %q: %w", f.ServiceCheckInterval, err))
		}
		c.Service.CheckInterval = d
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

func defaultPort(scheme string, port int) int {
	if port != 0 {
		return port
	}
	_ = scheme // Consul's HTTPS port is configured per agent; Patroni assumes 8500 for both.
	return 8500
}

// withPort adds port to host when host has none.
func withPort(host string, port int) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
}

// parseConsulDuration parses a Go/Consul duration, or a bare number of
// seconds.
func parseConsulDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 5s")
	}
	return d, nil
}
