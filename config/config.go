package config

import (
	"slices"

	"gopkg.in/yaml.v3"
)

// Config is the local configuration of one node: Patroni's YAML file with
// the PATRONI_* environment merged over it (spec/config.md §4, §7).
//
// Optional numbers are pointers: nil means "not set" and the documented
// default applies (see WithDefaults). Values are kept as the user wrote
// them; Validate reports what is wrong with them.
type Config struct {
	// Name is the member name, unique within the cluster. Required.
	Name string `yaml:"name"`
	// Scope is the cluster name. Required.
	Scope string `yaml:"scope"`
	// Namespace is the DCS path prefix. Default "/service".
	Namespace string `yaml:"namespace"`
	// ThreadPoolSize is Patroni's REST worker count; accepted and kept for
	// compatibility (Go serves each request on its own goroutine).
	// Default and minimum 5.
	ThreadPoolSize *int `yaml:"thread_pool_size"`
	// ThreadStackSize is accepted for compatibility, in bytes (units
	// allowed). Default 512kB, minimum 64kB.
	ThreadStackSize *Bytes `yaml:"thread_stack_size"`

	// Log configures logging.
	Log Log `yaml:"log"`
	// Bootstrap configures the creation of a new cluster.
	Bootstrap Bootstrap `yaml:"bootstrap"`
	// Citus enables Citus support when group and database are set.
	Citus *Citus `yaml:"citus"`

	// DCS sections: exactly one should be present (see DCS).
	Consul     *Consul     `yaml:"consul"`
	Etcd       *Etcd       `yaml:"etcd"`
	Etcd3      *Etcd       `yaml:"etcd3"`
	Exhibitor  *Exhibitor  `yaml:"exhibitor"`
	Kubernetes *Kubernetes `yaml:"kubernetes"`
	Raft       *Raft       `yaml:"raft"`
	ZooKeeper  *ZooKeeper  `yaml:"zookeeper"`

	// PostgreSQL configures the managed PostgreSQL instance.
	PostgreSQL PostgreSQL `yaml:"postgresql"`
	// RestAPI configures the REST API server.
	RestAPI RestAPI `yaml:"restapi"`
	// Ctl configures outbound REST calls (peers, ctl).
	Ctl Ctl `yaml:"ctl"`
	// Watchdog configures the Linux watchdog. nil means the section is
	// absent (mode automatic).
	Watchdog *Watchdog `yaml:"watchdog"`
	// Tags are the member tags, in the order written; see Tags.
	Tags Tags `yaml:"tags"`
	// StandbyCluster is accepted for compatibility but ignored locally: it
	// is a dynamic setting (spec/config.md §2).
	StandbyCluster map[string]any `yaml:"standby_cluster"`
	// TTL, LoopWait and RetryTimeout written at the top level of the local
	// file are ignored in favour of the dynamic configuration (§2); they
	// are kept only so that Validate can say so.
	TTL          *int `yaml:"ttl"`
	LoopWait     *int `yaml:"loop_wait"`
	RetryTimeout *int `yaml:"retry_timeout"`

	// tree is the merged document the struct was decoded from.
	tree *yaml.Node
}

// DCSNames lists the DCS sections in the order the daemon tries them
// (alphabetical module order, spec/config.md §4).
var DCSNames = []string{"consul", "etcd", "etcd3", "exhibitor", "kubernetes", "raft", "zookeeper"}

// DCSSections returns the names of the DCS sections present, in DCSNames
// order.
func (c *Config) DCSSections() []string {
	present := map[string]bool{
		"consul": c.Consul != nil, "etcd": c.Etcd != nil, "etcd3": c.Etcd3 != nil,
		"exhibitor": c.Exhibitor != nil, "kubernetes": c.Kubernetes != nil,
		"raft": c.Raft != nil, "zookeeper": c.ZooKeeper != nil,
	}
	var out []string
	for _, n := range DCSNames {
		if present[n] {
			out = append(out, n)
		}
	}
	return out
}

