package kubernetes

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
)

// ReadMode selects how Store.Cluster reads the cluster.
type ReadMode int

const (
	// ReadCache serves the list+watch caches as they are: no request at
	// all. Other clients' writes show up as soon as the watch delivers
	// them (milliseconds). This is Patroni's behaviour and the default for
	// a Store with a member name.
	ReadCache ReadMode = iota
	// ReadConsistent lists the cluster's objects and pods on every call (two
	// LIST requests, each a quorum read) and merges them into the caches,
	// so a snapshot includes every write that finished before the call.
	// The default for a Store without a member name, as ctl tools read.
	ReadConsistent
)

// Port is one port of the leader Endpoints in Endpoints mode ("ports").
type Port struct {
	// Name is the port name; required when there is more than one port.
	Name string `yaml:"name" json:"name,omitempty"`
	// Port is the port number. Required.
	Port int32 `yaml:"port" json:"port"`
	// Protocol is TCP, UDP or SCTP. Default TCP.
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
}

// Config configures one Store. Use DefaultConfig and change what you need;
// zero fields take the defaults documented on each field.
type Config struct {
	// Scope is the cluster name: the prefix of every object name and the
	// value of ScopeLabel. Required.
	Scope string
	// Name is this member's name, which must be the name of its pod. ""
	// opens a Store without a member, as ctl-style tools do: member and
	// leader writes then fail with dcs.ErrNoMember.
	Name string
	// Namespace is the Kubernetes namespace of every object and pod
	// ("namespace" of the kubernetes section; Patroni's global namespace
	// is not used). Default "default".
	Namespace string

	// Labels are put on every object the store creates and select the
	// cluster's objects and pods, together with ScopeLabel=Scope.
	Labels map[string]string
	// ScopeLabel is the label that carries the scope. Default
	// "cluster-name".
	ScopeLabel string
	// RoleLabel is the pod label that carries the member's role. Default
	// "role".
	RoleLabel string
	// LeaderLabelValue is RoleLabel's value on the leader's pod. Default
	// "primary".
	LeaderLabelValue string
	// FollowerLabelValue is RoleLabel's value on a running replica's pod.
	// Default "replica".
	FollowerLabelValue string
	// StandbyLeaderLabelValue is RoleLabel's value on a standby leader's
	// pod. Default "primary".
	StandbyLeaderLabelValue string
	// TmpRoleLabel, when set, is a second role label that always carries
	// the default values (primary, or the role name), for migrations
	// between label schemes. Default none.
	TmpRoleLabel string
	// BootstrapLabels are set on the pod while it bootstraps or creates a
	// replica and removed afterwards.
	BootstrapLabels map[string]string

	// UseEndpoints selects Endpoints mode: the leader record lives in the
	// Endpoints object <scope>, whose subsets point at the leader pod, so
	// that a Service without selector named <scope> routes to the leader.
	// Default false (ConfigMaps).
	UseEndpoints bool
	// PodIP is the leader address written into the leader Endpoints.
	// Default: status.podIP of this member's pod.
	PodIP string
	// Ports are the ports of the leader Endpoints. Default [{Port: 5432}].
	Ports []Port

	// ReadMode says how Cluster reads. Default ReadCache for a Store with
	// a member name, ReadConsistent without one.
	ReadMode ReadMode

	// RetriableHTTPCodes are HTTP status codes retried within a call's
	// deadline in addition to 500, 503, 504, 429 and any response that
	// carries Retry-After.
	RetriableHTTPCodes []int

	// Client, when set, is the clientset to use as is (REST, Kubeconfig,
	// Context, CACert and BypassAPIService are then ignored), for programs
	// that already hold one and for tests with client-go's fake clientset.
	Client kubernetes.Interface
	// REST, when set, is the API server connection to use as is (tests,
	// programs that already hold a rest.Config). Otherwise the in-cluster
	// service account is used when KUBERNETES_SERVICE_HOST is set, else a
	// kubeconfig.
	REST *rest.Config
	// Kubeconfig is the kubeconfig file path; "" uses $KUBECONFIG or
	// ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context ("context"); "" uses the current
	// context.
	Context string
	// CACert overrides the CA bundle of the in-cluster connection
	// ("cacert"; PATRONI_KUBERNETES_CACERT is read by package config).
	CACert string
	// BypassAPIService resolves the API servers behind the default/
	// kubernetes Endpoints when the Store opens and talks to the first one
	// directly instead of through the service IP. If that lookup fails
	// (for example RBAC forbids it) the service is used.
	BypassAPIService bool

	// TTL is how long the leader record and member records count as live
	// after they last changed, timed on this Store's clock (there is no
	// server-side expiry). Written into the leader's "ttl" annotation, so
	// every reader uses the writer's TTL. Default 30 s. SetTTL changes it.
	TTL time.Duration
	// RetryTimeout bounds a call whose ctx has no deadline. ha.Node always
	// passes a deadline (retry_timeout). Default 10 s.
	RetryTimeout time.Duration

	// Clock is the time source of expiry and renew stamps. Default
	// clock.RealClock{}.
	Clock clock.WithTicker
	// Logger receives the store's logs. nil means slog.Default().
	Logger *slog.Logger
}

