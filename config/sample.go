package config

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Fixme marks values the user must fill in a generated configuration.
const Fixme = "#FIXME"

// SampleOptions describes the machine a sample configuration is generated
// for (spec/config.md §6 --generate-sample-config).
type SampleOptions struct {
	// Name is the member name; "" uses Hostname.
	Name string
	// Hostname is the machine name.
	Hostname string
	// IP is the address used in listen/connect addresses.
	IP string
	// PGMajor is the major version of the local binaries (e.g. 15); 0
	// when unknown (treated as the newest).
	PGMajor int
	// Environ is merged over the template like at startup.
	Environ []string
}

// Sample returns a YAML configuration template with defaults, values from
// the environment, and #FIXME where the user must fill something (scope,
// data_dir, passwords).
func Sample(o SampleOptions) ([]byte, error) {
	name := o.Name
	if name == "" {
		name = o.Hostname
	}
	ip := o.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	major := o.PGMajor
	if major == 0 {
		major = 99
	}
	enc := "scram-sha-256"
	if major < 10 {
		enc = "md5"
	}
	tree := mapNode()
	put := func(m *yaml.Node, k string, v any) { setKey(m, k, fromGeneric(v)) }
	put(tree, "scope", Fixme)
	put(tree, "namespace", "/service")
	put(tree, "name", name)
	put(tree, "log", map[string]any{"type": "plain", "level": "INFO", "traceback_level": "ERROR",
		"format": "%(asctime)s %(levelname)s: %(message)s", "max_queue_size": 1000, "file_num": 4,
		"file_size": 25000000, "deduplicate_heartbeat_logs": false})
	params := map[string]any{}
	for k, p := range protectedParams {
		if k == "wal_keep_segments" && major >= 13 || k == "wal_keep_size" && major < 13 {
			continue
		}
		if i, err := strconv.Atoi(p.def); err == nil {
			params[k] = i
		} else {
			params[k] = p.def
		}
	}
	if major >= 10 {
		params["wal_level"] = "replica"
	}
	boot := mapNode()
	dcs := mapNode()
	for _, kv := range []struct {
		k string
		v any
	}{{"ttl", 30}, {"loop_wait", 10}, {"retry_timeout", 10}, {"maximum_lag_on_failover", 1048576},
		{"postgresql", map[string]any{"use_pg_rewind": true, "use_slots": true, "parameters": params}}} {
		put(dcs, kv.k, kv.v)
	}
	setKey(boot, "dcs", dcs)
	put(boot, "method", "initdb")
	put(boot, "initdb", []any{map[string]any{"encoding": "UTF8"}, "data-checksums"})
	setKey(tree, "bootstrap", boot)
	hba := []string{
		"host all all all " + enc,
		"host replication " + Fixme + " all " + enc,
	}
	pg := mapNode()
	put(pg, "listen", ip+":5432")
	put(pg, "connect_address", ip+":5432")
	put(pg, "data_dir", Fixme)
	put(pg, "bin_dir", "")
	users := map[string]any{
		"superuser":   map[string]any{"username": "postgres", "password": Fixme},
		"replication": map[string]any{"username": "replicator", "password": Fixme},
	}
	if major >= 11 {
		users["rewind"] = map[string]any{"username": "rewind_user", "password": Fixme}
	}
	put(pg, "authentication", users)
	put(pg, "parameters", map[string]any{"password_encryption": enc})
	put(pg, "pg_hba", hba)
	setKey(tree, "postgresql", pg)
	put(tree, "restapi", map[string]any{"listen": ip + ":8008", "connect_address": ip + ":8008"})
	put(tree, "tags", map[string]any{"failover_priority": 1, "sync_priority": 1, "noloadbalance": false,
		"nosync": false, "nostream": false, "clonefrom": true})
	put(tree, "watchdog", map[string]any{"mode": "automatic", "device": "/dev/watchdog", "safety_margin": 5})
	if o.Environ != nil {
		deepMerge(tree, envTree(envMap(o.Environ)))
	}
	return encodeYAML(tree)
}

// RunningPostgres is what generate-config reads from a running server
// (spec/config.md §6 --generate-config); the caller queries it.
type RunningPostgres struct {
	// Settings maps every non-internal GUC to its current value.
	Settings map[string]string
	// DataDirectory, BinDir are the server's paths.
	DataDirectory string
	BinDir        string
	// HBA and Ident are the current pg_hba.conf / pg_ident.conf lines
	// (nil when the files are not in the default location).
	HBA, Ident []string
	// Superuser is the connecting user; IsSuperuser must be true.
	Superuser   User
	IsSuperuser bool
	// Name is the member name (PATRONI_NAME or the hostname).
	Name string
	// IP is the address used in connect addresses.
	IP string
}

// fileParams stay in postgresql.parameters; everything else goes to
// bootstrap.dcs.postgresql.parameters.
var fileParams = []string{"archive_command", "restore_command", "archive_cleanup_command",
	"recovery_end_command", "ssl_passphrase_command", "hba_file", "ident_file", "config_file"}

// Generate builds a configuration for an existing PostgreSQL server.
func Generate(p RunningPostgres) ([]byte, error) {
	if !p.IsSuperuser {
		return nil, fmt.Errorf("config: generate: user %q is not a superuser", p.Superuser.Username)
	}
	port := p.Settings["port"]
	if port == "" {
		port = "5432"
	}
	listen := strings.ReplaceAll(p.Settings["listen_addresses"], " ", "")
	if listen == "" {
		listen = "localhost"
	}
	ip := p.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	tree := mapNode()
	put := func(m *yaml.Node, k string, v any) { setKey(m, k, fromGeneric(v)) }
	scope := p.Settings["cluster_name"]
	if scope == "" {
		scope = Fixme
	}
	put(tree, "scope", scope)
	put(tree, "name", p.Name)
	dcsParams := map[string]any{}
	local := map[string]any{}
	for k, v := range p.Settings {
		switch {
		case slices.Contains(fileParams, k):
			if v != "" {
				local[k] = v
			}
		case slices.Contains(notSettable, k), k == "data_directory":
		default:
			dcsParams[k] = v
		}
	}
	boot := mapNode()
	put(boot, "dcs", map[string]any{"postgresql": map[string]any{"parameters": dcsParams}})
	setKey(tree, "bootstrap", boot)
	pg := mapNode()
	put(pg, "listen", net.JoinHostPort(listen, port))
	put(pg, "connect_address", net.JoinHostPort(ip, port))
	put(pg, "data_dir", p.DataDirectory)
	put(pg, "bin_dir", filepath.Clean(p.BinDir))
	su := map[string]any{"username": p.Superuser.Username}
	if p.Superuser.Password != "" {
		su["password"] = p.Superuser.Password
	}
	put(pg, "authentication", map[string]any{
		"superuser":   su,
		"replication": map[string]any{"username": Fixme, "password": Fixme},
	})
	if len(local) > 0 {
		put(pg, "parameters", local)
	}
	if p.HBA != nil {
		put(pg, "pg_hba", p.HBA)
	}
	if p.Ident != nil {
		put(pg, "pg_ident", p.Ident)
	}
	setKey(tree, "postgresql", pg)
	put(tree, "restapi", map[string]any{"listen": ip + ":8008", "connect_address": ip + ":8008"})
	return encodeYAML(tree)
}

func encodeYAML(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	_ = enc.Close()
	return b.Bytes(), nil
}

// YAML returns the configuration as YAML (validate-config --print).
func (c *Config) YAML() ([]byte, error) {
	t := c.Tree()
	if t == nil {
		t = mapNode()
	}
	return encodeYAML(t)
}