// DCS returns the name of the DCS section the daemon uses: the first
// present in DCSNames order, or "" when there is none.
func (c *Config) DCS() string {
	if s := c.DCSSections(); len(s) > 0 {
		return s[0]
	}
	return ""
}

// Tree returns a copy of the merged YAML document the configuration was
// decoded from (file(s) plus environment), with the user's key order.
func (c *Config) Tree() *yaml.Node { return clone(c.tree) }

// Log is the "log" section.
type Log struct {
	// Type is plain or json. Default plain.
	Type string `yaml:"type"`
	// Level is the log level (DEBUG, INFO, WARNING, ERROR, CRITICAL).
	// Default INFO.
	Level string `yaml:"level"`
	// TracebackLevel is DEBUG or ERROR. Default ERROR.
	TracebackLevel string `yaml:"traceback_level"`
	// Format is the record format: a string, or for json a list. Default
	// "%(asctime)s %(levelname)s: %(message)s".
	Format any `yaml:"format"`
	// DateFormat is the timestamp format.
	DateFormat string `yaml:"dateformat"`
	// StaticFields are added to every json record.
	StaticFields map[string]any `yaml:"static_fields"`
	// MaxQueueSize bounds the in-memory log queue, in records. Default 1000.
	MaxQueueSize *int `yaml:"max_queue_size"`
	// Dir enables file logging to <dir>/patroni.log.
	Dir string `yaml:"dir"`
	// Mode is the log file permission bits (0..0777).
	Mode *int `yaml:"mode"`
	// FileNum is the number of rotated files kept. Default 4.
	FileNum *int `yaml:"file_num"`
	// FileSize is the rotation size in bytes. Default 25000000.
	FileSize *int `yaml:"file_size"`
	// Loggers maps a module to its level.
	Loggers map[string]string `yaml:"loggers"`
	// DeduplicateHeartbeatLogs suppresses repeated heartbeat lines. Default
	// false.
	DeduplicateHeartbeatLogs bool `yaml:"deduplicate_heartbeat_logs"`
}

// Bootstrap is the "bootstrap" section.
type Bootstrap struct {
	// DCS is the initial dynamic configuration written to the DCS by the
	// node that bootstraps the cluster (§3). nil when absent.
	DCS *Dynamic `yaml:"dcs"`
	// Method is "initdb" (default) or the name of a custom method section.
	Method string `yaml:"method"`
	// InitDB holds initdb options: a list of strings or single-key maps,
	// or a map.
	InitDB any `yaml:"initdb"`
	// PostBootstrap is a script run once after bootstrap. Alias post_init.
	PostBootstrap string `yaml:"post_bootstrap" alias:"post_init"`
	// PgHBA lines are appended to pg_hba.conf after bootstrap.
	PgHBA []string `yaml:"pg_hba"`
	// Users was removed in Patroni 4.0; presence is reported as an error
	// in the log, not fatal.
	Users any `yaml:"users"`
	// Methods holds custom bootstrap method sections by name:
	// {command, no_params, keep_existing_recovery_conf, recovery_conf, ...}.
	Methods map[string]any `yaml:",inline"`
}

// Citus is the "citus" section.
type Citus struct {
	// Group is the Citus group: 0 for the coordinator.
	Group *int `yaml:"group"`
	// Database is the Citus database name.
	Database string `yaml:"database"`
}

