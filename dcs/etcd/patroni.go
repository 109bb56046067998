package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultClientPort is etcd's client port, used for hosts given without one.
const DefaultClientPort = 2379

// RaftClientPortOffset is added to a raft address's port to get the etcd
// client port of that node in raft mode: Patroni's raft section names only
// the replication address (self_addr), while embedded etcd serves clients
// on a second port. 10000 keeps Patroni's usual 2222/2223/2224 examples
// collision-free.
const RaftClientPortOffset = 10000

// Etcd3Section is Patroni's `etcd3:` section (spec/config.md "DCS
// sections"). The `etcd:` (v2) section has the same keys; pgwarden serves
// both over the v3 API.
//
// Left out: `use_proxies` is accepted and always true in effect (the client
// never replaces the configured endpoints with the member list), and SRV
// discovery uses only the client records (`_etcd-client-ssl`,
// `_etcd-client`, `_etcd-ssl`, `_etcd`), not the `_etcd-server*` records
// Patroni falls back to.
type Etcd3Section struct {
	Host       string   // host: "h:p"
	Hosts      []string // hosts: a list or a comma-separated string
	URL        string   // url: "http(s)://h:p"
	Proxy      string   // proxy: "http(s)://h:p"
	SRV        string   // srv: DNS domain for SRV discovery
	SRVSuffix  string   // srv_suffix
	Protocol   string   // protocol: http (default) or https
	UseProxies bool     // use_proxies
	Username   string
	Password   string
	CACert     string // cacert
	Cert       string // cert
	Key        string // key
}

// ParseEtcd3Section reads the section as decoded from YAML or JSON (a map of
// strings, lists, bools and numbers). Unknown keys are errors, so a typo is
// not silently ignored.
func ParseEtcd3Section(m map[string]any) (Etcd3Section, error) {
	var s Etcd3Section
	var errs []error
	for k, v := range m {
		var err error
		switch k {
		case "host":
			s.Host, err = asString(v)
		case "hosts":
			s.Hosts, err = asList(v)
		case "url":
			s.URL, err = asString(v)
		case "proxy":
			s.Proxy, err = asString(v)
		case "srv":
			s.SRV, err = asString(v)
		case "srv_suffix":
			s.SRVSuffix, err = asString(v)
		case "protocol":
			s.Protocol, err = asString(v)
		case "use_proxies":
			s.UseProxies, err = asBool(v)
		case "username":
			s.Username, err = asString(v)
		case "password":
			s.Password, err = asString(v)
		case "cacert":
			s.CACert, err = asString(v)
		case "cert":
			s.Cert, err = asString(v)
		case "key":
			s.Key, err = asString(v)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("etcd3.%s: %w", k, err))
		}
	}
	if s.Protocol != "" && s.Protocol != "http" && s.Protocol != "https" {
		errs = append(errs, fmt.Errorf("etcd3.protocol: %q is neither http nor https", s.Protocol))
	}
	sortErrs(errs)
	return s, errors.Join(errs...)
}

// Endpoints returns the client URLs the section names, in Patroni's order
// of precedence: url, proxy, srv, hosts, host (default 127.0.0.1:2379).
func (s Etcd3Section) Endpoints(ctx context.Context) ([]string, error) {
	switch {
	case s.URL != "":
		return []string{s.URL}, nil
	case s.Proxy != "":
		return []string{s.Proxy}, nil
	case s.SRV != "":
		return s.lookupSRV(ctx)
	}
	proto := s.Protocol
	if proto == "" {
		proto = "http"
	}
	hosts := s.Hosts
	if len(hosts) == 0 && s.Host != "" {
		hosts = []string{s.Host}
	}
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(DefaultClientPort))
		}
		out = append(out, proto+"://"+h)
	}
	return out, nil
}

func (s Etcd3Section) lookupSRV(ctx context.Context) ([]string, error) {
	var errs []error
	for _, svc := range []struct{ name, proto string }{
		{"etcd-client-ssl", "https"}, {"etcd-client", "http"}, {"etcd-ssl", "https"}, {"etcd", "http"},
	} {
		name := svc.name
		if s.SRVSuffix != "" {
			name += "-" + s.SRVSuffix
		}
		_, addrs, err := net.DefaultResolver.LookupSRV(ctx, name, "tcp", s.SRV)
		if err != nil || len(addrs) == 0 {
			errs = append(errs, fmt.Errorf("_%s._tcp.%s: %w", name, s.SRV, err))
			continue
		}
		out := make([]string, 0, len(addrs))
		for _, a := range addrs {
			out = append(out, svc.proto+"://"+net.JoinHostPort(strings.TrimSuffix(a.Target, "."), strconv.Itoa(int(a.Port))))
		}
		return out, nil
	}
	return nil, fmt.Errorf("etcd3.srv: no SRV record found: %w", errors.Join(errs...))
}

