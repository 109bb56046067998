package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster states of an embedded member (etcd's --initial-cluster-state).
const (
	// StateNew bootstraps a new cluster from InitialCluster.
	StateNew = "new"
	// StateExisting joins a running cluster the member was added to.
	StateExisting = "existing"
)

// ServerConfig starts one etcd member inside this process (embedded mode):
// three daemons with one member each form their own etcd cluster and need no
// external DCS.
type ServerConfig struct {
	// Name is the member name, unique in the etcd cluster. Required.
	Name string
	// DataDir holds the member's WAL and snapshots. Required. A member
	// restarted on the same DataDir rejoins with its data; InitialCluster
	// and ClusterState are then ignored by etcd.
	DataDir string
	// ClientURLs are the listen URLs for clients ("http://127.0.0.1:2379").
	// Required.
	ClientURLs []string
	// AdvertiseClientURLs are published to clients (default ClientURLs).
	AdvertiseClientURLs []string
	// PeerURLs are the listen URLs for the other members. Required.
	PeerURLs []string
	// AdvertisePeerURLs are published to the other members (default
	// PeerURLs).
	AdvertisePeerURLs []string
	// InitialCluster lists every member as "name=peerURL,..." (default:
	// this member alone). Used only on first start.
	InitialCluster string
	// ClusterState is StateNew (default) or StateExisting, for a member
	// that was added with AddMember to a running cluster.
	ClusterState string
	// ClusterToken keeps separate clusters from talking to each other by
	// mistake (default "pgwarden").
	ClusterToken string
	// HeartbeatInterval and ElectionTimeout are raft timings (defaults 100
	// ms and 1 s, etcd's). A leader loss costs about ElectionTimeout; the
	// minimum lease TTL is 1.5 x ElectionTimeout.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// ReadyTimeout bounds the wait for the member to join its cluster when
	// the start context has no deadline (default 60 s).
	ReadyTimeout time.Duration
	// ClientTLS, when non-nil, serves clients over TLS (ClientURLs must
	// then be https URLs). PeerTLS does the same for member traffic.
	ClientTLS *TLSFiles
	PeerTLS   *TLSFiles
	// Logger receives etcd's log (Info as Debug) and start-up progress; nil
	// means slog.Default().
	Logger *slog.Logger
}

// TLSFiles are the PEM files of one side of an embedded member.
type TLSFiles struct {
	// CertFile and KeyFile are the member's certificate and key.
	CertFile string
	KeyFile  string
	// CAFile is the CA that signs the certificates the member accepts
	// from its clients (or peers).
	CAFile string
	// ClientCertAuth requires clients (or peers) to present a certificate
	// signed by CAFile.
	ClientCertAuth bool
}

func (f *TLSFiles) info() transport.TLSInfo {
	if f == nil {
		return transport.TLSInfo{}
	}
	return transport.TLSInfo{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: f.CAFile,
		ClientCertAuth: f.ClientCertAuth}
}

// Validate reports every problem of c.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("etcd server: name is empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("etcd server: data dir is empty"))
	}
	if len(c.ClientURLs) == 0 {
		errs = append(errs, errors.New("etcd server: no client URLs"))
	}
	if len(c.PeerURLs) == 0 {
		errs = append(errs, errors.New("etcd server: no peer URLs"))
	}
	for _, u := range append(append(append(append([]string(nil), c.ClientURLs...), c.PeerURLs...),
		c.AdvertiseClientURLs...), c.AdvertisePeerURLs...) {
		if _, err := url.Parse(u); err != nil {
			errs = append(errs, fmt.Errorf("etcd server: url %q: %w", u, err))
		}
	}
	if c.ClusterState != "" && c.ClusterState != StateNew && c.ClusterState != StateExisting {
		errs = append(errs, fmt.Errorf("etcd server: cluster state %q is neither %q nor %q",
			c.ClusterState, StateNew, StateExisting))
	}
	return errors.Join(errs...)
}

// Server is one embedded etcd member.
type Server struct {
	cfg       ServerConfig
	etcd      *embed.Etcd
	log       *slog.Logger
	closeOnce sync.Once
}

func parseURLs(ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, nil
}