// Etcd is the "etcd" or "etcd3" section. Exactly one of Host, Hosts, URL,
// Proxy, SRV should be set. Default port 2379.
type Etcd struct {
	// Host is one "host:port" endpoint.
	Host string `yaml:"host"`
	// Hosts are "host:port" endpoints (a list or a comma-separated string).
	Hosts []string `yaml:"hosts"`
	// URL is one endpoint URL; Proxy an etcd proxy URL.
	URL   string `yaml:"url"`
	Proxy string `yaml:"proxy"`
	// SRV is a DNS domain to discover endpoints from; SRVSuffix is
	// appended to the service names tried.
	SRV       string `yaml:"srv"`
	SRVSuffix string `yaml:"srv_suffix"`
	// Protocol is http or https. Default http.
	Protocol string `yaml:"protocol"`
	// UseProxies treats Hosts as proxies (no member discovery). Default
	// false.
	UseProxies bool `yaml:"use_proxies"`
	// Username and Password enable etcd authentication.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// CACert, Cert and Key are PEM files for TLS.
	CACert string `yaml:"cacert"`
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	// Port is accepted from PATRONI_ETCD_PORT.
	Port *int `yaml:"port"`
}

// Consul is the "consul" section.
type Consul struct {
	// Host is host:port. Default "127.0.0.1:8500".
	Host string `yaml:"host"`
	URL  string `yaml:"url"`
	// Port is the agent port. Default 8500.
	Port *int `yaml:"port"`
	// Scheme is http or https. Default http.
	Scheme string `yaml:"scheme"`
	// Token is the ACL token.
	Token string `yaml:"token"`
	// Verify checks the agent's certificate. Default true with https.
	Verify *bool `yaml:"verify"`
	// CACert, Cert, Key are PEM files for TLS.
	CACert string `yaml:"cacert"`
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	// DC is the datacenter. Default: the agent's.
	DC string `yaml:"dc"`
	// Consistency is default, consistent or stale.
	Consistency string `yaml:"consistency"`
	// Checks are the session health checks. Default [].
	Checks []string `yaml:"checks"`
	// RegisterService registers the member as a Consul service with
	// role tags. Default false.
	RegisterService bool `yaml:"register_service"`
	// ServiceTags are extra service tags. Default [].
	ServiceTags []string `yaml:"service_tags"`
	// ServiceCheckInterval is a Consul duration string. Default "5s".
	ServiceCheckInterval      string `yaml:"service_check_interval"`
	ServiceCheckTLSServerName string `yaml:"service_check_tls_server_name"`
}

// ZooKeeper is the "zookeeper" section.
type ZooKeeper struct {
	// Hosts are "host:port" servers (a list or a comma-separated string).
	Hosts []string `yaml:"hosts"`
	// UseSSL enables TLS. Default false.
	UseSSL bool `yaml:"use_ssl"`
	// CACert, Cert, Key, KeyPassword configure TLS.
	CACert      string `yaml:"cacert"`
	Cert        string `yaml:"cert"`
	Key         string `yaml:"key"`
	KeyPassword string `yaml:"key_password"`
	// Verify checks the server certificate. Default true.
	Verify *bool `yaml:"verify"`
	// SetACLs maps a principal to permissions (CREATE, READ, WRITE,
	// DELETE, ADMIN, ALL).
	SetACLs map[string][]string `yaml:"set_acls"`
	// AuthData maps a scheme to a credential.
	AuthData map[string]string `yaml:"auth_data"`
}

// Exhibitor is the "exhibitor" section.
type Exhibitor struct {
	// Hosts are the initial Exhibitor hosts; Port their REST port.
	Hosts []string `yaml:"hosts"`
	Port  *int     `yaml:"port"`
	// PollInterval is in seconds. Default 300.
	PollInterval *int `yaml:"poll_interval"`
}

