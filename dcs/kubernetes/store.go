package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
)

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.RawWriter = (*Store)(nil)
)

// Store is a dcs.Store on the Kubernetes API (spec/dcs-layout.md §8). See
// the package documentation for the layout and the rules.
type Store struct {
	cfg      Config
	log      *slog.Logger
	clock    clock.WithTicker
	client   kubernetes.Interface
	http     *http.Client
	selector string
	names    objectNames

	ttlNanos atomic.Int64
	changes  chan struct{}
	rearm    chan struct{}
	closed   atomic.Bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu           sync.Mutex
	objs         map[string]*object // by object name: leader, config, failover, sync
	pods         map[string]*pod    // by pod name
	tombstones   map[string]string  // objects we deleted: name -> last resourceVersion
	objsReady    bool
	podsReady    bool
	readyChanged chan struct{} // closed and replaced when readiness changes
	lastLeader   string        // last live leader reported by Changes

	// touchMu serialises member writes; lastMember is the last member
	// value TouchMember was given (for relabelling on leader changes).
	touchMu    sync.Mutex
	lastMember *memberState
	lastStamp  time.Time // last renew stamp written, kept strictly increasing

	serviceOnce atomic.Bool // the config Service exists (Endpoints mode)
	warned      sync.Map    // API warnings already logged
}

type objectNames struct {
	leader, config, failover, sync string
}

// New opens a Store and starts its list+watch streams. It does not wait
// for them: the first Cluster call does.
func New(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:          cfg,
		log:          cfg.Logger.With("cluster", cfg.Scope, "member", cfg.Name),
		clock:        cfg.Clock,
		selector:     cfg.selector(),
		changes:      make(chan struct{}, 1),
		rearm:        make(chan struct{}, 1),
		objs:         map[string]*object{},
		pods:         map[string]*pod{},
		tombstones:   map[string]string{},
		readyChanged: make(chan struct{}),
	}
	s.ttlNanos.Store(int64(cfg.TTL))
	leader := cfg.Scope
	if !cfg.UseEndpoints {
		leader += "-leader"
	}
	s.names = objectNames{leader: leader, config: cfg.Scope + "-config",
		failover: cfg.Scope + "-failover", sync: cfg.Scope + "-sync"}

	if cfg.Client != nil {
		s.client = cfg.Client
	} else if err := s.connect(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(3)
	go s.run(s.objectLister())
	go s.run(s.podLister())
	go s.expiryLoop()
	return s, nil
}

// connect builds the clientset from the configured credentials.
func (s *Store) connect() error {
	rc, err := s.cfg.restConfig()
	if err != nil {
		return err
	}
	if rc.WarningHandler == nil && rc.WarningHandlerWithContext == nil {
		rc.WarningHandler = warningLogger{s}
	}
	// Our own dialer makes client-go build a transport for this Store
	// alone instead of sharing a cached one, so Close can close its
	// connections.
	if rc.Dial == nil {
		rc.Dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	s.http, err = rest.HTTPClientFor(rc)
	if err != nil {
		return fmt.Errorf("kubernetes: http client: %w", err)
	}
	if s.cfg.BypassAPIService {
		rc = s.bypassService(rc)
	}
	s.client, err = kubernetes.NewForConfigAndClient(rc, s.http)
	if err != nil {
		return fmt.Errorf("kubernetes: client: %w", err)
	}
	return nil
}

// bypassService resolves the API servers behind default/kubernetes and
// returns a config pointing at the first one (spec/dcs-layout.md §8 "API
// access"); on any error it keeps rc.
func (s *Store) bypassService(rc *rest.Config) *rest.Config {
	c, err := kubernetes.NewForConfigAndClient(rc, s.http)
	if err != nil {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RetryTimeout)
	defer cancel()
	ep, err := c.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		s.log.Warn("bypass_api_service: cannot resolve the API servers, using the service", "error", err)
		return rc
	}
	for _, ss := range ep.Subsets {
		var port int32
		for _, p := range ss.Ports {
			if p.Name == "https" {
				port = p.Port
			}
		}
		if port == 0 || len(ss.Addresses) == 0 {
			continue
		}
		out := rest.CopyConfig(rc)
		out.Host = "https://" + net.JoinHostPort(ss.Addresses[0].IP, strconv.Itoa(int(port)))
		if out.TLSClientConfig.ServerName == "" {
			out.TLSClientConfig.ServerName = "kubernetes.default.svc"
		}
		hc, err := rest.HTTPClientFor(out)
		if err != nil {
			return rc
		}
		s.http = hc
		return out
	}
	return rc
}

// warningLogger logs each distinct API warning once ("v1 Endpoints is
// deprecated" would otherwise repeat on every call in Endpoints mode).
type warningLogger struct{ s *Store }

func (w warningLogger) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	if _, seen := w.s.warned.LoadOrStore(text, true); !seen {
		w.s.log.Info("kubernetes API warning", "warning", text)
	}
}

func (s *Store) ttl() time.Duration { return time.Duration(s.ttlNanos.Load()) }

// SetTTL implements dcs.Store. The new ttl is written with the next leader
// renewal and member touch, and readers time expiry by the written value.
func (s *Store) SetTTL(ttl time.Duration) {
	if ttl > 0 {
		s.ttlNanos.Store(int64(ttl))
	}
}

