package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/consul"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/dcs/kubernetes"
	"github.com/pgwarden/pgwarden/dcs/zookeeper"
)

// configError is a DCS problem that retrying cannot fix (a bad section,
// missing credentials): the daemon reports it and exits instead of waiting
// for the DCS.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// dcsAddress describes where the configured DCS is, for progress messages
// ("etcd3 at 127.0.0.1:2379").
func dcsAddress(c *config.Config) string {
	switch {
	case c.Etcd3 != nil || c.Etcd != nil:
		e, kind := c.Etcd3, "etcd3"
		if e == nil {
			e, kind = c.Etcd, "etcd"
		}
		var where []string
		for _, s := range []string{e.Host, e.URL, e.Proxy} {
			if s != "" {
				where = append(where, s)
			}
		}
		where = append(where, e.Hosts...)
		if e.SRV != "" {
			where = append(where, "SRV "+e.SRV)
		}
		return kind + " at " + strings.Join(where, ",")
	case c.Raft != nil:
		return "embedded etcd (raft section) at " + strings.Join(append([]string{c.Raft.SelfAddr}, c.Raft.PartnerAddrs...), ",")
	case c.ZooKeeper != nil:
		return "zookeeper at " + strings.Join(c.ZooKeeper.Hosts, ",")
	case c.Consul != nil:
		addr := c.Consul.Host
		if c.Consul.URL != "" {
			addr = c.Consul.URL
		}
		if addr == "" {
			addr = "127.0.0.1:8500"
		}
		return "consul at " + addr
	case c.Kubernetes != nil:
		ns := c.Kubernetes.Namespace
		if ns == "" {
			ns = "default"
		}
		return "kubernetes API (namespace " + ns + ")"
	}
	return "DCS"
}

// kubernetesConfig maps the kubernetes section (spec/config.md §4) to the
// store's Config. The API server connection follows client-go: the pod's
// service account when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG or
// ~/.kube/config (kubernetes.context selects a context; "" is the current
// one).
func kubernetesConfig(c *config.Config, name string, ttl time.Duration, log *slog.Logger) (kubernetes.Config, error) {
	k := c.Kubernetes
	f := kubernetes.FileConfig{
		Namespace: k.Namespace, Labels: k.Labels, ScopeLabel: k.ScopeLabel, RoleLabel: k.RoleLabel,
		LeaderLabelValue: k.LeaderLabelValue, FollowerLabelValue: k.FollowerLabelValue,
		StandbyLeaderLabelValue: k.StandbyLeaderLabelValue, TmpRoleLabel: k.TmpRoleLabel,
		BootstrapLabels: k.BootstrapLabels, UseEndpoints: k.UseEndpoints, PodIP: k.PodIP, CACert: k.CACert,
		RetriableHTTPCodes: k.RetriableHTTPCodes, BypassAPIService: k.BypassAPIService, Context: k.Context,
	}
	var errs []error
	for i, p := range k.Ports {
		var port kubernetes.Port
		port.Name, _ = p["name"].(string)
		port.Protocol, _ = p["protocol"].(string)
		n, ok := dcs.IntValue(p["port"])
		if !ok {
			errs = append(errs, fmt.Errorf("kubernetes.ports[%d].port: %v is not a port number", i, p["port"]))
		}
		port.Port = int32(n)
		f.Ports = append(f.Ports, port)
	}
	kc, err := f.Config(c.Scope, name)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return kc, err
	}
	kc.TTL, kc.Logger = ttl, log
	return kc, nil
}

// dcsHandle is an opened Store plus what must be closed after it (the
// embedded etcd member of a raft section).
type dcsHandle struct {
	store  dcs.Store
	server *etcd.Server
}

func (h *dcsHandle) Close() {
	if h.store != nil {
		_ = h.store.Close()
	}
	if h.server != nil {
		_ = h.server.Close()
	}
}

