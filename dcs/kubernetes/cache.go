package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Annotations of the objects (spec/dcs-layout.md §8).
const (
	annLeader      = "leader"
	annTTL         = "ttl"
	annRenewTime   = "renewTime"
	annAcquireTime = "acquireTime"
	annTransitions = "transitions"
	annOptime      = "optime"
	annSlots       = "slots"
	annRetainSlots = "retain_slots"
	annFailsafe    = "failsafe"
	annConfig      = "config"
	annInitialize  = "initialize"
	annHistory     = "history"
	annMember      = "member"
	annScheduledAt = "scheduled_at"
	annSyncStandby = "sync_standby"
	annQuorum      = "quorum"
	// annStatus is the pod annotation holding the member JSON.
	annStatus = "status"
	// annLease is pgwarden's own pod annotation: {"renewTime":..,"ttl":..}
	// rewritten by every touch, so that readers can time a member's
	// liveness the way they time the leader's (Patroni ignores it; pods
	// without it never expire, as in Patroni).
	annLease = "pgwarden.io/lease"
)

// object is the cached state of one of the cluster's ConfigMaps or
// Endpoints. Values are never mutated once cached; updates replace them.
type object struct {
	name string
	rv   string
	ann  map[string]string
	// subsets of a leader Endpoints (Endpoints mode only).
	subsets []corev1.EndpointSubset
	// observed is when the leader record (leader, acquireTime, renewTime,
	// ttl, transitions) last changed on our clock; leader object only.
	observed time.Time
}

// pod is the cached state of one member pod.
type pod struct {
	name     string
	uid      string
	rv       string
	ann      map[string]string
	labels   map[string]string
	podIP    string
	nodeName string
	// observed is when status or the lease annotation last changed on our
	// clock.
	observed time.Time
}

func (o *object) get(k string) (string, bool) {
	if o == nil {
		return "", false
	}
	v, ok := o.ann[k]
	return v, ok
}

// leaderRecord is what the expiry rule watches for changes.
func (o *object) leaderRecord() string {
	if o == nil {
		return ""
	}
	b, _ := json.Marshal([]string{o.ann[annLeader], o.ann[annAcquireTime], o.ann[annRenewTime],
		o.ann[annTTL], o.ann[annTransitions]})
	return string(b)
}

func (p *pod) liveness() string {
	return p.ann[annStatus] + "\x00" + p.ann[annLease]
}

// rvNewer reports whether resourceVersion a is newer than b. Kubernetes
// calls them opaque, but one API server backed by one etcd hands out
// increasing integers; a value that does not parse counts as newer.
func rvNewer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return a != b || a == "" // "" (no version at all) cannot be ordered
	}
	return x > y
}

func objectFrom(obj runtime.Object) (*object, bool) {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return &object{name: o.Name, rv: o.ResourceVersion, ann: o.Annotations}, true
	case *corev1.Endpoints:
		return &object{name: o.Name, rv: o.ResourceVersion, ann: o.Annotations, subsets: o.Subsets}, true
	}
	return nil, false
}

func podFrom(obj runtime.Object) (*pod, bool) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, false
	}
	return &pod{name: p.Name, uid: string(p.UID), rv: p.ResourceVersion, ann: p.Annotations,
		labels: p.Labels, podIP: p.Status.PodIP, nodeName: p.Spec.NodeName}, true
}

// ---- applying updates (all under s.mu) ----

// applyObjectLocked merges o (from a watch event, a list or a write
// response) into the cache unless the cache holds something newer, and
// reports whether it did.
func (s *Store) applyObjectLocked(o *object) bool {
	if !s.isOurObject(o.name) {
		return false
	}
	old := s.objs[o.name]
	if old != nil && !rvNewer(o.rv, old.rv) {
		return false
	}
	if t, ok := s.tombstones[o.name]; ok {
		if !rvNewer(o.rv, t) {
			return false
		}
		delete(s.tombstones, o.name)
	}
	now := s.clock.Now()
	o.observed = now
	if old != nil && old.leaderRecord() == o.leaderRecord() {
		o.observed = old.observed
	}
	s.objs[o.name] = o
	s.wakeOnObjectLocked(old, o)
	return true
}

