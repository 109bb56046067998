package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the local configuration the way the daemon starts
// (spec/config.md §1): path may be a YAML file or a directory of *.yml and
// *.yaml files (loaded in name order and deep-merged, later files win, null
// deletes). When path is "" or does not exist, the document comes from
// PATRONI_CONFIGURATION, else from the PATRONI_* variables alone. With a
// file, the environment is deep-merged over it. environ is the process
// environment (os.Environ() form); nil means os.Environ().
//
// Load reports type errors (with line numbers) and unreadable files as an
// error joining every problem; unknown keys are returned as warnings. It
// does not fill defaults or check required keys: see WithDefaults and
// Validate.
func Load(path string, environ []string) (*Config, []Warning, error) {
	if environ == nil {
		environ = os.Environ()
	}
	tree, err := loadTree(path, environ)
	if err != nil {
		return nil, nil, err
	}
	return Decode(tree)
}

// Parse decodes one YAML document (no environment), as a library user
// building a configuration in memory would.
func Parse(data []byte) (*Config, []Warning, error) {
	tree, err := parseYAML(data)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return Decode(tree)
}

// Decode fills a Config from a merged document tree.
func Decode(tree *yaml.Node) (*Config, []Warning, error) {
	if tree.Kind != yaml.MappingNode {
		return nil, nil, &FieldError{Path: "(document)", Value: kindName(tree), Line: tree.Line,
			Message: "the configuration must be a YAML mapping of sections"}
	}
	tree = clone(tree)
	normalizeLegacy(tree)
	c := &Config{tree: tree}
	errs, warns := decodeInto("", tree, c)
	if c.Name == "" {
		c.Name = c.PostgreSQL.Name
	}
	if lookup(tree, "bootstrap") != nil && lookupPath(tree, "bootstrap", "users") != nil {
		warns = append(warns, Warning{Path: "bootstrap.users", Line: lookupPath(tree, "bootstrap", "users").Line,
			Message: "bootstrap.users was removed in Patroni 4.0 and is ignored"})
	}
	if c.Bootstrap.DCS != nil {
		warns = append(warns, c.Bootstrap.DCS.TimingWarnings("bootstrap.dcs")...)
	}
	if err := errors.Join(errs...); err != nil {
		return c, warns, err
	}
	return c, warns, nil
}

func loadTree(path string, environ []string) (*yaml.Node, error) {
	env := envMap(environ)
	if path != "" {
		st, err := os.Stat(path)
		switch {
		case err == nil && st.IsDir():
			tree, err := loadDir(path)
			if err != nil {
				return nil, err
			}
			deepMerge(tree, envTree(env))
			return tree, nil
		case err == nil:
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("config: read %s: %w", path, err)
			}
			tree, err := parseYAML(data)
			if err != nil {
				return nil, fmt.Errorf("config: %s: %w", path, err)
			}
			if tree.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("config: %s: the configuration must be a YAML mapping", path)
			}
			deepMerge(tree, envTree(env))
			return tree, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if doc, ok := env["PATRONI_CONFIGURATION"]; ok {
		tree, err := parseYAML([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("config: PATRONI_CONFIGURATION: %w", err)
		}
		return tree, nil
	}
	return envTree(env), nil
}

func loadDir(dir string) (*yaml.Node, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", dir, err)
	}
	tree := mapNode()
	for _, e := range entries { // ReadDir sorts by name
		ext := filepath.Ext(e.Name())
		if !e.Type().IsRegular() || (ext != ".yml" && ext != ".yaml") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config: read %s: %w", p, err)
		}
		t, err := parseYAML(data)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", p, err)
		}
		if t.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("config: %s: the configuration must be a YAML mapping", p)
		}
		deepMerge(tree, t)
	}
	return tree, nil
}

// normalizeLegacy rewrites old layouts in place (spec/config.md §2
// post-processing): postgresql.replication/superuser outside an
// authentication section, pg_rewind credentials.
func normalizeLegacy(tree *yaml.Node) {
	pg := lookup(tree, "postgresql")
	if pg == nil || pg.Kind != yaml.MappingNode {
		return
	}
	if lookup(pg, "authentication") == nil {
		moved := false
		auth := mapNode()
		for _, u := range []string{"replication", "superuser"} {
			if v := lookup(pg, u); v != nil {
				setKey(auth, u, v)
				deleteKey(pg, u)
				moved = true
			}
		}
		if moved {
			setKey(pg, "authentication", auth)
			rw := lookup(pg, "pg_rewind")
			setKey(pg, "use_pg_rewind", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(rw != nil)})
		}
	}
	if rw := lookup(pg, "pg_rewind"); rw != nil && rw.Kind == yaml.MappingNode {
		auth := ensureMap(pg, "authentication")
		if lookup(auth, "superuser") == nil {
			setKey(auth, "superuser", clone(rw))
		}
		deleteKey(pg, "pg_rewind")
	}
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && v != "" && strings.HasPrefix(k, "PATRONI_") {
			m[k] = v
		}
	}
	return m
}

