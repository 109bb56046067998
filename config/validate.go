package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ReservedName is the member name Patroni reserves for strict synchronous
// mode.
const ReservedName = "__patroni_strict_sync_replica_placeholder__"

// Validate checks the local configuration without touching the network or
// the file system: required keys, types already decoded, enums, bounds, the
// DCS section, tag pairs and the bootstrap.dcs timing rule. It reports
// every problem at once (errors.Join of *FieldError).
func (c *Config) Validate() error {
	var errs []error
	line := func(path ...string) int {
		if n := lookupPath(c.tree, path...); n != nil {
			return n.Line
		}
		return 0
	}
	add := func(path, value, msg string) {
		errs = append(errs, &FieldError{Path: path, Value: value, Message: msg, Line: line(strings.Split(path, ".")...)})
	}
	required := func(path, value string) {
		if strings.TrimSpace(value) == "" {
			add(path, value, "is not defined.")
		}
	}
	required("name", c.Name)
	if c.Name == ReservedName {
		add("name", c.Name, "is reserved by Patroni for strict synchronous mode; choose another name")
	}
	required("scope", c.Scope)
	required("restapi.listen", c.RestAPI.Listen)
	required("restapi.connect_address", c.RestAPI.ConnectAddress)
	required("postgresql.listen", c.PostgreSQL.Listen)
	required("postgresql.connect_address", c.PostgreSQL.ConnectAddress)
	required("postgresql.data_dir", c.PostgreSQL.DataDir)
	if c.PostgreSQL.Authentication.Superuser == nil {
		add("postgresql.authentication.superuser", "", "is not defined.")
	}
	if c.PostgreSQL.Authentication.Replication == nil {
		add("postgresql.authentication.replication", "", "is not defined.")
	}
	for _, a := range []struct{ path, v string }{
		{"restapi.listen", c.RestAPI.Listen}, {"postgresql.listen", c.PostgreSQL.Listen},
		{"restapi.connect_address", c.RestAPI.ConnectAddress}, {"postgresql.connect_address", c.PostgreSQL.ConnectAddress},
	} {
		if a.v != "" {
			if _, _, err := splitListen(a.v); err != nil {
				add(a.path, a.v, "must be host:port ("+err.Error()+")")
			}
		}
	}

	switch dcs := c.DCSSections(); len(dcs) {
	case 0:
		msg := "no DCS section: add exactly one of " + strings.Join(DCSNames, ", ")
		if unk := c.unknownTopLevel(); len(unk) > 0 {
			msg += " (unknown section " + strings.Join(unk, ", ") + " is not a DCS)"
		}
		add("dcs", "", msg)
	case 1:
	default:
		add(dcs[1], "<map>", fmt.Sprintf("several DCS sections (%s): keep exactly one; pgwarden would use %s",
			strings.Join(dcs, ", "), dcs[0]))
	}
	if c.Kubernetes != nil && len(c.Kubernetes.Labels) == 0 {
		add("kubernetes.labels", "", "is required: a map of labels that identify the cluster's objects")
	}
	for name, e := range map[string]*Etcd{"etcd": c.Etcd, "etcd3": c.Etcd3} {
		if e == nil {
			continue
		}
		n := 0
		for _, s := range []string{e.Host, e.URL, e.Proxy, e.SRV} {
			if s != "" {
				n++
			}
		}
		if len(e.Hosts) > 0 {
			n++
		}
		if n == 0 {
			add(name, "<map>", "needs one of host, hosts, url, proxy or srv")
		}
	}
	if c.Consul != nil && c.Consul.Consistency != "" && !slices.Contains([]string{"default", "consistent", "stale"}, c.Consul.Consistency) {
		add("consul.consistency", c.Consul.Consistency, "must be default, consistent or stale")
	}

	enum := func(path, v string, allowed ...string) {
		if v != "" && !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, v) }) {
			add(path, v, "must be one of "+strings.Join(allowed, ", "))
		}
	}
	enum("log.type", c.Log.Type, "plain", "json")
	enum("log.level", c.Log.Level, "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")
	enum("log.traceback_level", c.Log.TracebackLevel, "DEBUG", "ERROR")
	if c.Log.Mode != nil && (*c.Log.Mode < 0 || *c.Log.Mode > 0o777) {
		add("log.mode", strconv.Itoa(*c.Log.Mode), "must be file permission bits between 0 and 0777")
	}
	enum("restapi.verify_client", c.RestAPI.VerifyClient, "none", "optional", "required")
	enum("restapi.server_tokens", c.RestAPI.ServerTokens, "original", "minimal", "productonly")
	if q := c.RestAPI.RequestQueueSize; q != nil && (*q < 0 || *q > 4096) {
		add("restapi.request_queue_size", strconv.Itoa(*q), "must be between 0 and 4096")
	}
	if c.RestAPI.VerifyClient != "" && c.RestAPI.VerifyClient != "none" && c.RestAPI.CertFile == "" {
		add("restapi.verify_client", c.RestAPI.VerifyClient, "needs restapi.certfile (TLS) to be set")
	}
	if p := c.ThreadPoolSize; p != nil && *p < 5 {
		add("thread_pool_size", strconv.Itoa(*p), "must be an integer >= 5")
	}
	if s := c.ThreadStackSize; s != nil && *s < 65536 {
		add("thread_stack_size", strconv.FormatInt(int64(*s), 10), "must be >= 64kB (65536)")
	}
	if w := c.Watchdog; w != nil {
		enum("watchdog.mode", w.Mode, "off", "automatic", "required")
		if w.SafetyMargin != nil && *w.SafetyMargin < -1 {
			add("watchdog.safety_margin", strconv.Itoa(*w.SafetyMargin), "must be >= 0, or -1 for ttl/2")
		}
	}
	if c.Citus != nil {
		if c.Citus.Group == nil || *c.Citus.Group < 0 {
			add("citus.group", "", "must be an integer >= 0 (0 = coordinator)")
		}
		required("citus.database", c.Citus.Database)
	}

	// Tags: at most one of each pair; priorities >= 0.
	for _, pair := range [][2]string{{"nofailover", "failover_priority"}, {"nosync", "sync_priority"}} {
		_, hasB := c.Tags.Values[pair[0]]
		_, hasP := c.Tags.Values[pair[1]]
		if hasB && hasP {
			add("tags."+pair[1], fmt.Sprint(c.Tags.Values[pair[1]]),
				fmt.Sprintf("conflicts with tags.%s: set at most one of %s and %s", pair[0], pair[0], pair[1]))
		}
		if p, ok := c.Tags.intTag(pair[1]); ok && p < 0 {
			add("tags."+pair[1], strconv.Itoa(p), "must be an integer >= 0")
		}
	}

	// postgresql options that must not be overridden.
	errs = append(errs, forbiddenOptions(c.tree, "bootstrap.initdb", c.Bootstrap.InitDB,
		"pgdata", "nosync", "pwfile", "sync-only", "version")...)
	errs = append(errs, forbiddenOptions(c.tree, "postgresql.basebackup", c.PostgreSQL.Basebackup,
		"pgdata", "format", "wal-method", "xlog-method", "gzip", "version", "dbname", "host", "port", "username", "password")...)
	errs = append(errs, forbiddenOptions(c.tree, "postgresql.rewind", c.PostgreSQL.Rewind,
		"target-pgdata", "source-pgdata", "source-server", "write-recovery-conf", "dry-run",
		"restore-target-wal", "config-file", "no-ensure-shutdown", "version", "help")...)
	if c.PostgreSQL.PgCtlTimeout != nil && *c.PostgreSQL.PgCtlTimeout < 0 {
		add("postgresql.pg_ctl_timeout", fmt.Sprint(*c.PostgreSQL.PgCtlTimeout), "must be >= 0 seconds")
	}

	if c.Bootstrap.DCS != nil {
		if err := c.Bootstrap.DCS.Validate("bootstrap.dcs"); err != nil {
			errs = append(errs, unwrapJoin(err)...)
		}
	}
	return errors.Join(errs...)
}

func unwrapJoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (c *Config) unknownTopLevel() []string {
	fields, _ := structFields(reflectValue(c).Type())
	var out []string
	if c.tree == nil {
		return nil
	}
	for i := 0; i+1 < len(c.tree.Content); i += 2 {
		if _, ok := fields[c.tree.Content[i].Value]; !ok {
			out = append(out, c.tree.Content[i].Value)
		}
	}
	return out
}

// forbiddenOptions checks a list-or-map option section for options pgwarden
// sets itself.
func forbiddenOptions(tree *yaml.Node, path string, v any, forbidden ...string) []error {
	var names []string
	switch x := v.(type) {
	case map[string]any:
		for k := range x {
			names = append(names, k)
		}
	case []any:
		for _, e := range x {
			switch y := e.(type) {
			case string:
				names = append(names, y)
			case map[string]any:
				for k := range y {
					names = append(names, k)
				}
			}
		}
	}
	slices.Sort(names)
	var errs []error
	ln := 0
	if n := lookupPath(tree, strings.Split(path, ".")...); n != nil {
		ln = n.Line
	}
	for _, n := range names {
		if slices.Contains(forbidden, n) {
			errs = append(errs, &FieldError{Path: path, Value: n, Line: ln,
				Message: "is set by pgwarden itself and must not be given; remove it (forbidden: " + strings.Join(forbidden, ", ") + ")"})
		}
	}
	return errs
}