// StartServer starts an embedded etcd member and waits until it has joined
// its cluster and serves clients, logging progress every few seconds while
// it waits for its peers. It fails when ctx (or ReadyTimeout) ends first.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.AdvertiseClientURLs) == 0 {
		cfg.AdvertiseClientURLs = cfg.ClientURLs
	}
	if len(cfg.AdvertisePeerURLs) == 0 {
		cfg.AdvertisePeerURLs = cfg.PeerURLs
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.Name + "=" + strings.Join(cfg.AdvertisePeerURLs, ","+cfg.Name+"=")
	}
	if cfg.ClusterState == "" {
		cfg.ClusterState = StateNew
	}
	if cfg.ClusterToken == "" {
		cfg.ClusterToken = "pgwarden"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	log := cfg.Logger.With("etcd_member", cfg.Name)

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	var err error
	if ec.ListenClientUrls, err = parseURLs(cfg.ClientURLs); err != nil {
		return nil, err
	}
	if ec.AdvertiseClientUrls, err = parseURLs(cfg.AdvertiseClientURLs); err != nil {
		return nil, err
	}
	if ec.ListenPeerUrls, err = parseURLs(cfg.PeerURLs); err != nil {
		return nil, err
	}
	if ec.AdvertisePeerUrls, err = parseURLs(cfg.AdvertisePeerURLs); err != nil {
		return nil, err
	}
	ec.InitialCluster = cfg.InitialCluster
	ec.ClusterState = cfg.ClusterState
	ec.InitialClusterToken = cfg.ClusterToken
	if cfg.HeartbeatInterval > 0 {
		ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	}
	if cfg.ElectionTimeout > 0 {
		ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	}
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log))
	ec.StrictReconfigCheck = true
	ec.ClientTLSInfo = cfg.ClientTLS.info()
	ec.PeerTLSInfo = cfg.PeerTLS.info()

	hasData := false
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "member", "wal")); err == nil {
		hasData = true
	}
	log.Info("starting embedded etcd member", "data_dir", cfg.DataDir, "existing_data", hasData,
		"client_urls", cfg.AdvertiseClientURLs, "peer_urls", cfg.AdvertisePeerURLs,
		"initial_cluster", cfg.InitialCluster, "cluster_state", cfg.ClusterState)

	start := time.Now()
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcd server %s: start: %w", cfg.Name, err)
	}
	s := &Server{cfg: cfg, etcd: e, log: log}

	wctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-e.Server.ReadyNotify():
			log.Info("embedded etcd member ready", "took", time.Since(start).Round(time.Millisecond),
				"member_id", fmt.Sprintf("%x", uint64(e.Server.MemberID())))
			return s, nil
		case err := <-e.Err():
			_ = s.Close()
			return nil, fmt.Errorf("etcd server %s: %w", cfg.Name, err)
		case <-e.Server.StopNotify():
			_ = s.Close()
			return nil, fmt.Errorf("etcd server %s: stopped during start-up", cfg.Name)
		case <-tick.C:
			log.Info("embedded etcd member waiting to join its cluster",
				"waited", time.Since(start).Round(time.Second), "initial_cluster", cfg.InitialCluster)
		case <-wctx.Done():
			_ = s.Close()
			return nil, fmt.Errorf("etcd server %s: not ready after %s (are the peers in %q running?): %w",
				cfg.Name, time.Since(start).Round(time.Millisecond), cfg.InitialCluster, wctx.Err())
		}
	}
}

// ClientURLs returns the advertised client URLs.
func (s *Server) ClientURLs() []string { return s.cfg.AdvertiseClientURLs }

// Name returns the member name.
func (s *Server) Name() string { return s.cfg.Name }

// IsLeader reports whether this member is the raft leader.
func (s *Server) IsLeader() bool { return s.etcd.Server.Leader() == s.etcd.Server.MemberID() }

// Err returns a channel that receives a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member; it is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.etcd.Close()
		s.log.Info("embedded etcd member stopped")
	})
	return nil
}

// AddMember registers a new member with the running cluster reached by c
// and returns the InitialCluster string the new member must start with
// (ClusterState StateExisting). It is idempotent: a member already
// registered with the same peer URLs is not added twice.
func AddMember(ctx context.Context, c *clientv3.Client, name string, peerURLs []string) (string, error) {
	list, err := c.MemberList(ctx)
	if err != nil {
		return "", mapErr("member list", err)
	}
	found := false
	for _, m := range list.Members {
		if sameURLs(m.PeerURLs, peerURLs) {
			found = true
		}
	}
	if !found {
		resp, err := c.MemberAdd(ctx, peerURLs)
		if err != nil {
			return "", mapErr("member add "+name, err)
		}
		list.Members = resp.Members
	}
	var parts []string
	for _, m := range list.Members {
		n := m.Name
		if sameURLs(m.PeerURLs, peerURLs) {
			n = name
		}
		if n == "" {
			continue // added but not started yet
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}

func sameURLs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