// openDCS opens the Store named by the configuration's DCS section for
// member name ("" for ctl, which only reads and writes cluster keys).
// embedded starts the raft section's etcd member (daemon only).
func openDCS(ctx context.Context, c *config.Config, name string, ttl time.Duration, embedded bool, log *slog.Logger) (*dcsHandle, error) {
	ns := c.Namespace
	if ns == "" {
		ns = "/service"
	}
	switch {
	case c.Etcd3 != nil || c.Etcd != nil:
		e := c.Etcd3
		if e == nil {
			e = c.Etcd
		}
		sec := etcd.Etcd3Section{
			Host: e.Host, Hosts: e.Hosts, URL: e.URL, Proxy: e.Proxy, SRV: e.SRV, SRVSuffix: e.SRVSuffix,
			Protocol: e.Protocol, UseProxies: e.UseProxies, Username: e.Username, Password: e.Password,
			CACert: e.CACert, Cert: e.Cert, Key: e.Key,
		}
		cfg, err := sec.StoreConfig(ctx, ns, c.Scope, name)
		if err != nil {
			return nil, &configError{fmt.Errorf("etcd3 section: %w", err)}
		}
		cfg.TTL, cfg.Logger = ttl, log
		st, err := etcd.Open(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("open etcd %v: %w", cfg.Endpoints, err)
		}
		return &dcsHandle{store: st}, nil
	case c.Raft != nil:
		r := c.Raft
		sec := etcd.RaftSection{SelfAddr: r.SelfAddr, BindAddr: r.BindAddr, PartnerAddrs: r.PartnerAddrs, DataDir: r.DataDir, Password: r.Password}
		h := &dcsHandle{}
		if embedded {
			scfg, err := sec.ServerConfig(c.Scope)
			if err != nil {
				return nil, &configError{fmt.Errorf("raft section: %w", err)}
			}
			// etcd logs every request at Info; keep its warnings only.
			scfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("member", name)
			srv, err := etcd.StartServer(ctx, scfg)
			if err != nil {
				return nil, fmt.Errorf("start embedded etcd: %w", err)
			}
			h.server = srv
		}
		eps := sec.Endpoints()
		if embedded {
			eps = h.server.ClientURLs()
		}
		st, err := etcd.Open(ctx, etcd.Config{Endpoints: eps, Namespace: ns, Scope: c.Scope, Name: name, TTL: ttl, Logger: log})
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("open embedded etcd %v: %w", eps, err)
		}
		h.store = st
		return h, nil
	case c.ZooKeeper != nil:
		z := c.ZooKeeper
		cfg := zookeeper.Config{
			Hosts: z.Hosts, Namespace: ns, Scope: c.Scope, Name: name, TTL: ttl,
			UseSSL: z.UseSSL, CACert: z.CACert, Cert: z.Cert, Key: z.Key, KeyPassword: z.KeyPassword, Verify: z.Verify,
			AuthData: z.AuthData, SetACLs: z.SetACLs, Logger: log,
		}
		st, err := zookeeper.Open(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("open zookeeper %v: %w", z.Hosts, err)
		}
		return &dcsHandle{store: st}, nil
	case c.Consul != nil:
		k := c.Consul
		cfg := consul.DefaultConfig()
		addr := k.Host
		if k.URL != "" {
			addr = k.URL
		}
		if addr == "" {
			addr = "127.0.0.1:8500"
		}
		if k.Port != nil {
			if h, _, err := net.SplitHostPort(addr); err == nil {
				addr = net.JoinHostPort(h, strconv.Itoa(*k.Port))
			} else {
				addr = net.JoinHostPort(addr, strconv.Itoa(*k.Port))
			}
		}
		cfg.Address, cfg.Scheme, cfg.Token, cfg.Datacenter = addr, k.Scheme, k.Token, k.DC
		cfg.Namespace, cfg.Scope, cfg.Name, cfg.TTL, cfg.Checks, cfg.Logger = ns, c.Scope, name, ttl, k.Checks, log
		st, err := consul.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("open consul %s: %w", addr, err)
		}
		return &dcsHandle{store: st}, nil
	case c.Kubernetes != nil:
		kc, err := kubernetesConfig(c, name, ttl, log)
		if err != nil {
			return nil, &configError{err}
		}
		st, err := kubernetes.New(kc)
		if err != nil {
			// New fails only on configuration and credentials; the API
			// server is first contacted below.
			return nil, &configError{err}
		}
		// The first read waits until the list+watch streams are
		// established, so an unreachable API server shows up here.
		if _, err := st.Cluster(ctx); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("kubernetes API (namespace %s): %w", kc.Namespace, err)
		}
		return &dcsHandle{store: st}, nil
	}
	return nil, &configError{errors.New("no DCS section in the configuration (etcd3, etcd, raft, zookeeper, consul, kubernetes)")}
}
