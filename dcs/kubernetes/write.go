package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pgwarden/pgwarden/dcs"
)

// change is one strategic-merge patch of a ConfigMap or Endpoints:
// annotations to set (nil value: remove), optional subsets, and the
// resourceVersion to compare ("" for an unconditional write).
type change struct {
	rv      string
	ann     map[string]*string
	subsets *[]corev1.EndpointSubset
}

func str(s string) *string { return &s }

func (c change) body() []byte {
	meta := map[string]any{"annotations": c.ann}
	if c.rv != "" {
		meta["resourceVersion"] = c.rv
	}
	body := map[string]any{"metadata": meta}
	if c.subsets != nil {
		subsets := *c.subsets
		if subsets == nil {
			subsets = []corev1.EndpointSubset{}
		}
		body["subsets"] = subsets
	}
	b, _ := json.Marshal(body)
	return b
}

// setAnnotations returns the annotations a create writes (nulls left out).
func (c change) setAnnotations() map[string]string {
	out := map[string]string{}
	for k, v := range c.ann {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// write patches object name; when it does not exist and create is true
// (only for unconditional changes) it creates it. It retries transient
// errors within ctx and caches the result. Errors are unmapped API errors.
func (s *Store) write(ctx context.Context, name string, c change, create bool) (*object, error) {
	var out *object
	err := s.retry(ctx, "write "+name, func(ctx context.Context) error {
		o, err := s.patchObject(ctx, name, c)
		if apierrors.IsNotFound(err) && create && c.rv == "" {
			o, err = s.createObject(ctx, name, c)
			if apierrors.IsAlreadyExists(err) {
				o, err = s.patchObject(ctx, name, c)
			}
		}
		if err != nil {
			return err
		}
		out = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	if name == s.names.config && s.cfg.UseEndpoints {
		s.ensureConfigService(ctx)
	}
	return out, nil
}

func (s *Store) patchObject(ctx context.Context, name string, c change) (*object, error) {
	var o *object
	if s.cfg.UseEndpoints {
		r, err := s.client.CoreV1().Endpoints(s.cfg.Namespace).Patch(ctx, name, types.StrategicMergePatchType, c.body(), metav1.PatchOptions{})
		if err != nil {
			return nil, err
		}
		o, _ = objectFrom(r)
	} else {
		r, err := s.client.CoreV1().ConfigMaps(s.cfg.Namespace).Patch(ctx, name, types.StrategicMergePatchType, c.body(), metav1.PatchOptions{})
		if err != nil {
			return nil, err
		}
		o, _ = objectFrom(r)
	}
	s.cacheObject(o)
	return o, nil
}

func (s *Store) createObject(ctx context.Context, name string, c change) (*object, error) {
	meta := s.newObjectMeta(name, c.setAnnotations())
	var o *object
	if s.cfg.UseEndpoints {
		ep := &corev1.Endpoints{ObjectMeta: meta}
		if c.subsets != nil {
			ep.Subsets = *c.subsets
		}
		r, err := s.client.CoreV1().Endpoints(s.cfg.Namespace).Create(ctx, ep, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		o, _ = objectFrom(r)
	} else {
		r, err := s.client.CoreV1().ConfigMaps(s.cfg.Namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		o, _ = objectFrom(r)
	}
	s.cacheObject(o)
	return o, nil
}

// fetch reads object name directly from the API (bypassing the cache, as
// after a conflict) and caches what it finds; nil when it does not exist.
func (s *Store) fetch(ctx context.Context, name string) (*object, error) {
	var o *object
	err := s.retry(ctx, "get "+name, func(ctx context.Context) error {
		var err error
		if s.cfg.UseEndpoints {
			r, gerr := s.client.CoreV1().Endpoints(s.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
			if gerr == nil {
				o, _ = objectFrom(r)
			}
			err = gerr
		} else {
			r, gerr := s.client.CoreV1().ConfigMaps(s.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
			if gerr == nil {
				o, _ = objectFrom(r)
			}
			err = gerr
		}
		if apierrors.IsNotFound(err) {
			o = nil
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o == nil {
		s.deleteObjectLocked(name, "")
		return nil, nil
	}
	s.applyObjectLocked(o)
	return s.objs[name], nil
}

func (s *Store) cacheObject(o *object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyObjectLocked(o)
}

func (s *Store) cached(name string) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objs[name]
}

// ensureConfigService creates the headless Service <scope>-config that
// keeps the config Endpoints from being garbage-collected (Endpoints
// mode, spec/dcs-layout.md §8). A failure is logged and retried with the
// next config write.
func (s *Store) ensureConfigService(ctx context.Context) {
	if s.serviceOnce.Load() {
		return
	}
	svc := &corev1.Service{
		ObjectMeta: s.newObjectMeta(s.names.config, nil),
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
	}
	_, err := s.client.CoreV1().Services(s.cfg.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		s.log.Warn("kubernetes: cannot create the config service", "service", s.names.config, "error", err)
		return
	}
	s.serviceOnce.Store(true)
}

// ---- stamps ----

// stamp returns the renew time to write: now in UTC, as Patroni writes
// it, made strictly later than the previous stamp so that every renewal
// changes the record even on a coarse or fake clock.
func (s *Store) stamp() string {
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	return s.stampLocked()
}

func (s *Store) stampLocked() string {
	now := s.clock.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastStamp) {
		now = s.lastStamp.Add(time.Microsecond)
	}
	s.lastStamp = now
	return now.Format("2006-01-02T15:04:05.000000+00:00")
}

// ttlString formats the ttl annotation: whole seconds as Patroni writes
// them, fractions when the ttl has any.
func (s *Store) ttlString() string {
	ttl := s.ttl()
	if ttl%time.Second == 0 {
		return strconv.FormatInt(int64(ttl/time.Second), 10)
	}
	return strconv.FormatFloat(ttl.Seconds(), 'f', -1, 64)
}

// ---- leader ----

// AcquireLeader implements dcs.Store: a PATCH of the leader record with
// the resourceVersion seen while it was absent or expired, or a create
// (spec/dcs-layout.md §8 "Acquire").
func (s *Store) AcquireLeader(ctx context.Context) error {
	return s.writeLeader(ctx, "acquire leader", false)
}

// TakeLeader implements dcs.Store: an unconditional write of the record.
func (s *Store) TakeLeader(ctx context.Context) error {
	return s.writeLeader(ctx, "take leader", true)
}

// writeLeader is AcquireLeader (force false) and TakeLeader (force true);
// op names the call in errors.
func (s *Store) writeLeader(ctx context.Context, op string, force bool) error {
	if err := s.begin(ctx, op, true); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if err := s.ready(ctx, op); err != nil {
		return err
	}
	if err := s.acquire(ctx, force); err != nil {
		return s.mapErr(op, err)
	}
	s.relabel(ctx)
	return nil
}

// maxConflicts bounds the re-reads after 409s within one call.
const maxConflicts = 3

func (s *Store) acquire(ctx context.Context, take bool) error {
	now := s.stamp()
	cur := s.cached(s.names.leader)
	fetched := false
	for range maxConflicts {
		s.mu.Lock()
		_, live := s.liveLeaderLocked()
		s.mu.Unlock()
		holder, _ := cur.get(annLeader)
		if !take && live && holder != s.cfg.Name {
			if fetched {
				return fmt.Errorf("%w: leader is held by %s", dcs.ErrConflict, holder)
			}
			// The caller saw the record free, our cache says held: the
			// cache may be behind a release. Read it once to be sure.
			var err error
			if cur, err = s.fetch(ctx, s.names.leader); err != nil {
				return err
			}
			fetched = true
			continue
		}
		acquired := now
		prevTransitions, _ := cur.get(annTransitions)
		transitions, _ := strconv.Atoi(prevTransitions)
		if at, _ := cur.get(annAcquireTime); holder == s.cfg.Name && at != "" {
			acquired = at
		} else if cur != nil {
			transitions++
		}
		c := change{ann: map[string]*string{
			annLeader:      str(s.cfg.Name),
			annTTL:         str(s.ttlString()),
			annRenewTime:   str(now),
			annAcquireTime: str(acquired),
			annTransitions: str(strconv.Itoa(transitions)),
		}}
		c.subsets = s.leaderSubsets(cur, false)
		var err error
		switch {
		case take:
			_, err = s.write(ctx, s.names.leader, c, true)
		case cur == nil:
			err = s.retry(ctx, "create leader", func(ctx context.Context) error {
				_, err := s.createObject(ctx, s.names.leader, c)
				return err
			})
		default:
			c.rv = cur.rv
			_, err = s.write(ctx, s.names.leader, c, false)
		}
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && !apierrors.IsNotFound(err) {
			return err
		}
		// Someone wrote the record since we read it: read it again. Our
		// own earlier attempt may be what we find.
		if cur, err = s.fetch(ctx, s.names.leader); err != nil {
			return err
		}
		fetched = true
		if h, _ := cur.get(annLeader); h == s.cfg.Name && cur.ann[annRenewTime] == now {
			return nil
		}
	}
	return fmt.Errorf("%w: the leader record kept changing", dcs.ErrConflict)
}

// UpdateLeader implements dcs.Store: a PATCH of our live record with its
// cached resourceVersion, carrying the status and failsafe annotations
// (spec/dcs-layout.md §8 "Renew").
func (s *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if err := s.begin(ctx, "update leader", true); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if err := s.ready(ctx, "update leader"); err != nil {
		return err
	}
	for range maxConflicts {
		s.mu.Lock()
		cur, live := s.liveLeaderLocked()
		s.mu.Unlock()
		if holder, _ := cur.get(annLeader); !live || holder != s.cfg.Name {
			return fmt.Errorf("%w: kubernetes: leader record %s names %q (live: %t)", dcs.ErrLeaderLost, s.names.leader, holder, live)
		}
		c := change{rv: cur.rv, ann: map[string]*string{
			annLeader:    str(s.cfg.Name),
			annTTL:       str(s.ttlString()),
			annRenewTime: str(s.stamp()),
		}}
		if u.Status != nil {
			statusAnnotations(c.ann, u.Status)
		}
		if u.Failsafe != nil {
			if len(u.Failsafe) == 0 {
				c.ann[annFailsafe] = nil
			} else {
				c.ann[annFailsafe] = str(string(dcs.EncodeFailsafe(u.Failsafe)))
			}
		}
		c.subsets = s.leaderSubsets(cur, false)
		_, err := s.write(ctx, s.names.leader, c, false)
		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err):
			s.mu.Lock()
			s.deleteObjectLocked(s.names.leader, "")
			s.mu.Unlock()
			return fmt.Errorf("%w: kubernetes: leader record %s is gone", dcs.ErrLeaderLost, s.names.leader)
		case apierrors.IsConflict(err):
			if _, err := s.fetch(ctx, s.names.leader); err != nil {
				return s.mapErr("update leader", err)
			}
		default:
			return s.mapErr("update leader", err)
		}
	}
	return fmt.Errorf("%w: kubernetes: update leader: the record kept changing", dcs.ErrUnavailable)
}

// statusAnnotations sets optime, slots and retain_slots from st (absent
// values removed).
func statusAnnotations(ann map[string]*string, st *dcs.Status) {
	ann[annOptime] = str(strconv.FormatUint(uint64(st.LastLSN), 10))
	ann[annSlots], ann[annRetainSlots] = nil, nil
	if len(st.Slots) > 0 {
		m := make(map[string]uint64, len(st.Slots))
		for k, v := range st.Slots {
			m[k] = uint64(v)
		}
		b, _ := json.Marshal(m)
		ann[annSlots] = str(string(b))
	}
	if len(st.RetainSlots) > 0 {
		b, _ := json.Marshal(st.RetainSlots)
		ann[annRetainSlots] = str(string(b))
	}
}

// ReleaseLeader implements dcs.Store: leader: null with the cached
// resourceVersion, plus the final status; in Endpoints mode the subsets
// are emptied in the same write (spec/dcs-layout.md §8 "Release").
func (s *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if err := s.begin(ctx, "release leader", true); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if err := s.ready(ctx, "release leader"); err != nil {
		return err
	}
	cur := s.cached(s.names.leader)
	for range maxConflicts {
		if h, _ := cur.get(annLeader); h != s.cfg.Name {
			return nil
		}
		c := change{rv: cur.rv, ann: map[string]*string{annLeader: nil}}
		if last != nil {
			statusAnnotations(c.ann, last)
		}
		c.subsets = s.leaderSubsets(cur, true)
		_, err := s.write(ctx, s.names.leader, c, false)
		switch {
		case err == nil:
			s.relabel(ctx)
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			if cur, err = s.fetch(ctx, s.names.leader); err != nil {
				return s.mapErr("release leader", err)
			}
		default:
			return s.mapErr("release leader", err)
		}
	}
	return fmt.Errorf("%w: kubernetes: release leader: the record kept changing", dcs.ErrUnavailable)
}

// leaderSubsets returns the subsets to write with a leader change, or
// nil to leave them: ConfigMaps mode never has any; on release they are
// emptied; otherwise they point at our pod, written only when different
// (spec/dcs-layout.md §8 "Endpoints mode").
func (s *Store) leaderSubsets(cur *object, release bool) *[]corev1.EndpointSubset {
	if !s.cfg.UseEndpoints {
		return nil
	}
	var want []corev1.EndpointSubset
	if !release {
		s.mu.Lock()
		p := s.ownPodLocked()
		s.mu.Unlock()
		ip := s.cfg.PodIP
		if ip == "" && p != nil {
			ip = p.podIP
		}
		if ip == "" {
			s.log.Warn("kubernetes: no pod IP for the leader endpoints (set pod_ip, or the pod has no status.podIP yet)")
		} else {
			addr := corev1.EndpointAddress{IP: ip, TargetRef: &corev1.ObjectReference{
				Kind: "Pod", Namespace: s.cfg.Namespace, Name: s.cfg.Name}}
			if p != nil {
				addr.TargetRef.UID = types.UID(p.uid)
				if p.nodeName != "" {
					addr.NodeName = str(p.nodeName)
				}
			}
			ports := make([]corev1.EndpointPort, len(s.cfg.Ports))
			for i, pt := range s.cfg.Ports {
				proto := corev1.Protocol(pt.Protocol)
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				ports[i] = corev1.EndpointPort{Name: pt.Name, Port: pt.Port, Protocol: proto}
			}
			want = []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr}, Ports: ports}}
		}
	}
	var have []corev1.EndpointSubset
	if cur != nil {
		have = cur.subsets
	}
	if len(want) == 0 && len(have) == 0 {
		return nil
	}
	if apiequality.Semantic.DeepEqual(want, have) {
		return nil
	}
	return &want
}

// ---- initialize, config, history ----

// Initialize implements dcs.Store. The create-if-absent is a PATCH with
// the config object's resourceVersion (or a create) that is only sent
// while the initialize annotation is absent (spec/dcs-layout.md §2.1).
func (s *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	if err := s.begin(ctx, "initialize", false); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	c := change{ann: map[string]*string{annInitialize: str(sysid)}}
	if !create {
		_, err := s.write(ctx, s.names.config, c, true)
		return s.mapErr("initialize", err)
	}
	if err := s.ready(ctx, "initialize"); err != nil {
		return err
	}
	cur := s.cached(s.names.config)
	fetched := false
	for range maxConflicts + 1 {
		if _, ok := cur.get(annInitialize); ok {
			if fetched {
				return fmt.Errorf("%w: kubernetes: cluster is already initialized", dcs.ErrConflict)
			}
			// The cache may be behind a CancelInitialize: read once.
			var err error
			if cur, err = s.fetch(ctx, s.names.config); err != nil {
				return s.mapErr("initialize", err)
			}
			fetched = true
			continue
		}
		var err error
		if cur == nil {
			err = s.retry(ctx, "create config", func(ctx context.Context) error {
				_, err := s.createObject(ctx, s.names.config, c)
				return err
			})
			if err == nil && s.cfg.UseEndpoints {
				s.ensureConfigService(ctx)
			}
		} else {
			c.rv = cur.rv
			_, err = s.write(ctx, s.names.config, c, false)
		}
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && !apierrors.IsNotFound(err) {
			return s.mapErr("initialize", err)
		}
		if cur, err = s.fetch(ctx, s.names.config); err != nil {
			return s.mapErr("initialize", err)
		}
		fetched = true
	}
	return fmt.Errorf("%w: kubernetes: initialize: the config object kept changing", dcs.ErrConflict)
}

// CancelInitialize implements dcs.Store.
func (s *Store) CancelInitialize(ctx context.Context) error {
	if err := s.begin(ctx, "cancel initialize", false); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	_, err := s.write(ctx, s.names.config, change{ann: map[string]*string{annInitialize: nil}}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return s.mapErr("cancel initialize", err)
}

// SetConfig implements dcs.Store. The version is the config object's
// resourceVersion, shared with initialize and history.
func (s *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	if err := s.begin(ctx, "set config", false); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, config); err != nil || !bytes.HasPrefix(buf.Bytes(), []byte("{")) {
		return "", fmt.Errorf("kubernetes: set config: not a JSON object: %q", truncate(config))
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	c := change{rv: string(prev), ann: map[string]*string{annConfig: str(buf.String())}}
	o, err := s.write(ctx, s.names.config, c, prev == "")
	if prev != "" && apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%w: kubernetes: set config: no config to compare with", dcs.ErrConflict)
	}
	if err != nil {
		return "", s.mapErr("set config", err)
	}
	return dcs.Version(o.rv), nil
}

// SetHistory implements dcs.Store, fenced on our cached leader record.
func (s *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	if err := s.fence(ctx, "set history"); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	c := change{ann: map[string]*string{annHistory: str(string(dcs.EncodeHistory(h)))}}
	_, err := s.write(ctx, s.names.config, c, true)
	return s.mapErr("set history", err)
}

// fence checks that this member holds a live leader record in the cache.
// Kubernetes has no multi-object transaction, so this is the same check
// Patroni makes; the write itself carries no leader condition.
func (s *Store) fence(ctx context.Context, op string) error {
	if err := s.begin(ctx, op, false); err != nil {
		return err
	}
	if s.cfg.Name == "" {
		return dcs.ErrNoMember
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if err := s.ready(ctx, op); err != nil {
		return err
	}
	s.mu.Lock()
	holds := s.holdsLeaderLocked()
	s.mu.Unlock()
	if !holds {
		return fmt.Errorf("%w: kubernetes: %s: %s does not hold the leader record", dcs.ErrLeaderLost, op, s.cfg.Name)
	}
	return nil
}

// ---- failover, sync ----

// SetFailover implements dcs.Store: the leader, member and scheduled_at
// annotations of the failover object; an empty request removes them.
func (s *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	if err := s.begin(ctx, "set failover", false); err != nil {
		return "", err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	ann := annotationsFromJSON(dcs.EncodeFailover(f), annLeader, annMember, annScheduledAt)
	return s.casWrite(ctx, "set failover", s.names.failover, ann, prev, !f.IsEmpty())
}

// SetSync implements dcs.Store, fenced on our cached leader record.
func (s *Store) SetSync(ctx context.Context, st *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	if err := s.fence(ctx, "set sync"); err != nil {
		return "", err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	ann := annotationsFromJSON(dcs.EncodeSync(st), annLeader, annQuorum, annSyncStandby)
	return s.casWrite(ctx, "set sync", s.names.sync, ann, prev, !st.IsEmpty())
}

// DeleteSync implements dcs.Store: the sync annotations set to null with
// CAS on prev.
func (s *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	if err := s.fence(ctx, "delete sync"); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	ann := map[string]*string{annLeader: nil, annQuorum: nil, annSyncStandby: nil}
	_, err := s.casWrite(ctx, "delete sync", s.names.sync, ann, prev, false)
	return err
}

// casWrite writes ann to object name with CAS on prev (unconditional when
// empty). A missing object is created when create is set; otherwise a
// missing object is a conflict for a CAS write and nothing to do for an
// unconditional one.
func (s *Store) casWrite(ctx context.Context, op, name string, ann map[string]*string, prev dcs.Version, create bool) (dcs.Version, error) {
	o, err := s.write(ctx, name, change{rv: string(prev), ann: ann}, create)
	if apierrors.IsNotFound(err) {
		if prev != "" {
			return "", fmt.Errorf("%w: kubernetes: %s: %s does not exist", dcs.ErrConflict, op, name)
		}
		return "", nil
	}
	if err != nil {
		return "", s.mapErr(op, err)
	}
	return dcs.Version(o.rv), nil
}

// annotationsFromJSON turns a codec object into annotations: strings as
// they are, other values as their JSON text, absent or null keys removed.
func annotationsFromJSON(b []byte, keys ...string) map[string]*string {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(b, &fields)
	out := make(map[string]*string, len(keys))
	for _, k := range keys {
		raw, ok := fields[k]
		if !ok || string(raw) == "null" {
			out[k] = nil
			continue
		}
		var sv string
		if json.Unmarshal(raw, &sv) == nil {
			out[k] = str(sv)
			continue
		}
		out[k] = str(string(raw))
	}
	return out
}

// ---- delete ----

// DeleteCluster implements dcs.Store: it deletes the cluster's objects
// (and the config Service in Endpoints mode) and removes the member
// annotations from its pods. Pods themselves are left alone.
func (s *Store) DeleteCluster(ctx context.Context) error {
	if err := s.begin(ctx, "delete cluster", false); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	for _, name := range []string{s.names.leader, s.names.config, s.names.failover, s.names.sync} {
		err := s.retry(ctx, "delete "+name, func(ctx context.Context) error {
			var err error
			if s.cfg.UseEndpoints {
				err = s.client.CoreV1().Endpoints(s.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
			} else {
				err = s.client.CoreV1().ConfigMaps(s.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
			}
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
		if err != nil {
			return s.mapErr("delete cluster", err)
		}
		s.mu.Lock()
		if o := s.objs[name]; o != nil {
			s.tombstones[name] = o.rv
		}
		s.deleteObjectLocked(name, "")
		s.mu.Unlock()
	}
	if s.cfg.UseEndpoints {
		err := s.client.CoreV1().Services(s.cfg.Namespace).Delete(ctx, s.names.config, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return s.mapErr("delete cluster", err)
		}
		s.serviceOnce.Store(false)
	}
	var pods *corev1.PodList
	err := s.retry(ctx, "list pods", func(ctx context.Context) error {
		var err error
		pods, err = s.client.CoreV1().Pods(s.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s.selector})
		return err
	})
	if err != nil {
		return s.mapErr("delete cluster", err)
	}
	for _, p := range pods.Items {
		_, hasStatus := p.Annotations[annStatus]
		_, hasLease := p.Annotations[annLease]
		if !hasStatus && !hasLease {
			continue
		}
		body := podPatch{Annotations: map[string]*string{annStatus: nil, annLease: nil}}
		if err := s.patchPod(ctx, p.Name, body); err != nil && !apierrors.IsNotFound(err) {
			return s.mapErr("delete cluster", err)
		}
	}
	return nil
}

// ---- members ----

// podPatch is a strategic-merge patch of a pod's metadata.
type podPatch struct {
	Annotations map[string]*string `json:"annotations,omitempty"`
	Labels      map[string]*string `json:"labels,omitempty"`
}

func (s *Store) patchPod(ctx context.Context, name string, p podPatch) error {
	body, _ := json.Marshal(map[string]any{"metadata": p})
	return s.retry(ctx, "patch pod "+name, func(ctx context.Context) error {
		r, err := s.client.CoreV1().Pods(s.cfg.Namespace).Patch(ctx, name, types.StrategicMergePatchType, body, metav1.PatchOptions{})
		if err != nil {
			return err
		}
		if np, ok := podFrom(r); ok {
			s.mu.Lock()
			s.applyPodLocked(np)
			s.mu.Unlock()
		}
		return nil
	})
}

// memberState is what TouchMember last published.
type memberState struct {
	status, role, state string
}

// TouchMember implements dcs.Store: one PATCH of our pod with the status
// annotation, the lease annotation (our liveness) and the role labels
// (spec/dcs-layout.md §8 "Pod labels"). The leader skips a touch that
// would change nothing but the lease: its live leader record vouches for
// its member, so a steady-state cycle costs one PATCH per member.
func (s *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if err := s.begin(ctx, "touch member", true); err != nil {
		return err
	}
	if m == nil || m.Name != s.cfg.Name {
		return fmt.Errorf("kubernetes: touch member: member name %q is not the store's %q", nameOf(m), s.cfg.Name)
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	if err := s.ready(ctx, "touch member"); err != nil {
		return err
	}
	st := memberState{status: string(dcs.EncodeMember(m)), role: m.Role, state: m.State}
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	s.lastMember = &st
	return s.mapErr("touch member", s.touchLocked(ctx, st, true))
}

func nameOf(m *dcs.Member) string {
	if m == nil {
		return ""
	}
	return m.Name
}

// touchLocked writes st to our pod unless it is already there and either
// skipIdle allows skipping (we are the live leader) or nothing changed at
// all. Called with touchMu held.
func (s *Store) touchLocked(ctx context.Context, st memberState, renew bool) error {
	labels := s.roleLabels(st)
	s.mu.Lock()
	p := s.ownPodLocked()
	holds := s.holdsLeaderLocked()
	same := p != nil && p.ann[annStatus] == st.status && labelsMatch(p.labels, labels)
	_, hasLease := p.leaseAnnotation()
	s.mu.Unlock()
	if same && hasLease && (holds || !renew) {
		return nil
	}
	lease, _ := json.Marshal(map[string]string{"renewTime": s.stampLocked(), "ttl": s.ttlString()})
	body := podPatch{
		Annotations: map[string]*string{annStatus: str(st.status), annLease: str(string(lease))},
		Labels:      labels,
	}
	err := s.patchPod(ctx, s.cfg.Name, body)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("kubernetes: pod %s/%s does not exist (the member name must be its pod name): %w",
			s.cfg.Namespace, s.cfg.Name, err)
	}
	return err
}

func (p *pod) leaseAnnotation() (string, bool) {
	if p == nil {
		return "", false
	}
	v, ok := p.ann[annLease]
	return v, ok
}

// relabel brings our pod's role labels in line after a leader change,
// using the last touched member state. A failure is logged; the next
// TouchMember sees the labels differ and retries.
func (s *Store) relabel(ctx context.Context) {
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	if s.lastMember == nil {
		return
	}
	if err := s.touchLocked(ctx, *s.lastMember, false); err != nil {
		s.log.Warn("kubernetes: cannot update the pod role labels, retrying with the next touch", "error", err)
	}
}

// bootstrapStates are the member states during which BootstrapLabels are
// set.
var bootstrapStates = map[string]bool{
	"initializing new cluster":        true,
	"running custom bootstrap script": true,
	"starting after custom bootstrap": true,
	"creating replica":                true,
}

// roleLabels returns the pod labels for st: the role label (and
// tmp_role_label), and the bootstrap labels; nil values remove a label.
func (s *Store) roleLabels(st memberState) map[string]*string {
	s.mu.Lock()
	holds := s.holdsLeaderLocked()
	s.mu.Unlock()
	var role, tmp *string
	switch {
	case holds:
		v := s.cfg.LeaderLabelValue
		if st.role == "standby_leader" {
			v = s.cfg.StandbyLeaderLabelValue
		}
		role, tmp = str(v), str("primary")
	case st.state == "running" && st.role != "primary" && st.role != "master":
		v := st.role
		if st.role == "replica" {
			v = s.cfg.FollowerLabelValue
		}
		if len(validation.IsValidLabelValue(v)) == 0 && v != "" {
			role = str(v)
		}
		if len(validation.IsValidLabelValue(st.role)) == 0 && st.role != "" {
			tmp = str(st.role)
		}
	}
	out := map[string]*string{s.cfg.RoleLabel: role}
	if s.cfg.TmpRoleLabel != "" {
		out[s.cfg.TmpRoleLabel] = tmp
	}
	for k, v := range s.cfg.BootstrapLabels {
		if bootstrapStates[st.state] {
			out[k] = str(v)
		} else {
			out[k] = nil
		}
	}
	return out
}

func labelsMatch(have map[string]string, want map[string]*string) bool {
	for k, v := range want {
		h, ok := have[k]
		if v == nil && ok || v != nil && (!ok || h != *v) {
			return false
		}
	}
	return true
}

// ---- raw writes (conformance suite) ----

// PutRaw implements dcs.RawWriter: value goes verbatim into the annotation
// that holds key. For status, failover and sync, a JSON object is spread
// over their annotations and anything else lands in the annotation the
// codec parses (optime, scheduled_at, quorum). members/<name> writes the
// pod's status annotation, creating a bare pod when there is none (no
// member exists without a pod).
func (s *Store) PutRaw(ctx context.Context, key string, value []byte) error {
	if err := s.begin(ctx, "put "+key, false); err != nil {
		return err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	v := string(value)
	var name string
	ann := map[string]*string{}
	spread := func(fallback string, keys ...string) {
		if bytes.HasPrefix(bytes.TrimSpace(value), []byte("{")) && json.Valid(value) {
			ann = annotationsFromJSON(value, keys...)
			return
		}
		for _, k := range keys {
			ann[k] = nil
		}
		ann[fallback] = str(v)
	}
	switch {
	case strings.HasPrefix(key, dcs.KeyMembers):
		return s.mapErr("put "+key, s.putRawMember(ctx, strings.TrimPrefix(key, dcs.KeyMembers), v))
	case key == dcs.KeyLeader:
		name = s.names.leader
		now := s.stamp()
		ann = map[string]*string{annLeader: str(v), annTTL: str(s.ttlString()), annRenewTime: str(now), annAcquireTime: str(now)}
	case key == dcs.KeyStatus:
		name = s.names.leader
		spread(annOptime, annOptime, annSlots, annRetainSlots)
	case key == dcs.KeyFailsafe:
		name, ann[annFailsafe] = s.names.leader, str(v)
	case key == dcs.KeyConfig, key == dcs.KeyInitialize, key == dcs.KeyHistory:
		name, ann[key] = s.names.config, str(v)
	case key == dcs.KeyFailover:
		name = s.names.failover
		spread(annScheduledAt, annLeader, annMember, annScheduledAt)
	case key == dcs.KeySync:
		name = s.names.sync
		spread(annQuorum, annLeader, annQuorum, annSyncStandby)
	default:
		return fmt.Errorf("kubernetes: put %s: no such key", key)
	}
	_, err := s.write(ctx, name, change{ann: ann}, true)
	return s.mapErr("put "+key, err)
}

func (s *Store) putRawMember(ctx context.Context, name, value string) error {
	lease, _ := json.Marshal(map[string]string{"renewTime": s.stamp(), "ttl": s.ttlString()})
	err := s.patchPod(ctx, name, podPatch{Annotations: map[string]*string{annStatus: str(value), annLease: str(string(lease))}})
	if !apierrors.IsNotFound(err) {
		return err
	}
	p := &corev1.Pod{
		ObjectMeta: s.newObjectMeta(name, map[string]string{annStatus: value, annLease: string(lease)}),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres"}}},
	}
	r, err := s.client.CoreV1().Pods(s.cfg.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if np, ok := podFrom(r); ok {
		s.mu.Lock()
		s.applyPodLocked(np)
		s.mu.Unlock()
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