// Kubernetes is the "kubernetes" section.
type Kubernetes struct {
	// Labels identify the cluster's objects. Required.
	Labels map[string]string `yaml:"labels"`
	// Namespace is the Kubernetes namespace. Default "default".
	Namespace string `yaml:"namespace"`
	// ScopeLabel default "cluster-name"; RoleLabel default "role".
	ScopeLabel string `yaml:"scope_label"`
	RoleLabel  string `yaml:"role_label"`
	// Label values; defaults primary, replica, primary.
	LeaderLabelValue        string `yaml:"leader_label_value"`
	FollowerLabelValue      string `yaml:"follower_label_value"`
	StandbyLeaderLabelValue string `yaml:"standby_leader_label_value"`
	// TmpRoleLabel is a second role label kept during upgrades.
	TmpRoleLabel string `yaml:"tmp_role_label"`
	// UseEndpoints stores state in Endpoints instead of ConfigMaps.
	// Default false.
	UseEndpoints bool `yaml:"use_endpoints"`
	// PodIP is this pod's IP (for Endpoints).
	PodIP string `yaml:"pod_ip"`
	// Ports are [{name, port}]; default port 5432.
	Ports []map[string]any `yaml:"ports"`
	// CACert verifies the API server.
	CACert string `yaml:"cacert"`
	// RetriableHTTPCodes are extra HTTP codes to retry (int or list).
	RetriableHTTPCodes any `yaml:"retriable_http_codes"`
	// BypassAPIService talks to API server endpoints directly. Default
	// false.
	BypassAPIService bool `yaml:"bypass_api_service"`
	// BootstrapLabels are set on the pod while it bootstraps.
	BootstrapLabels map[string]string `yaml:"bootstrap_labels"`
	// Context is the kubeconfig context used outside a pod. Default: the
	// kubeconfig's current context (Patroni's default is "kind-kind").
	Context string `yaml:"context"`
}

// Raft is the deprecated "raft" section. pgwarden serves it with an
// embedded etcd member: SelfAddr, BindAddr, PartnerAddrs and DataDir keep
// their meaning; the timing fields (seconds) are accepted and ignored.
type Raft struct {
	SelfAddr     string   `yaml:"self_addr"`
	BindAddr     string   `yaml:"bind_addr"`
	PartnerAddrs []string `yaml:"partner_addrs"`
	DataDir      string   `yaml:"data_dir"`
	Password     string   `yaml:"password"`
	// Defaults 0.4, 1.4, 3.5, 0.1, 5.0, 30.0 seconds.
	MinTimeout            *float64 `yaml:"min_timeout"`
	MaxTimeout            *float64 `yaml:"max_timeout"`
	ConnectionTimeout     *float64 `yaml:"connection_timeout"`
	AppendEntriesPeriod   *float64 `yaml:"append_entries_period"`
	ConnectionRetryTime   *float64 `yaml:"connection_retry_time"`
	LeaderFallbackTimeout *float64 `yaml:"leader_fallback_timeout"`
}