type envKind int

const (
	envString envKind = iota
	envInt
	envBool
	envFloat
	envList
	envMapKind
	envListOrString
)

// envValue turns an environment string into a node of the given kind. A
// value that does not parse is kept as a string, so that decoding reports
// it with its path.
func envValue(v string, kind envKind) *yaml.Node {
	switch kind {
	case envInt:
		if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strings.TrimSpace(v)}
		}
	case envFloat:
		if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strings.TrimSpace(v)}
		}
	case envBool:
		if b, ok := parseBool(v); ok {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
		}
	case envList, envListOrString:
		t := strings.TrimSpace(v)
		if n, err := parseYAML([]byte(t)); err == nil && n.Kind == yaml.SequenceNode {
			return n
		}
		if kind == envListOrString {
			return strNode(v)
		}
		if n, err := parseYAML([]byte("[" + t + "]")); err == nil && n.Kind == yaml.SequenceNode {
			return n
		}
	case envMapKind:
		t := strings.TrimSpace(v)
		if n, err := parseYAML([]byte(t)); err == nil && n.Kind == yaml.MappingNode {
			return n
		}
		if n, err := parseYAML([]byte("{" + t + "}")); err == nil && n.Kind == yaml.MappingNode {
			return n
		}
	}
	return strNode(v)
}

var authSuffixes = []string{"USERNAME", "PASSWORD", "SSLMODE", "SSLCERT", "SSLKEY", "SSLPASSWORD",
	"SSLROOTCERT", "SSLCRL", "SSLCRLDIR", "GSSENCMODE", "CHANNEL_BINDING", "SSLNEGOTIATION"}

// genericSuffixes are the PATRONI_<X>_<SUFFIX> suffixes mapped to x.suffix
// for any first word X (spec/config.md §7).
var genericSuffixes = map[string]envKind{
	"HOST": envString, "HOSTS": envList, "PORT": envInt, "USE_PROXIES": envBool,
	"PROTOCOL": envString, "SRV": envString, "SRV_SUFFIX": envString, "URL": envString,
	"PROXY": envString, "CACERT": envString, "CERT": envString, "KEY": envString,
	"VERIFY": envBool, "TOKEN": envString, "CHECKS": envList, "DC": envString,
	"CONSISTENCY": envString, "REGISTER_SERVICE": envBool, "SERVICE_CHECK_INTERVAL": envString,
	"SERVICE_CHECK_TLS_SERVER_NAME": envString, "SERVICE_TAGS": envList, "NAMESPACE": envString,
	"CONTEXT": envString, "USE_ENDPOINTS": envBool, "SCOPE_LABEL": envString,
	"ROLE_LABEL": envString, "POD_IP": envString, "PORTS": envList, "LABELS": envMapKind,
	"BYPASS_API_SERVICE": envBool, "RETRIABLE_HTTP_CODES": envList, "KEY_PASSWORD": envString,
	"USE_SSL": envBool, "SET_ACLS": envMapKind, "GROUP": envInt, "DATABASE": envString,
	"LEADER_LABEL_VALUE": envString, "FOLLOWER_LABEL_VALUE": envString,
	"STANDBY_LEADER_LABEL_VALUE": envString, "TMP_ROLE_LABEL": envString,
	"AUTH_DATA": envMapKind, "BOOTSTRAP_LABELS": envMapKind,
}