// deleteObjectLocked removes an object whose final state was rv.
func (s *Store) deleteObjectLocked(name, rv string) {
	old := s.objs[name]
	if old == nil || (rv != "" && rvNewer(old.rv, rv)) {
		return
	}
	delete(s.objs, name)
	s.wakeOnObjectLocked(old, nil)
}

func (s *Store) applyPodLocked(p *pod) {
	old := s.pods[p.name]
	if old != nil && !rvNewer(p.rv, old.rv) {
		return
	}
	p.observed = s.clock.Now()
	if old != nil && old.uid == p.uid && old.liveness() == p.liveness() {
		p.observed = old.observed
	}
	s.pods[p.name] = p
}

func (s *Store) deletePodLocked(name, rv string) {
	old := s.pods[name]
	if old == nil || (rv != "" && rvNewer(old.rv, rv)) {
		return
	}
	delete(s.pods, name)
}

// wakeOnObjectLocked fires Changes for the changes the HA loop reacts to
// (store.go Changes; spec/dcs-layout.md §8 "Wake-ups"): the leader, the
// config or initialize annotations, the failover and sync objects. Leader
// renewals and status updates do not wake.
func (s *Store) wakeOnObjectLocked(old, cur *object) {
	name := old.nameOr(cur)
	switch name {
	case s.names.leader:
		s.reevaluateLeaderLocked()
	case s.names.config:
		for _, k := range []string{annConfig, annInitialize} {
			ov, ook := old.get(k)
			nv, nok := cur.get(k)
			if ov != nv || ook != nok {
				s.notify()
				return
			}
		}
	case s.names.failover, s.names.sync:
		if !sameAnnotations(old, cur) {
			s.notify()
		}
	}
}

func (o *object) nameOr(other *object) string {
	if o != nil {
		return o.name
	}
	return other.name
}