// PostgreSQL is the "postgresql" section (spec/config.md §4).
type PostgreSQL struct {
	// Listen is host[,host...]:port. Required.
	Listen string `yaml:"listen"`
	// ConnectAddress is host:port published in conn_url. Required.
	ConnectAddress string `yaml:"connect_address"`
	// ProxyAddress is published as proxy_url.
	ProxyAddress string `yaml:"proxy_address"`
	// DataDir is the data directory. Required.
	DataDir string `yaml:"data_dir"`
	// ConfigDir holds postgresql.conf, pg_hba.conf, pg_ident.conf.
	// Default DataDir.
	ConfigDir string `yaml:"config_dir"`
	// ConfigBaseName is the base config file name. Default "postgresql".
	ConfigBaseName string `yaml:"config_base_name"`
	// BinDir holds the PostgreSQL binaries. Default "" (PATH).
	BinDir string `yaml:"bin_dir"`
	// BinName overrides binary names (pg_ctl, initdb, ...).
	BinName map[string]string `yaml:"bin_name"`
	// Database is the database pgwarden connects to. Default "postgres".
	Database string `yaml:"database"`
	// PgPass is the password file pgwarden writes. Default "~/pgpass".
	PgPass string `yaml:"pgpass"`
	// Authentication holds the superuser, replication and rewind users.
	Authentication Authentication `yaml:"authentication"`
	// Parameters are GUCs; protected ones are ignored locally (§5).
	Parameters map[string]any `yaml:"parameters"`
	// Role-specific parameter overrides.
	ParametersPrimary       map[string]any `yaml:"parameters_primary"`
	ParametersReplica       map[string]any `yaml:"parameters_replica"`
	ParametersStandbyLeader map[string]any `yaml:"parameters_standby_leader"`
	// PgHBA and PgIdent are lines of pg_hba.conf / pg_ident.conf.
	PgHBA                []string `yaml:"pg_hba"`
	PgIdent              []string `yaml:"pg_ident"`
	PgHBAPrimary         []string `yaml:"pg_hba_primary"`
	PgHBAReplica         []string `yaml:"pg_hba_replica"`
	PgHBAStandbyLeader   []string `yaml:"pg_hba_standby_leader"`
	PgIdentPrimary       []string `yaml:"pg_ident_primary"`
	PgIdentReplica       []string `yaml:"pg_ident_replica"`
	PgIdentStandbyLeader []string `yaml:"pg_ident_standby_leader"`
	// CustomConf replaces postgresql.base.conf.
	CustomConf string `yaml:"custom_conf"`
	// Callbacks maps on_start, on_stop, on_restart, on_reload,
	// on_role_change to scripts.
	Callbacks map[string]string `yaml:"callbacks"`
	// CreateReplicaMethods is the ordered list of replica creation methods.
	// Default [basebackup]. Alias create_replica_method.
	CreateReplicaMethods []string `yaml:"create_replica_methods" alias:"create_replica_method"`
	// Basebackup holds pg_basebackup options (list or map).
	Basebackup any `yaml:"basebackup"`
	// RecoveryConf holds extra recovery parameters.
	RecoveryConf map[string]any `yaml:"recovery_conf"`
	// PgCtlTimeout is seconds to wait for Postgres to accept connections
	// after start. Default 60.
	PgCtlTimeout *Seconds `yaml:"pg_ctl_timeout"`
	// UsePgRewind enables pg_rewind (normally dynamic). Default false.
	UsePgRewind *bool `yaml:"use_pg_rewind"`
	// UseSlots is global only: a local value is ignored (§2).
	UseSlots *bool `yaml:"use_slots"`
	// Rewind holds pg_rewind options.
	Rewind any `yaml:"rewind"`
	// RemoveDataDirectoryOnRewindFailure default false.
	RemoveDataDirectoryOnRewindFailure bool `yaml:"remove_data_directory_on_rewind_failure"`
	// RemoveDataDirectoryOnDivergedTimelines default false.
	RemoveDataDirectoryOnDivergedTimelines bool `yaml:"remove_data_directory_on_diverged_timelines"`
	// UseUnixSocket connects locally through the socket. Default false.
	UseUnixSocket bool `yaml:"use_unix_socket"`
	// UseUnixSocketRepl uses the socket for local replication. Default false.
	UseUnixSocketRepl bool `yaml:"use_unix_socket_repl"`
	// PrePromote is a fencing script; non-zero exit aborts promotion.
	PrePromote string `yaml:"pre_promote"`
	// BeforeStop is run synchronously before stopping Postgres.
	BeforeStop string `yaml:"before_stop"`
	// KrbSrvName is the Kerberos service name.
	KrbSrvName string `yaml:"krbsrvname"`
	// Name is the legacy place of the member name.
	Name string `yaml:"name"`
	// Legacy layout: credentials outside "authentication".
	Replication *User `yaml:"replication"`
	Superuser   *User `yaml:"superuser"`
	PgRewind    *User `yaml:"pg_rewind"`
	// Methods holds custom replica-creation method sections and any other
	// key: {command, no_leader, keep_data, no_params, ...}.
	Methods map[string]any `yaml:",inline"`
}

// Authentication is postgresql.authentication.
type Authentication struct {
	Superuser   *User `yaml:"superuser"`
	Replication *User `yaml:"replication"`
	// Rewind is used by pg_rewind on PG11+; the superuser otherwise.
	Rewind *User `yaml:"rewind"`
}