// envTree builds the configuration document the PATRONI_* variables
// describe (spec/config.md §7).
func envTree(env map[string]string) *yaml.Node {
	root := mapNode()
	set := func(sec *yaml.Node, key, name string, kind envKind) {
		if v, ok := env[name]; ok {
			setKey(sec, key, envValue(v, kind))
		}
	}
	section := func(path ...string) *yaml.Node {
		n := root
		for _, p := range path {
			n = ensureMap(n, p)
		}
		return n
	}
	// A section is created only when one of its variables is set.
	lazy := func(path ...string) func() *yaml.Node {
		var n *yaml.Node
		return func() *yaml.Node {
			if n == nil {
				n = section(path...)
			}
			return n
		}
	}
	setIn := func(sec func() *yaml.Node, key, name string, kind envKind) {
		if v, ok := env[name]; ok {
			setKey(sec(), key, envValue(v, kind))
		}
	}

	set(root, "name", "PATRONI_NAME", envString)
	set(root, "namespace", "PATRONI_NAMESPACE", envString)
	set(root, "scope", "PATRONI_SCOPE", envString)
	set(root, "thread_pool_size", "PATRONI_THREAD_POOL_SIZE", envInt)
	set(root, "thread_stack_size", "PATRONI_THREAD_STACK_SIZE", envString)

	log := lazy("log")
	for _, kv := range []struct {
		key  string
		kind envKind
	}{
		{"type", envString}, {"level", envString}, {"traceback_level", envString},
		{"format", envListOrString}, {"dateformat", envString}, {"static_fields", envMapKind},
		{"max_queue_size", envInt}, {"dir", envString}, {"mode", envInt}, {"file_num", envInt},
		{"file_size", envInt}, {"loggers", envMapKind}, {"deduplicate_heartbeat_logs", envBool},
	} {
		setIn(log, kv.key, "PATRONI_LOG_"+strings.ToUpper(kv.key), kv.kind)
	}
	for legacy, key := range map[string]string{"PATRONI_LOGLEVEL": "level", "PATRONI_LOGFORMAT": "format", "PATRONI_LOG_DATEFMT": "dateformat"} {
		if _, newSet := env["PATRONI_LOG_"+strings.ToUpper(key)]; !newSet {
			setIn(log, key, legacy, envString)
		}
	}

	restapi := lazy("restapi")
	for _, kv := range []struct {
		key  string
		kind envKind
	}{
		{"listen", envString}, {"connect_address", envString}, {"certfile", envString},
		{"keyfile", envString}, {"keyfile_password", envString}, {"cafile", envString},
		{"ciphers", envString}, {"verify_client", envString}, {"http_extra_headers", envMapKind},
		{"https_extra_headers", envMapKind}, {"allowlist", envList},
		{"allowlist_include_members", envBool}, {"request_queue_size", envInt},
		{"server_tokens", envString},
	} {
		setIn(restapi, kv.key, "PATRONI_RESTAPI_"+strings.ToUpper(kv.key), kv.kind)
	}
	restAuth := lazy("restapi", "authentication")
	setIn(restAuth, "username", "PATRONI_RESTAPI_USERNAME", envString)
	setIn(restAuth, "password", "PATRONI_RESTAPI_PASSWORD", envString)

	ctl := lazy("ctl")
	setIn(ctl, "insecure", "PATRONI_CTL_INSECURE", envBool)
	for _, k := range []string{"cacert", "certfile", "keyfile", "keyfile_password"} {
		setIn(ctl, k, "PATRONI_CTL_"+strings.ToUpper(k), envString)
	}
	ctlAuth := lazy("ctl", "authentication")
	setIn(ctlAuth, "username", "PATRONI_CTL_USERNAME", envString)
	setIn(ctlAuth, "password", "PATRONI_CTL_PASSWORD", envString)

	pg := lazy("postgresql")
	for _, k := range []string{"listen", "connect_address", "proxy_address", "config_dir", "data_dir", "pgpass", "bin_dir"} {
		setIn(pg, k, "PATRONI_POSTGRESQL_"+strings.ToUpper(k), envString)
	}
	binName := lazy("postgresql", "bin_name")
	for _, b := range []string{"pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "postgres", "pg_isready", "pg_rewind"} {
		setIn(binName, b, "PATRONI_POSTGRESQL_BIN_"+strings.ToUpper(b), envString)
	}
	for _, user := range []string{"superuser", "replication", "rewind"} {
		u := lazy("postgresql", "authentication", user)
		for _, s := range authSuffixes {
			setIn(u, strings.ToLower(s), "PATRONI_"+strings.ToUpper(user)+"_"+s, envString)
		}
	}

	raft := lazy("raft")
	for _, k := range []string{"data_dir", "self_addr", "password", "bind_addr"} {
		setIn(raft, k, "PATRONI_RAFT_"+strings.ToUpper(k), envString)
	}
	setIn(raft, "partner_addrs", "PATRONI_RAFT_PARTNER_ADDRS", envList)
	for _, k := range []string{"min_timeout", "max_timeout", "connection_timeout", "append_entries_period", "connection_retry_time", "leader_fallback_timeout"} {
		setIn(raft, k, "PATRONI_RAFT_"+strings.ToUpper(k), envFloat)
	}

	// PATRONI_<X>_<SUFFIX> for any first word X, applied last.
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		rest := strings.TrimPrefix(name, "PATRONI_")
		x, suffix, ok := strings.Cut(rest, "_")
		if !ok || x == "" {
			continue
		}
		kind, known := genericSuffixes[suffix]
		if !known {
			continue
		}
		if x == "CITUS" && suffix != "GROUP" && suffix != "DATABASE" {
			continue
		}
		setKey(section(strings.ToLower(x)), strings.ToLower(suffix), envValue(env[name], kind))
	}
	for _, etcd := range []string{"etcd", "etcd3"} {
		if sec := lookup(root, etcd); sec != nil {
			set(sec, "username", "PATRONI_"+strings.ToUpper(etcd)+"_USERNAME", envString)
			set(sec, "password", "PATRONI_"+strings.ToUpper(etcd)+"_PASSWORD", envString)
		}
	}
	if v, ok := env["PATRONI_KUBERNETES_CACERT"]; ok {
		setKey(section("kubernetes"), "cacert", strNode(v))
	}
	return root
}

// EnvNames returns the PATRONI_* variables in environ that Load reads, so
// that the daemon can remove them from its environment before starting
// PostgreSQL.
func EnvNames(environ []string) []string {
	var out []string
	for k := range envMap(environ) {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