func sameAnnotations(a, b *object) bool {
	var am, bm map[string]string
	if a != nil {
		am = a.ann
	}
	if b != nil {
		bm = b.ann
	}
	if len(am) != len(bm) {
		return false
	}
	for k, v := range am {
		if w, ok := bm[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// reevaluateLeaderLocked compares the live leader (holder and
// acquireTime, "" when absent or expired) with the last one reported and
// fires Changes when it differs; it also re-arms the expiry timer.
func (s *Store) reevaluateLeaderLocked() {
	eff := ""
	if o, live := s.liveLeaderLocked(); live {
		eff = o.ann[annLeader] + "\x00" + o.ann[annAcquireTime]
	}
	if eff != s.lastLeader {
		s.lastLeader = eff
		s.notify()
	}
	select {
	case s.rearm <- struct{}{}:
	default:
	}
}

// liveLeaderLocked returns the leader object and whether it names a live
// holder: a non-empty leader annotation whose record changed less than its
// ttl ago on our clock (spec/dcs-layout.md §8, "Expiry is judged locally").
func (s *Store) liveLeaderLocked() (*object, bool) {
	o := s.objs[s.names.leader]
	if o == nil || o.ann[annLeader] == "" {
		return o, false
	}
	return o, s.clock.Since(o.observed) < s.recordTTL(o.ann[annTTL])
}

// recordTTL parses a ttl annotation (seconds), defaulting to our ttl.
func (s *Store) recordTTL(v string) time.Duration {
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
		return time.Duration(f * float64(time.Second))
	}
	return s.ttl()
}

// podLiveLocked reports whether p counts as a member: it has a status
// annotation, and it is the live leader, or carries no lease annotation
// (Patroni writes none; such members live as long as their pod), or its
// status or lease changed less than the lease's ttl ago.
func (s *Store) podLiveLocked(p *pod, leader string) bool {
	if _, ok := p.ann[annStatus]; !ok {
		return false
	}
	if p.name == leader {
		return true
	}
	raw, ok := p.ann[annLease]
	if !ok {
		return true
	}
	var l struct {
		TTL string `json:"ttl"`
	}
	_ = json.Unmarshal([]byte(raw), &l)
	return s.clock.Since(p.observed) < s.recordTTL(l.TTL)
}

// expiryLoop fires Changes when the watched leader record expires on our
// clock: it sleeps until the live record's deadline and re-evaluates,
// and is re-armed whenever the leader object changes.
func (s *Store) expiryLoop() {
	defer s.wg.Done()
	var timer interface {
		C() <-chan time.Time
		Stop() bool
	}
	for {
		s.mu.Lock()
		s.reevaluateLeaderLocked()
		// Drain the re-arm our own call just queued.
		select {
		case <-s.rearm:
		default:
		}
		// A deadline already passed needs no timer: the re-evaluation
		// above has reported it.
		var wait time.Duration
		if o, live := s.liveLeaderLocked(); live {
			wait = s.recordTTL(o.ann[annTTL]) - s.clock.Since(o.observed)
		}
		s.mu.Unlock()
		var fire <-chan time.Time
		if wait > 0 {
			t := s.clock.NewTimer(wait)
			timer, fire = t, t.C()
		}
		select {
		case <-s.ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.rearm:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
	}
}

// ---- list + watch ----

// lister is one list+watch stream: the cluster's ConfigMaps or Endpoints,
// or its pods.
type lister struct {
	what  string
	list  func(ctx context.Context, opts metav1.ListOptions) ([]runtime.Object, string, error)
	watch func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// replace installs a full list taken at resourceVersion rv, under s.mu.
	replace func(items []runtime.Object, rv string)
	// apply installs one event under s.mu.
	apply func(t watch.EventType, obj runtime.Object)
	ready *bool
}

// run keeps one cache fed until the Store closes: list, then watch from
// the list's resourceVersion, and list again whenever the watch ends (410
// Gone, the API server restarting or unreachable, the server's watch
// timeout every 30-60 min). From the end of a watch until the next list
// and watch succeed the cache counts as not ready and Cluster waits for
// it: client-go hands back an empty watch instead of an error when the
// connection drops, so only a successful list proves the server is back.
func (s *Store) run(l *lister) {
	defer s.wg.Done()
	const minDelay = 50 * time.Millisecond
	delay := minDelay
	backoff := func() bool {
		ok := s.sleep(delay)
		delay = min(2*delay, maxRetryDelay)
		return ok
	}
	for s.ctx.Err() == nil {
		items, rv, err := l.list(s.ctx, metav1.ListOptions{LabelSelector: s.selector})
		if err != nil {
			s.setReady(l, false)
			s.log.Debug("kubernetes list failed", "what", l.what, "error", err)
			if !backoff() {
				return
			}
			continue
		}
		s.mu.Lock()
		l.replace(items, rv)
		s.mu.Unlock()
		w, err := l.watch(s.ctx, metav1.ListOptions{LabelSelector: s.selector, ResourceVersion: rv,
			AllowWatchBookmarks: true})
		if err != nil {
			s.setReady(l, false)
			s.log.Debug("kubernetes watch failed", "what", l.what, "error", err)
			if !backoff() {
				return
			}
			continue
		}
		s.setReady(l, true)
		started := time.Now()
		s.consume(l, w, rv)
		s.setReady(l, false)
		if s.ctx.Err() != nil {
			return
		}
		// A watch that ended at once (a dead connection) is retried with
		// backoff; one that ran for a while is resumed at once.
		if time.Since(started) < time.Second {
			if !backoff() {
				return
			}
		} else {
			delay = minDelay
		}
	}
}

// consume applies the events of one watch until it ends and returns the
// resourceVersion to resume from ("" to list again).
func (s *Store) consume(l *lister, w watch.Interface, rv string) string {
	defer w.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return rv
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv
			}
			switch ev.Type {
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				s.log.Debug("kubernetes watch error", "what", l.what, "error", err)
				// 410 Gone and every other error: list again.
				return ""
			case watch.Bookmark:
				if m, err := metaOf(ev.Object); err == nil {
					rv = m.GetResourceVersion()
				}
			default:
				m, err := metaOf(ev.Object)
				if err != nil {
					continue
				}
				rv = m.GetResourceVersion()
				s.mu.Lock()
				l.apply(ev.Type, ev.Object)
				s.mu.Unlock()
			}
		}
	}
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, errors.New("event object has no metadata")
	}
	return m, nil
}