// Changes implements dcs.Store.
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Close implements dcs.Store: it stops the watches and the expiry timer
// and closes the connections. The leader record is left as is and
// expires on the readers' clocks.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
	return nil
}

// begin checks what every call checks first.
func (s *Store) begin(ctx context.Context, op string, needMember bool) error {
	if s.closed.Load() {
		return dcs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: kubernetes: %s: %w", dcs.ErrUnavailable, op, err)
	}
	if needMember && s.cfg.Name == "" {
		return dcs.ErrNoMember
	}
	return nil
}

// ready waits until the caches are fed, for writes that decide from them.
func (s *Store) ready(ctx context.Context, op string) error {
	if err := s.waitReady(ctx); err != nil {
		if s.closed.Load() {
			return dcs.ErrClosed
		}
		return fmt.Errorf("%w: kubernetes: %s: watch not established: %w", dcs.ErrUnavailable, op, err)
	}
	return nil
}

// withDeadline applies RetryTimeout to a ctx without a deadline.
func (s *Store) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.RetryTimeout)
}

// Cluster implements dcs.Store. It serves the list+watch caches once both
// watches are established (waiting for them up to ctx's deadline); in
// ReadConsistent mode it lists objects and pods first.
func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if err := s.begin(ctx, "read cluster", false); err != nil {
		return nil, err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if s.cfg.ReadMode == ReadConsistent {
		if err := s.relist(ctx); err != nil {
			return nil, err
		}
	} else if err := s.waitReady(ctx); err != nil {
		if s.closed.Load() {
			return nil, dcs.ErrClosed
		}
		return nil, fmt.Errorf("%w: kubernetes: read cluster: watch not established: %w", dcs.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(), nil
}

// relist reads the objects and pods (quorum reads) into the caches.
func (s *Store) relist(ctx context.Context) error {
	for _, l := range []*lister{s.objectLister(), s.podLister()} {
		err := s.retry(ctx, "list "+l.what, func(ctx context.Context) error {
			items, rv, err := l.list(ctx, metav1.ListOptions{LabelSelector: s.selector})
			if err != nil {
				return err
			}
			s.mu.Lock()
			l.replace(items, rv)
			s.mu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// snapshotLocked builds the Cluster from the caches through the shared
// codec, each annotation group as the JSON the codec reads.
func (s *Store) snapshotLocked() *dcs.Cluster {
	var entries []dcs.Entry
	add := func(key string, value []byte, rv string) {
		entries = append(entries, dcs.Entry{Key: key, Value: value, Version: dcs.Version(rv)})
	}
	leaderName := ""
	if lo, live := s.liveLeaderLocked(); lo != nil {
		if live {
			leaderName = lo.ann[annLeader]
			add(dcs.KeyLeader, []byte(leaderName), lo.rv)
		}
		if st := annotationJSON(lo, annOptime, annSlots, annRetainSlots); st != nil {
			add(dcs.KeyStatus, st, lo.rv)
		}
		if v, ok := lo.get(annFailsafe); ok {
			add(dcs.KeyFailsafe, []byte(v), "")
		}
	}
	if co := s.objs[s.names.config]; co != nil {
		if v, ok := co.get(annConfig); ok {
			add(dcs.KeyConfig, []byte(v), co.rv)
		}
		if v, ok := co.get(annInitialize); ok {
			add(dcs.KeyInitialize, []byte(v), co.rv)
		}
		if v, ok := co.get(annHistory); ok {
			add(dcs.KeyHistory, []byte(v), co.rv)
		}
	}
	if fo := s.objs[s.names.failover]; fo != nil {
		if v := annotationJSON(fo, annLeader, annMember, annScheduledAt); v != nil {
			add(dcs.KeyFailover, v, fo.rv)
		}
	}
	if so := s.objs[s.names.sync]; so != nil {
		if v := annotationJSON(so, annLeader, annSyncStandby, annQuorum); v != nil {
			add(dcs.KeySync, v, so.rv)
		}
	}
	names := make([]string, 0, len(s.pods))
	for name := range s.pods {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := s.pods[name]
		if s.podLiveLocked(p, leaderName) {
			add(dcs.KeyMembers+name, []byte(p.ann[annStatus]), p.rv)
		}
	}
	return dcs.BuildCluster(entries)
}

// annotationJSON returns the present annotations among keys as a JSON
// object of strings (the codec reads numbers and JSON held in strings), or
// nil when none is present.
func annotationJSON(o *object, keys ...string) []byte {
	m := map[string]string{}
	for _, k := range keys {
		if v, ok := o.get(k); ok {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

func (s *Store) kindName() string {
	if s.cfg.UseEndpoints {
		return "endpoints"
	}
	return "configmaps"
}

func (s *Store) isOurObject(name string) bool {
	switch name {
	case s.names.leader, s.names.config, s.names.failover, s.names.sync:
		return true
	}
	return false
}

// ownPodLocked returns this member's cached pod, or nil.
func (s *Store) ownPodLocked() *pod { return s.pods[s.cfg.Name] }

// holdsLeaderLocked reports whether the cached leader record is live and
// names this member.
func (s *Store) holdsLeaderLocked() bool {
	o, live := s.liveLeaderLocked()
	return live && o.ann[annLeader] == s.cfg.Name
}

// newObjectMeta returns the metadata of an object the store creates.
func (s *Store) newObjectMeta(name string, ann map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace, Labels: s.cfg.objectLabels(), Annotations: ann}
}