// User is one set of PostgreSQL credentials. Only these keys are kept.
type User struct {
	Username       string `yaml:"username"`
	Password       string `yaml:"password"`
	SSLMode        string `yaml:"sslmode"`
	SSLCert        string `yaml:"sslcert"`
	SSLKey         string `yaml:"sslkey"`
	SSLPassword    string `yaml:"sslpassword"`
	SSLRootCert    string `yaml:"sslrootcert"`
	SSLCRL         string `yaml:"sslcrl"`
	SSLCRLDir      string `yaml:"sslcrldir"`
	GSSEncMode     string `yaml:"gssencmode"`
	ChannelBinding string `yaml:"channel_binding"`
	SSLNegotiation string `yaml:"sslnegotiation"`
}

// RestAPI is the "restapi" section.
type RestAPI struct {
	// Listen is host:port; "" or "*" host means all interfaces. Required.
	Listen string `yaml:"listen"`
	// ConnectAddress is host:port published in api_url. Required.
	ConnectAddress string `yaml:"connect_address"`
	// Authentication enables Basic auth on unsafe endpoints.
	Authentication *BasicAuth `yaml:"authentication"`
	// CertFile enables TLS.
	CertFile        string `yaml:"certfile"`
	KeyFile         string `yaml:"keyfile"`
	KeyFilePassword string `yaml:"keyfile_password"`
	// CAFile verifies client certificates.
	CAFile  string `yaml:"cafile"`
	Ciphers string `yaml:"ciphers"`
	// VerifyClient is none (default), optional or required.
	VerifyClient string `yaml:"verify_client"`
	// Allowlist holds CIDRs, IPs or host names allowed to call unsafe
	// endpoints. Empty means everyone.
	Allowlist []string `yaml:"allowlist"`
	// AllowlistIncludeMembers also allows the members' API hosts.
	AllowlistIncludeMembers bool `yaml:"allowlist_include_members"`
	// HTTPExtraHeaders are added to every response; HTTPSExtraHeaders too
	// when TLS is on.
	HTTPExtraHeaders  map[string]string `yaml:"http_extra_headers"`
	HTTPSExtraHeaders map[string]string `yaml:"https_extra_headers"`
	// RequestQueueSize is the listen backlog. Default 5, range 0..4096.
	RequestQueueSize *int `yaml:"request_queue_size"`
	// ServerTokens is original (default), minimal or productonly.
	ServerTokens string `yaml:"server_tokens"`
	// ThreadPoolSize is accepted for compatibility. Default 5.
	ThreadPoolSize *int `yaml:"thread_pool_size"`
	// Username and Password are where PATRONI_RESTAPI_USERNAME/PASSWORD
	// land before being moved into Authentication.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// BasicAuth is a username and password.
type BasicAuth struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Ctl is the "ctl" section: outbound REST calls.
type Ctl struct {
	Authentication  *BasicAuth `yaml:"authentication"`
	Insecure        bool       `yaml:"insecure"`
	CACert          string     `yaml:"cacert"`
	CertFile        string     `yaml:"certfile"`
	KeyFile         string     `yaml:"keyfile"`
	KeyFilePassword string     `yaml:"keyfile_password"`
	Username        string     `yaml:"username"`
	Password        string     `yaml:"password"`
}

// Watchdog is the "watchdog" section.
type Watchdog struct {
	// Mode is off, automatic or required. Default automatic.
	Mode string `yaml:"mode"`
	// Device default "/dev/watchdog".
	Device string `yaml:"device"`
	// SafetyMargin is seconds before ttl the watchdog fires. Default 5;
	// -1 means timeout = ttl/2.
	SafetyMargin *int `yaml:"safety_margin"`
}

func (w *Watchdog) decodeNode(d *decoder, path string, n *yaml.Node) {
	// "watchdog: false" is accepted and means off.
	if n.Kind == yaml.ScalarNode {
		if b, ok := parseBool(n.Value); ok && !b {
			w.Mode = "off"
			return
		}
	}
	type plain Watchdog
	d.decodeStruct(path, n, reflectValue((*plain)(w)))
}

// Tags are the member tags in the order written. Predefined tags have
// typed accessors; any other key is a custom tag.
type Tags struct {
	// Keys in order, and their values (bool, string, json.Number, ...).
	Keys   []string
	Values map[string]any
	lines  map[string]int
}

func (t *Tags) decodeNode(d *decoder, path string, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "must be a mapping of tag: value")
		return
	}
	t.Values = map[string]any{}
	t.lines = map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if !slices.Contains(t.Keys, k) {
			t.Keys = append(t.Keys, k)
		}
		t.lines[k] = v.Line
		switch k {
		case "nofailover", "nosync", "clonefrom", "noloadbalance", "nostream":
			b, ok := parseBool(scalarString(v))
			if v.Kind != yaml.ScalarNode || !ok {
				d.fail(join(path, k), v, "must be a boolean")
				continue
			}
			t.Values[k] = b
		case "failover_priority", "sync_priority":
			iv, ok := scalarInt(v)
			if !ok {
				d.fail(join(path, k), v, "must be an integer >= 0")
				continue
			}
			t.Values[k] = int(iv)
		case "replicatefrom":
			t.Values[k] = scalarString(v)
		default:
			t.Values[k] = toGeneric(v)
		}
	}
}