// splitListen splits host[,host...]:port.
func splitListen(s string) ([]string, int, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return nil, 0, errors.New("missing :port")
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return nil, 0, errors.New("port must be 1..65535")
	}
	hosts := strings.Split(s[:i], ",")
	for j, h := range hosts {
		hosts[j] = strings.Trim(strings.TrimSpace(h), "[]")
	}
	return hosts, port, nil
}

// ValidateOptions tunes ValidateFull.
type ValidateOptions struct {
	// IgnoreListenPort skips the check that listen ports are free (-i).
	IgnoreListenPort bool
	// Dial opens a TCP connection; nil uses net.Dialer with a 1 s timeout.
	// Tests inject a fake.
	Dial func(ctx context.Context, address string) (net.Conn, error)
	// LookPath finds a binary; nil uses exec.LookPath.
	LookPath func(file string) (string, error)
	// PostgresMajor returns the major version of the installed binaries
	// (e.g. "15"); nil skips the data directory version check.
	PostgresMajor func(ctx context.Context, binDir string) (string, error)
}

// ValidateFull is what `validate-config` runs (spec/config.md §6): Validate
// plus checks that touch the machine: listen addresses must be free,
// connect addresses must not be loopback, the data directory must be absent,
// empty or a matching data directory, the PostgreSQL binaries must exist,
// and DCS hosts must be reachable. Every problem is reported.
func (c *Config) ValidateFull(ctx context.Context, opts ValidateOptions) error {
	dial := opts.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: time.Second}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	look := opts.LookPath
	if look == nil {
		look = exec.LookPath
	}
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, unwrapJoin(err)...)
	}
	add := func(path, value, msg string) {
		errs = append(errs, &FieldError{Path: path, Value: value, Message: msg})
	}
	if !opts.IgnoreListenPort {
		for _, l := range []struct{ path, v string }{{"restapi.listen", c.RestAPI.Listen}, {"postgresql.listen", c.PostgreSQL.Listen}} {
			hosts, port, err := splitListen(l.v)
			if err != nil {
				continue
			}
			for _, h := range hosts {
				if h == "" || h == "*" || h == "0.0.0.0" || h == "::" {
					h = "127.0.0.1"
				}
				addr := net.JoinHostPort(h, strconv.Itoa(port))
				if conn, err := dial(ctx, addr); err == nil {
					_ = conn.Close()
					add(l.path, l.v, "Port "+strconv.Itoa(port)+" is already in use.")
				}
			}
		}
	}
	for _, a := range []struct{ path, v string }{{"restapi.connect_address", c.RestAPI.ConnectAddress}, {"postgresql.connect_address", c.PostgreSQL.ConnectAddress}} {
		if hosts, _, err := splitListen(a.v); err == nil && len(hosts) > 0 {
			if slices.Contains([]string{"127.0.0.1", "0.0.0.0", "*", "::1", "localhost"}, hosts[0]) {
				add(a.path, a.v, "must not contain "+hosts[0]+": other members could not reach it")
			}
		}
	}
	if n := lookup(c.tree, "thread_stack_size"); n != nil {
		// Patroni's validator wants a plain integer multiple of 65535 (sic).
		i, err := strconv.Atoi(n.Value)
		if err != nil || i%65535 != 0 {
			add("thread_stack_size", n.Value, "must be an integer multiple of 65535 bytes")
		}
	}
	if dd := c.PostgreSQL.DataDir; dd != "" {
		errs = append(errs, checkDataDir(ctx, dd, c.PostgreSQL.BinDir, opts.PostgresMajor)...)
	}
	for _, b := range []string{"pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "postgres", "pg_isready"} {
		name := b
		if n := c.PostgreSQL.BinName[b]; n != "" {
			name = n
		}
		if c.PostgreSQL.BinDir != "" {
			if st, err := os.Stat(filepath.Join(c.PostgreSQL.BinDir, name)); err != nil || st.IsDir() {
				add("postgresql.bin_dir", c.PostgreSQL.BinDir, "does not contain '"+name+"'")
			}
		} else if _, err := look(name); err != nil {
			add("postgresql.bin_dir", "", "'"+name+"' was not found in PATH; set postgresql.bin_dir")
		}
	}
	for _, h := range c.dcsHosts() {
		if _, _, err := net.SplitHostPort(h.addr); err != nil {
			add(h.path, h.addr, "must be host:port")
			continue
		}
		conn, err := dial(ctx, h.addr)
		if err != nil {
			add(h.path, h.addr, h.addr+" is not reachable")
			continue
		}
		_ = conn.Close()
	}
	return errors.Join(errs...)
}