// Defaults, each with why it is safe.
const (
	// defaultTTL is Patroni's ttl default.
	defaultTTL = 30 * time.Second
	// defaultRetryTimeout is Patroni's retry_timeout default.
	defaultRetryTimeout = 10 * time.Second
	// maxRetryDelay is the cap of the backoff between retries of one call
	// (spec/dcs-layout.md §3: max delay 1 s).
	maxRetryDelay = time.Second
	// defaultPort is PostgreSQL's port, Patroni's default for "ports".
	defaultPort = 5432
)

// DefaultConfig returns a Config with every default filled in except Scope
// and Name.
func DefaultConfig() Config { return Config{}.withDefaults() }

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.ScopeLabel == "" {
		c.ScopeLabel = "cluster-name"
	}
	if c.RoleLabel == "" {
		c.RoleLabel = "role"
	}
	if c.LeaderLabelValue == "" {
		c.LeaderLabelValue = "primary"
	}
	if c.FollowerLabelValue == "" {
		c.FollowerLabelValue = "replica"
	}
	if c.StandbyLeaderLabelValue == "" {
		c.StandbyLeaderLabelValue = "primary"
	}
	if len(c.Ports) == 0 {
		c.Ports = []Port{{Port: defaultPort}}
	} else {
		c.Ports = append([]Port(nil), c.Ports...)
	}
	if c.Name == "" && c.ReadMode == ReadCache {
		c.ReadMode = ReadConsistent
	}
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = defaultRetryTimeout
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Labels = cloneMap(c.Labels)
	c.BootstrapLabels = cloneMap(c.BootstrapLabels)
	c.RetriableHTTPCodes = append([]int(nil), c.RetriableHTTPCodes...)
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("kubernetes: "+format, args...))
	}
	if c.Scope == "" {
		bad("scope is required")
	}
	// Object names are <scope>-config etc.: DNS subdomain names.
	for _, suffix := range []string{"", "-config"} {
		for _, msg := range validation.IsDNS1123Subdomain(c.Scope + suffix) {
			bad("scope %q does not make a valid object name: %s", c.Scope, msg)
		}
	}
	if c.Name != "" {
		for _, msg := range validation.IsDNS1123Subdomain(c.Name) {
			bad("member name %q is not a valid pod name: %s", c.Name, msg)
		}
	}
	for _, msg := range validation.IsDNS1123Label(c.Namespace) {
		bad("namespace %q: %s", c.Namespace, msg)
	}
	checkLabel := func(what, key, value string) {
		for _, msg := range validation.IsQualifiedName(key) {
			bad("%s key %q: %s", what, key, msg)
		}
		for _, msg := range validation.IsValidLabelValue(value) {
			bad("%s %q value %q: %s", what, key, value, msg)
		}
	}
	for k, v := range c.Labels {
		checkLabel("label", k, v)
	}
	for k, v := range c.BootstrapLabels {
		checkLabel("bootstrap label", k, v)
	}
	checkLabel("scope_label", c.ScopeLabel, c.Scope)
	checkLabel("role_label", c.RoleLabel, c.LeaderLabelValue)
	checkLabel("role_label", c.RoleLabel, c.FollowerLabelValue)
	checkLabel("role_label", c.RoleLabel, c.StandbyLeaderLabelValue)
	if c.TmpRoleLabel != "" {
		checkLabel("tmp_role_label", c.TmpRoleLabel, "primary")
	}
	if _, ok := c.Labels[c.ScopeLabel]; ok {
		bad("labels must not set the scope label %q", c.ScopeLabel)
	}
	for i, p := range c.Ports {
		if p.Port < 1 || p.Port > 65535 {
			bad("ports[%d]: port %d out of range", i, p.Port)
		}
		if len(c.Ports) > 1 && p.Name == "" {
			bad("ports[%d]: a name is required when there are several ports", i)
		}
		switch p.Protocol {
		case "", "TCP", "UDP", "SCTP":
		default:
			bad("ports[%d]: protocol %q: want TCP, UDP or SCTP", i, p.Protocol)
		}
	}
	if c.ReadMode != ReadCache && c.ReadMode != ReadConsistent {
		bad("read mode %d is unknown", c.ReadMode)
	}
	for _, code := range c.RetriableHTTPCodes {
		if code < 100 || code > 599 {
			bad("retriable_http_codes: %d is not an HTTP status code", code)
		}
	}
	if c.TTL < time.Second {
		bad("ttl %s: want at least 1s", c.TTL)
	}
	if c.RetryTimeout <= 0 {
		bad("retry timeout %s: want > 0", c.RetryTimeout)
	}
	return errors.Join(errs...)
}