// StoreConfig returns the Config of a Store for this section. Namespace,
// scope, name and TTL come from the rest of the Patroni configuration.
func (s Etcd3Section) StoreConfig(ctx context.Context, namespace, scope, name string) (Config, error) {
	eps, err := s.Endpoints(ctx)
	if err != nil {
		return Config{}, err
	}
	return Config{
		Endpoints: eps,
		Namespace: namespace,
		Scope:     scope,
		Name:      name,
		Username:  s.Username,
		Password:  s.Password,
		CACert:    s.CACert,
		Cert:      s.Cert,
		Key:       s.Key,
	}, nil
}

// RaftSection is Patroni's deprecated `raft:` section, served here by an
// embedded etcd member per node, so a configuration written for Patroni's
// built-in Raft works unchanged.
//
// Mapping: self_addr is the etcd peer address (and, as host:port, the
// member name); bind_addr its listen address; partner_addrs the other
// members' peer addresses; the client port of every node is its raft port
// + RaftClientPortOffset; etcd keeps its data in <data_dir>/etcd. The
// pysyncobj timings (min_timeout, max_timeout, ...) are accepted and
// ignored: etcd uses its own raft timings. password (pysyncobj traffic
// encryption) is accepted but not applied: etcd would need TLS
// certificates for peer traffic; Ignored names it so the caller can warn.
type RaftSection struct {
	SelfAddr     string
	BindAddr     string
	PartnerAddrs []string
	DataDir      string
	Password     string
	// Ignored lists the keys that were accepted but have no effect.
	Ignored []string
}

// ParseRaftSection reads the section as decoded from YAML or JSON.
func ParseRaftSection(m map[string]any) (RaftSection, error) {
	var s RaftSection
	var errs []error
	for k, v := range m {
		var err error
		switch k {
		case "self_addr":
			s.SelfAddr, err = asString(v)
		case "bind_addr":
			s.BindAddr, err = asString(v)
		case "partner_addrs":
			s.PartnerAddrs, err = asList(v)
		case "data_dir":
			s.DataDir, err = asString(v)
		case "password":
			s.Password, err = asString(v)
			if s.Password != "" {
				s.Ignored = append(s.Ignored, k)
			}
		case "min_timeout", "max_timeout", "connection_timeout", "append_entries_period",
			"connection_retry_time", "leader_fallback_timeout":
			s.Ignored = append(s.Ignored, k)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("raft.%s: %w", k, err))
		}
	}
	sort.Strings(s.Ignored)
	if s.SelfAddr == "" {
		errs = append(errs, errors.New("raft.self_addr: required"))
	}
	for _, a := range append([]string{s.SelfAddr, s.BindAddr}, s.PartnerAddrs...) {
		if a == "" {
			continue
		}
		if _, err := clientAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("raft: address %q: %w", a, err))
		}
	}
	sortErrs(errs)
	return s, errors.Join(errs...)
}

// clientAddr returns the etcd client address of a raft address.
func clientAddr(raftAddr string) (string, error) {
	host, port, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+RaftClientPortOffset > 65535 {
		return "", fmt.Errorf("port must be 1..%d", 65535-RaftClientPortOffset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+RaftClientPortOffset)), nil
}

// Endpoints returns the client URLs of this node and its partners.
func (s RaftSection) Endpoints() []string {
	var out []string
	for _, a := range append([]string{s.SelfAddr}, s.PartnerAddrs...) {
		if c, err := clientAddr(a); err == nil {
			out = append(out, "http://"+c)
		}
	}
	return out
}

// ServerConfig returns the embedded etcd member of this node. scope names
// the cluster token, so two Patroni clusters cannot join each other.
func (s RaftSection) ServerConfig(scope string) (ServerConfig, error) {
	self, err := clientAddr(s.SelfAddr)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("raft.self_addr %q: %w", s.SelfAddr, err)
	}
	bind := s.BindAddr
	if bind == "" {
		bind = s.SelfAddr
	}
	bindClient, err := clientAddr(bind)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("raft.bind_addr %q: %w", bind, err)
	}
	members := append([]string{s.SelfAddr}, s.PartnerAddrs...)
	sort.Strings(members)
	initial := make([]string, 0, len(members))
	for _, m := range members {
		initial = append(initial, m+"=http://"+m)
	}
	dir := s.DataDir
	if dir == "" {
		dir = "."
	}
	return ServerConfig{
		Name:                s.SelfAddr,
		DataDir:             filepath.Join(dir, "etcd"),
		ClientURLs:          []string{"http://" + bindClient},
		AdvertiseClientURLs: []string{"http://" + self},
		PeerURLs:            []string{"http://" + bind},
		AdvertisePeerURLs:   []string{"http://" + s.SelfAddr},
		InitialCluster:      strings.Join(initial, ","),
		ClusterState:        StateNew,
		ClusterToken:        "pgwarden-" + scope,
	}, nil
}

func asString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

func asList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		var out []string
		for _, p := range strings.Split(x, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, err := asString(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("want a list or a comma-separated string, got %T", v)
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1", "y":
			return true, nil
		case "false", "off", "no", "0", "n", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("want a boolean, got %v", v)
}

func sortErrs(errs []error) {
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
}