type hostRef struct{ path, addr string }

func (c *Config) dcsHosts() []hostRef {
	var out []hostRef
	withPort := func(h, port string) string {
		if _, _, err := net.SplitHostPort(h); err == nil {
			return h
		}
		return net.JoinHostPort(h, port)
	}
	for name, e := range map[string]*Etcd{"etcd": c.Etcd, "etcd3": c.Etcd3} {
		if e == nil {
			continue
		}
		if e.Host != "" {
			out = append(out, hostRef{name + ".host", withPort(e.Host, "2379")})
		}
		for _, h := range e.Hosts {
			out = append(out, hostRef{name + ".hosts", withPort(strings.TrimPrefix(strings.TrimPrefix(h, "http://"), "https://"), "2379")})
		}
	}
	if c.Consul != nil && c.Consul.Host != "" {
		out = append(out, hostRef{"consul.host", withPort(c.Consul.Host, "8500")})
	}
	if c.ZooKeeper != nil {
		for _, h := range c.ZooKeeper.Hosts {
			out = append(out, hostRef{"zookeeper.hosts", withPort(h, "2181")})
		}
	}
	if c.Raft != nil {
		for _, h := range c.Raft.PartnerAddrs {
			out = append(out, hostRef{"raft.partner_addrs", h})
		}
	}
	slices.SortFunc(out, func(a, b hostRef) int { return strings.Compare(a.path+a.addr, b.path+b.addr) })
	return out
}

func checkDataDir(ctx context.Context, dir, binDir string, major func(context.Context, string) (string, error)) []error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []error{&FieldError{Path: "postgresql.data_dir", Value: dir, Message: "cannot be read: " + err.Error()}}
	}
	if len(entries) == 0 {
		return nil
	}
	ver, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		return []error{&FieldError{Path: "postgresql.data_dir", Value: dir, Message: "is not empty, but doesn't look like a data directory (no PG_VERSION)"}}
	}
	var errs []error
	_, e1 := os.Stat(filepath.Join(dir, "pg_wal"))
	_, e2 := os.Stat(filepath.Join(dir, "pg_xlog"))
	if e1 != nil && e2 != nil {
		errs = append(errs, &FieldError{Path: "postgresql.data_dir", Value: dir, Message: "doesn't look like a data directory (no pg_wal)"})
	}
	if major != nil {
		bin, err := major(ctx, binDir)
		if err == nil && strings.TrimSpace(string(ver)) != bin {
			errs = append(errs, &FieldError{Path: "postgresql.data_dir", Value: dir, Message: fmt.Sprintf(
				"data directory is version %s but the binaries are version %s", strings.TrimSpace(string(ver)), bin)})
		}
	}
	return errs
}