// selector returns the label selector of the cluster's objects and pods.
func (c Config) selector() string {
	parts := make([]string, 0, len(c.Labels)+1)
	for k, v := range c.Labels {
		parts = append(parts, k+"="+v)
	}
	parts = append(parts, c.ScopeLabel+"="+c.Scope)
	return strings.Join(parts, ",")
}

// objectLabels returns the labels of an object the store creates.
func (c Config) objectLabels() map[string]string {
	l := cloneMap(c.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[c.ScopeLabel] = c.Scope
	return l
}

// restConfig returns the connection to the API server: c.REST, the
// in-cluster service account, or a kubeconfig.
func (c Config) restConfig() (*rest.Config, error) {
	if c.REST != nil {
		return rest.CopyConfig(c.REST), nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: KUBERNETES_SERVICE_HOST is set, so the pod's service account is used, but it is not usable: %w; mount the service account token in the pod, or unset KUBERNETES_SERVICE_HOST to use a kubeconfig", err)
		}
		if c.CACert != "" {
			rc.TLSClientConfig.CAFile = c.CACert
			rc.TLSClientConfig.CAData = nil
		}
		return rc, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	noCredentials := func(err error) error {
		where := rules.GetExplicitFile()
		if where == "" {
			where = strings.Join(rules.GetLoadingPrecedence(), ", ")
		}
		return fmt.Errorf("kubernetes: no API server credentials: not running in a pod (KUBERNETES_SERVICE_HOST is not set) and no kubeconfig found (looked at %s); set KUBECONFIG to a kubeconfig file, or run in a pod with a service account: %w", where, err)
	}
	if raw, err := rules.Load(); err == nil && clientcmdapi.IsConfigEmpty(raw) {
		return nil, noCredentials(clientcmd.ErrEmptyConfig)
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, noCredentials(err)
		}
		return nil, fmt.Errorf("kubernetes: kubeconfig: %w", err)
	}
	return rc, nil
}