func (s *Store) setReady(l *lister, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *l.ready == ready {
		return
	}
	*l.ready = ready
	close(s.readyChanged)
	s.readyChanged = make(chan struct{})
}

// sleep waits d on the Store's clock; false when the Store closed.
func (s *Store) sleep(d time.Duration) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// waitReady waits until both caches are fed by an established watch.
func (s *Store) waitReady(ctx context.Context) error {
	for {
		s.mu.Lock()
		ready := s.objsReady && s.podsReady
		ch := s.readyChanged
		s.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return errClosedDuringWait
		case <-ch:
		}
	}
}

var errClosedDuringWait = errors.New("store closed")

// objectsOf returns pointers to items as runtime.Objects.
func objectsOf[T any, P interface {
	*T
	runtime.Object
}](items []T) []runtime.Object {
	out := make([]runtime.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

// objectLister returns the list+watch stream of the cluster's ConfigMaps or
// Endpoints.
func (s *Store) objectLister() *lister {
	l := &lister{what: s.kindName(), ready: &s.objsReady}
	ns := s.cfg.Namespace
	if s.cfg.UseEndpoints {
		api := s.client.CoreV1().Endpoints(ns)
		l.list = func(ctx context.Context, o metav1.ListOptions) ([]runtime.Object, string, error) {
			r, err := api.List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return objectsOf(r.Items), r.ResourceVersion, nil
		}
		l.watch = api.Watch
	} else {
		api := s.client.CoreV1().ConfigMaps(ns)
		l.list = func(ctx context.Context, o metav1.ListOptions) ([]runtime.Object, string, error) {
			r, err := api.List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return objectsOf(r.Items), r.ResourceVersion, nil
		}
		l.watch = api.Watch
	}
	l.replace = s.replaceObjectsLocked
	l.apply = func(t watch.EventType, obj runtime.Object) {
		o, ok := objectFrom(obj)
		if !ok {
			return
		}
		if t == watch.Deleted {
			s.deleteObjectLocked(o.name, o.rv)
			return
		}
		s.applyObjectLocked(o)
	}
	return l
}

// replaceObjectsLocked installs a full list: newer objects replace cached
// ones, and cached objects missing from the list are dropped unless the
// cache knows a newer state (a write of ours that raced the list).
func (s *Store) replaceObjectsLocked(items []runtime.Object, rv string) {
	seen := map[string]bool{}
	for _, it := range items {
		if o, ok := objectFrom(it); ok {
			seen[o.name] = true
			s.applyObjectLocked(o)
		}
	}
	for name, o := range s.objs {
		if !seen[name] && !rvNewer(o.rv, rv) {
			s.deleteObjectLocked(name, "")
		}
	}
}

func (s *Store) podLister() *lister {
	api := s.client.CoreV1().Pods(s.cfg.Namespace)
	return &lister{
		what:  "pods",
		ready: &s.podsReady,
		list: func(ctx context.Context, o metav1.ListOptions) ([]runtime.Object, string, error) {
			r, err := api.List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return objectsOf(r.Items), r.ResourceVersion, nil
		},
		watch:   api.Watch,
		replace: s.replacePodsLocked,
		apply: func(t watch.EventType, obj runtime.Object) {
			p, ok := podFrom(obj)
			if !ok {
				return
			}
			if t == watch.Deleted {
				s.deletePodLocked(p.name, p.rv)
				return
			}
			s.applyPodLocked(p)
		},
	}
}

func (s *Store) replacePodsLocked(items []runtime.Object, rv string) {
	seen := map[string]bool{}
	for _, it := range items {
		if p, ok := podFrom(it); ok {
			seen[p.name] = true
			s.applyPodLocked(p)
		}
	}
	for name, p := range s.pods {
		if !seen[name] && !rvNewer(p.rv, rv) {
			delete(s.pods, name)
		}
	}
}