// WithDefaults returns a copy of c with every unset field set to its
// documented default. c is not modified.
func (c *Config) WithDefaults() *Config {
	d := *c
	d.tree = clone(c.tree)
	if d.Namespace == "" {
		d.Namespace = "/service"
	}
	if d.ThreadPoolSize == nil {
		d.ThreadPoolSize = new(5)
	}
	if d.ThreadStackSize == nil || *d.ThreadStackSize < 65536 {
		d.ThreadStackSize = new(Bytes(524288))
	}
	l := &d.Log
	l.Type = orDefault(l.Type, "plain")
	l.Level = strings.ToUpper(orDefault(l.Level, "INFO"))
	l.TracebackLevel = orDefault(l.TracebackLevel, "ERROR")
	if l.Format == nil {
		l.Format = "%(asctime)s %(levelname)s: %(message)s"
	}
	if l.MaxQueueSize == nil {
		l.MaxQueueSize = new(1000)
	}
	if l.FileNum == nil {
		l.FileNum = new(4)
	}
	if l.FileSize == nil {
		l.FileSize = new(25000000)
	}
	d.Bootstrap.Method = orDefault(d.Bootstrap.Method, "initdb")
	pg := &d.PostgreSQL
	pg.ConfigDir = orDefault(pg.ConfigDir, pg.DataDir)
	pg.ConfigBaseName = orDefault(pg.ConfigBaseName, "postgresql")
	pg.Database = orDefault(pg.Database, "postgres")
	pg.PgPass = orDefault(pg.PgPass, "~/pgpass")
	if len(pg.CreateReplicaMethods) == 0 {
		pg.CreateReplicaMethods = []string{"basebackup"}
	}
	if pg.PgCtlTimeout == nil {
		pg.PgCtlTimeout = new(Seconds(60))
	}
	if pg.UsePgRewind == nil {
		pg.UsePgRewind = new(false)
	}
	if pg.Authentication.Rewind == nil && pg.Authentication.Superuser != nil {
		pg.Authentication.Rewind = new(*pg.Authentication.Superuser)
	}
	r := &d.RestAPI
	r.VerifyClient = orDefault(r.VerifyClient, "none")
	r.ServerTokens = orDefault(r.ServerTokens, "original")
	if r.RequestQueueSize == nil {
		r.RequestQueueSize = new(5)
	}
	if r.ThreadPoolSize == nil {
		r.ThreadPoolSize = new(5)
	}
	if d.Watchdog == nil {
		d.Watchdog = &Watchdog{}
	} else {
		d.Watchdog = new(*d.Watchdog)
	}
	d.Watchdog.Mode = normalizeWatchdogMode(d.Watchdog.Mode)
	d.Watchdog.Device = orDefault(d.Watchdog.Device, "/dev/watchdog")
	if d.Watchdog.SafetyMargin == nil {
		d.Watchdog.SafetyMargin = new(5)
	}
	if e := d.Etcd3; e != nil && e.Protocol == "" {
		d.Etcd3 = new(*e)
		d.Etcd3.Protocol = "http"
	}
	if e := d.Etcd; e != nil && e.Protocol == "" {
		d.Etcd = new(*e)
		d.Etcd.Protocol = "http"
	}
	if k := d.Kubernetes; k != nil {
		kk := *k
		kk.Namespace = orDefault(kk.Namespace, "default")
		kk.ScopeLabel = orDefault(kk.ScopeLabel, "cluster-name")
		kk.RoleLabel = orDefault(kk.RoleLabel, "role")
		kk.LeaderLabelValue = orDefault(kk.LeaderLabelValue, "primary")
		kk.FollowerLabelValue = orDefault(kk.FollowerLabelValue, "replica")
		kk.StandbyLeaderLabelValue = orDefault(kk.StandbyLeaderLabelValue, "primary")
		// Context stays "" (the kubeconfig's current context, as client-go
		// and kubectl do). Patroni defaults to "kind-kind", a context only
		// a kind test cluster has, which fails everywhere else.
		d.Kubernetes = &kk
	}
	if cs := d.Consul; cs != nil {
		cc := *cs
		cc.Host = orDefault(cc.Host, "127.0.0.1:8500")
		cc.Scheme = orDefault(cc.Scheme, "http")
		cc.Consistency = orDefault(cc.Consistency, "default")
		cc.ServiceCheckInterval = orDefault(cc.ServiceCheckInterval, "5s")
		d.Consul = &cc
	}
	return &d
}

// normalizeWatchdogMode maps the spellings the daemon accepts to off,
// automatic or required; anything else is off.
func normalizeWatchdogMode(m string) string {
	switch strings.ToLower(m) {
	case "", "automatic", "auto":
		return "automatic"
	case "required", "require":
		return "required"
	}
	return "off"
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