// FileConfig is the "kubernetes" section of a Patroni configuration file
// (spec/config.md, DCS sections). Decode the section into it (YAML or JSON
// tags match Patroni's keys) and turn it into a Config with Config.
type FileConfig struct {
	Namespace               string            `yaml:"namespace" json:"namespace,omitempty"`
	Labels                  map[string]string `yaml:"labels" json:"labels,omitempty"`
	ScopeLabel              string            `yaml:"scope_label" json:"scope_label,omitempty"`
	RoleLabel               string            `yaml:"role_label" json:"role_label,omitempty"`
	LeaderLabelValue        string            `yaml:"leader_label_value" json:"leader_label_value,omitempty"`
	FollowerLabelValue      string            `yaml:"follower_label_value" json:"follower_label_value,omitempty"`
	StandbyLeaderLabelValue string            `yaml:"standby_leader_label_value" json:"standby_leader_label_value,omitempty"`
	TmpRoleLabel            string            `yaml:"tmp_role_label" json:"tmp_role_label,omitempty"`
	BootstrapLabels         map[string]string `yaml:"bootstrap_labels" json:"bootstrap_labels,omitempty"`
	// UseEndpoints accepts booleans and Patroni's boolean-ish strings.
	UseEndpoints any    `yaml:"use_endpoints" json:"use_endpoints,omitempty"`
	PodIP        string `yaml:"pod_ip" json:"pod_ip,omitempty"`
	Ports        []Port `yaml:"ports" json:"ports,omitempty"`
	CACert       string `yaml:"cacert" json:"cacert,omitempty"`
	// RetriableHTTPCodes is an int, a list of ints, or a string of
	// comma-separated ints.
	RetriableHTTPCodes any    `yaml:"retriable_http_codes" json:"retriable_http_codes,omitempty"`
	BypassAPIService   any    `yaml:"bypass_api_service" json:"bypass_api_service,omitempty"`
	Context            string `yaml:"context" json:"context,omitempty"`
}

// Config maps the section to a Config for the given cluster and member.
// Fields the section does not cover (TTL, Clock, Logger, REST, ...) keep
// their defaults; set them on the result. Like Patroni's validator it
// requires labels.
func (f FileConfig) Config(scope, name string) (Config, error) {
	c := Config{
		Scope:                   scope,
		Name:                    name,
		Namespace:               f.Namespace,
		Labels:                  f.Labels,
		ScopeLabel:              f.ScopeLabel,
		RoleLabel:               f.RoleLabel,
		LeaderLabelValue:        f.LeaderLabelValue,
		FollowerLabelValue:      f.FollowerLabelValue,
		StandbyLeaderLabelValue: f.StandbyLeaderLabelValue,
		TmpRoleLabel:            f.TmpRoleLabel,
		BootstrapLabels:         f.BootstrapLabels,
		PodIP:                   f.PodIP,
		Ports:                   f.Ports,
		CACert:                  f.CACert,
		Context:                 f.Context,
	}
	var errs []error
	if len(f.Labels) == 0 {
		errs = append(errs, errors.New("kubernetes: labels are required"))
	}
	var err error
	if c.UseEndpoints, err = parseBool(f.UseEndpoints); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes: use_endpoints: %w", err))
	}
	if c.BypassAPIService, err = parseBool(f.BypassAPIService); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes: bypass_api_service: %w", err))
	}
	if c.RetriableHTTPCodes, err = parseCodes(f.RetriableHTTPCodes); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes: retriable_http_codes: %w", err))
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// parseBool reads a YAML boolean or one of Patroni's boolean-ish strings.
func parseBool(v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "on", "true", "yes", "1", "y":
			return true, nil
		case "off", "false", "no", "0", "n", "":
			return false, nil
		}
	case int:
		return x != 0, nil
	}
	return false, fmt.Errorf("want a boolean, got %v", v)
}

// parseCodes reads retriable_http_codes: an int, a list, or a string.
func parseCodes(v any) ([]int, error) {
	var items []any
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		items = x
	case []int:
		return append([]int(nil), x...), nil
	case string:
		for p := range strings.SplitSeq(x, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
	default:
		items = []any{x}
	}
	out := make([]int, 0, len(items))
	for _, it := range items {
		switch n := it.(type) {
		case int:
			out = append(out, n)
		case int64:
			out = append(out, int(n))
		case uint64:
			out = append(out, int(n))
		case float64:
			out = append(out, int(n))
		case string:
			i, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", n)
			}
			out = append(out, i)
		default:
			return nil, fmt.Errorf("%v is not an integer", it)
		}
	}
	return out, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