func (t Tags) boolTag(k string) (bool, bool) {
	v, ok := t.Values[k].(bool)
	return v, ok
}

func (t Tags) intTag(k string) (int, bool) {
	v, ok := t.Values[k].(int)
	return v, ok
}

// NoFailover is the derived nofailover: the bool tag if set, else
// failover_priority <= 0 (spec/config.md §4 tags).
func (t Tags) NoFailover() bool {
	if b, ok := t.boolTag("nofailover"); ok {
		return b
	}
	if p, ok := t.intTag("failover_priority"); ok {
		return p <= 0
	}
	return false
}

// FailoverPriority is 0 when NoFailover, else the tag (default 1).
func (t Tags) FailoverPriority() int {
	if t.NoFailover() {
		return 0
	}
	if p, ok := t.intTag("failover_priority"); ok {
		return p
	}
	return 1
}

// NoSync is the derived nosync, paired with sync_priority like NoFailover.
func (t Tags) NoSync() bool {
	if b, ok := t.boolTag("nosync"); ok {
		return b
	}
	if p, ok := t.intTag("sync_priority"); ok {
		return p <= 0
	}
	return false
}

// SyncPriority is 0 when NoSync, else the tag (default 1).
func (t Tags) SyncPriority() int {
	if t.NoSync() {
		return 0
	}
	if p, ok := t.intTag("sync_priority"); ok {
		return p
	}
	return 1
}

// Published returns the tags a member publishes to the DCS: every custom
// tag, predefined boolean tags only when true, nofailover always when
// failover_priority is set, nosync always when sync_priority is set.
func (t Tags) Published() map[string]any {
	out := map[string]any{}
	for _, k := range t.Keys {
		v := t.Values[k]
		switch k {
		case "nofailover", "nosync", "clonefrom", "noloadbalance", "nostream":
			if b, _ := v.(bool); b {
				out[k] = true
			}
		default:
			if v != nil {
				out[k] = v
			}
		}
	}
	if _, ok := t.Values["failover_priority"]; ok {
		out["failover_priority"] = t.FailoverPriority()
		out["nofailover"] = t.NoFailover()
	}
	if _, ok := t.Values["sync_priority"]; ok {
		out["sync_priority"] = t.SyncPriority()
		out["nosync"] = t.NoSync()
	}
	return out
}
