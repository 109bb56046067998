package kubernetes_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/dcs/kubernetes"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// testLabels are the kubernetes.labels of every test cluster.
var testLabels = map[string]string{"application": "pgwarden-test"}

// env is one API server shared by the subtests of TestAPIServer, which
// keep apart by namespace.
type env struct {
	k     *testutil.KubeAPIServer
	admin k8s.Interface
	nsMu  sync.Mutex
	ns    map[string]bool
	ipSeq atomic.Int32
}

func newEnv(t testing.TB) *env {
	k := testutil.StartKubeAPIServer(t)
	admin, err := k8s.NewForConfig(k.RESTConfig())
	require.NoError(t, err)
	return &env{k: k, admin: admin, ns: map[string]bool{}}
}

func callCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates ns once (no namespace controller runs, so namespaces
// are never deleted; the API server's data dies with the test).
func (e *env) namespace(t testing.TB, ns string) {
	e.nsMu.Lock()
	defer e.nsMu.Unlock()
	if e.ns[ns] {
		return
	}
	_, err := e.admin.CoreV1().Namespaces().Create(callCtx(t, 30*time.Second),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err, "create namespace %s", ns)
	}
	e.ns[ns] = true
}

// pod creates the pod that stands for member name (no kubelet runs: the
// test sets status.podIP itself), unless it exists.
func (e *env) pod(t testing.TB, ns, scope, name string) {
	labels := map[string]string{"cluster-name": scope}
	for k, v := range testLabels {
		labels[k] = v
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:15"}}},
	}
	ctx := callCtx(t, 30*time.Second)
	created, err := e.admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return
	}
	require.NoError(t, err, "create pod %s/%s", ns, name)
	// Endpoints refuse loopback addresses; 10/8 is never dialled here.
	n := e.ipSeq.Add(1)
	ip := fmt.Sprintf("10.%d.%d.%d", 1+n/65536%250, n/256%256, 1+n%250)
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	_, err = e.admin.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err, "set pod IP of %s/%s", ns, name)
}

// open returns a store of member name in scope, whose namespace is the
// scope itself (pod names repeat between scopes); the pod is created
// first.
func (e *env) open(t testing.TB, scope, name string, mut ...func(*kubernetes.Config)) *kubernetes.Store {
	e.namespace(t, scope)
	if name != "" {
		e.pod(t, scope, scope, name)
	}
	cfg := kubernetes.Config{
		Scope:     scope,
		Name:      name,
		Namespace: scope,
		Labels:    testLabels,
		REST:      e.k.RESTConfig(),
		TTL:       testTTL,
		Logger:    testutil.Logger(t),
	}
	for _, m := range mut {
		m(&cfg)
	}
	st, err := kubernetes.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// testTTL is the ttl of the conformance clusters: expiry is judged on
// the readers' clocks, so any ttl works; 4 s keeps the suite short and
// is long against the watch latency of a loaded machine.
const testTTL = 4 * time.Second

func member(name, role string) *dcs.Member {
	lsn, tl := dcs.LSN(67108960), 3
	return &dcs.Member{Name: name, ConnURL: "postgres://10.0.0.1:5432/postgres",
		APIURL: "http://10.0.0.1:8008/patroni", State: "running", Role: role,
		PatroniVersion: "4.1.4", XLogLocation: &lsn, Timeline: &tl}
}

// TestAPIServer runs every real-server test against one etcd +
// kube-apiserver (spec/dcs-layout.md §8).
func TestAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	e := newEnv(t)
	t.Run("group", func(t *testing.T) {
		// Each layout runs in one read mode: ConfigMaps in the default
		// ReadCache (members read their watch caches; the suite gives
		// another client's write the watch latency to arrive), Endpoints
		// in ReadConsistent.
		for _, mode := range []struct {
			name      string
			endpoints bool
			read      kubernetes.ReadMode
		}{{"ConfigMaps", false, kubernetes.ReadCache}, {"Endpoints", true, kubernetes.ReadConsistent}} {
			t.Run("Conformance/"+mode.name, func(t *testing.T) {
				t.Parallel()
				dcstest.Run(t, dcstest.Harness{
					New: func(t *testing.T, scope, name string) dcs.Store {
						if mode.endpoints {
							scope += "-ep"
						}
						return e.open(t, scope, name, func(c *kubernetes.Config) {
							c.UseEndpoints = mode.endpoints
							c.ReadMode = mode.read
						})
					},
					TTL: testTTL,
				})
			})
		}
		t.Run("LeaderExpiry", func(t *testing.T) { t.Parallel(); testLeaderExpiry(t, e) })
		t.Run("StaleResourceVersion", func(t *testing.T) { t.Parallel(); testStaleResourceVersion(t, e) })
		t.Run("RoleLabels", func(t *testing.T) { t.Parallel(); testRoleLabels(t, e) })
		t.Run("EndpointsLayout", func(t *testing.T) { t.Parallel(); testEndpointsLayout(t, e) })
		t.Run("RequestsPerCycle", func(t *testing.T) { t.Parallel(); testRequestsPerCycle(t, e) })
	})
	// Last: it stops the API server.
	t.Run("Outage", func(t *testing.T) { testOutage(t, e) })
}

// testLeaderExpiry checks the client-side expiry rule (spec/dcs-layout.md
// §8 "Expiry is judged locally"): a leader that stops renewing is seen as
// absent by another member ttl after its last renewal, not before, and
// within seconds after, and that member's Changes fires.
func testLeaderExpiry(t *testing.T, e *env) {
	const ttl = 5 * time.Second
	scope := "expiry"
	ttlCfg := func(c *kubernetes.Config) { c.TTL = ttl }
	m1 := e.open(t, scope, "m1", ttlCfg)
	m2 := e.open(t, scope, "m2", ttlCfg)
	_, err := m2.Cluster(callCtx(t, 30*time.Second))
	require.NoError(t, err)
	require.NoError(t, m1.TouchMember(callCtx(t, 10*time.Second), member("m1", "primary")))
	require.NoError(t, m1.AcquireLeader(callCtx(t, 10*time.Second)))
	for range 3 {
		time.Sleep(ttl / 3)
		require.NoError(t, m1.UpdateLeader(callCtx(t, 10*time.Second), dcs.LeaderUpdate{}))
	}
	sent := time.Now()
	require.NoError(t, m1.UpdateLeader(callCtx(t, 10*time.Second), dcs.LeaderUpdate{}))
	returned := time.Now()
	// Wait until m2 has seen the last renewal, then drain its wake-ups.
	testutil.SucceedsSoon(t, func() error {
		c, err := m2.Cluster(callCtx(t, 5*time.Second))
		if err != nil {
			return err
		}
		if c.Leader == nil || c.Leader.Name != "m1" {
			return fmt.Errorf("m2 sees leader %v, want m1", c.Leader)
		}
		return nil
	})
	for len(m2.Changes()) > 0 {
		<-m2.Changes()
	}
	var woke atomic.Int64
	go func() {
		select {
		case <-m2.Changes():
			woke.Store(int64(time.Since(sent)))
		case <-time.After(ttl + 5*time.Second):
		}
	}()
	var gone time.Duration
	for {
		c, err := m2.Cluster(callCtx(t, 5*time.Second))
		require.NoError(t, err)
		if !c.IsLocked() {
			gone = time.Since(sent)
			break
		}
		require.Less(t, time.Since(sent), ttl+5*time.Second, "the leader never expired")
		time.Sleep(10 * time.Millisecond)
	}
	latency := returned.Sub(sent)
	t.Logf("leader expiry (ttl %s): absent for m2 %s after the last renewal was sent (%s after it returned; renewal took %s); Changes fired after %s",
		ttl, gone.Round(time.Millisecond), (gone - latency).Round(time.Millisecond), latency.Round(time.Millisecond),
		time.Duration(woke.Load()).Round(time.Millisecond))
	require.GreaterOrEqual(t, gone, ttl, "§8: not expired before ttl after the last renewal")
	// Generous, for a loaded machine; it still catches twice ttl.
	require.Less(t, gone-latency, ttl+ttl/2, "§8: expired about ttl after the last renewal")
	testutil.SucceedsWithin(t, 2*time.Second, func() error {
		if woke.Load() == 0 {
			return fmt.Errorf("m2's Changes did not fire on the local expiry")
		}
		return nil
	})
	require.ErrorIs(t, m1.UpdateLeader(callCtx(t, 10*time.Second), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
		"store.go: the expired leader has lost the key on its own clock too")
	require.NoError(t, m2.AcquireLeader(callCtx(t, 10*time.Second)), "§8: an expired record is acquired with its resourceVersion")
}

// testStaleResourceVersion checks that writes carrying an old
// resourceVersion get the API server's 409, mapped to dcs.ErrConflict
// (spec/dcs-layout.md §8 "CAS = metadata.resourceVersion").
func testStaleResourceVersion(t *testing.T, e *env) {
	scope := "stale"
	m1 := e.open(t, scope, "m1")
	ctl := e.open(t, scope, "")
	v1, err := ctl.SetConfig(callCtx(t, 10*time.Second), []byte(`{"ttl":30}`), "")
	require.NoError(t, err)
	v2, err := ctl.SetConfig(callCtx(t, 10*time.Second), []byte(`{"ttl":31}`), v1)
	require.NoError(t, err)
	require.NotEqual(t, v1, v2)

	_, err = ctl.SetConfig(callCtx(t, 10*time.Second), []byte(`{"ttl":32}`), v1)
	require.ErrorIs(t, err, dcs.ErrConflict, "§8: stale resourceVersion")
	require.True(t, apierrors.IsConflict(err), "the cause is the API server's 409: %v", err)

	require.NoError(t, m1.AcquireLeader(callCtx(t, 10*time.Second)))
	sv, err := m1.SetSync(callCtx(t, 10*time.Second), &dcs.SyncState{Leader: "m1", Standbys: []string{"m2"}}, "")
	require.NoError(t, err)
	_, err = m1.SetSync(callCtx(t, 10*time.Second), &dcs.SyncState{Leader: "m1"}, sv)
	require.NoError(t, err)
	_, err = m1.SetSync(callCtx(t, 10*time.Second), &dcs.SyncState{Leader: "m1", Standbys: []string{"m3"}}, sv)
	require.ErrorIs(t, err, dcs.ErrConflict)
	require.True(t, apierrors.IsConflict(err), "the cause is the API server's 409: %v", err)

	fv, err := ctl.SetFailover(callCtx(t, 10*time.Second), &dcs.Failover{Candidate: "m1"}, "")
	require.NoError(t, err)
	_, err = ctl.SetFailover(callCtx(t, 10*time.Second), &dcs.Failover{}, fv)
	require.NoError(t, err)
	_, err = ctl.SetFailover(callCtx(t, 10*time.Second), &dcs.Failover{Candidate: "m2"}, fv)
	require.ErrorIs(t, err, dcs.ErrConflict)

	// The raw API agrees: the leader ConfigMap refuses an old version.
	cm, err := e.admin.CoreV1().ConfigMaps(scope).Get(callCtx(t, 10*time.Second), scope+"-leader", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "m1", cm.Annotations["leader"], "§8: the leader annotation")
	require.NotEmpty(t, cm.Annotations["renewTime"])
	require.NotEmpty(t, cm.Annotations["acquireTime"])
	require.Equal(t, "4", cm.Annotations["ttl"])
	require.NoError(t, m1.UpdateLeader(callCtx(t, 10*time.Second), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 5}}))
	body := fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"annotations":{"leader":"intruder"}}}`, cm.ResourceVersion)
	_, err = e.admin.CoreV1().ConfigMaps(scope).Patch(callCtx(t, 10*time.Second), scope+"-leader",
		types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{})
	require.True(t, apierrors.IsConflict(err), "a patch with an old resourceVersion is refused with 409: %v", err)
}

// podLabels reads a pod's labels from the API server.
func (e *env) podLabels(t *testing.T, ns, name string) map[string]string {
	p, err := e.admin.CoreV1().Pods(ns).Get(callCtx(t, 10*time.Second), name, metav1.GetOptions{})
	require.NoError(t, err)
	return p.Labels
}

// failingTransport fails the next n pod PATCHes with 503, standing for a
// slow or overloaded API server.
type failingTransport struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/pods/") && f.n.Add(-1) >= 0 {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
			Header: http.Header{"Content-Type": []string{"text/plain"}}, Body: http.NoBody, Request: r}, nil
	}
	return f.next.RoundTrip(r)
}

// testRoleLabels checks that pod role labels follow a leader change, read
// back from the API server, and that a failed label PATCH is retried
// (spec/dcs-layout.md §8 "Pod labels").
func testRoleLabels(t *testing.T, e *env) {
	scope := "labels"
	var fail *failingTransport
	m1 := e.open(t, scope, "m1", func(c *kubernetes.Config) {
		c.TmpRoleLabel = "tmp-role"
		c.REST.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			fail = &failingTransport{next: rt}
			return fail
		}
	})
	m2 := e.open(t, scope, "m2", func(c *kubernetes.Config) {
		c.TmpRoleLabel = "tmp-role"
		c.LeaderLabelValue = "master"
	})
	ctx := func() context.Context { return callCtx(t, 10*time.Second) }
	require.NoError(t, m1.TouchMember(ctx(), member("m1", "replica")))
	require.NoError(t, m2.TouchMember(ctx(), member("m2", "replica")))
	require.Equal(t, "replica", e.podLabels(t, scope, "m1")["role"], "§8: follower_label_value for a running replica")
	require.Equal(t, "replica", e.podLabels(t, scope, "m1")["tmp-role"])

	require.NoError(t, m1.AcquireLeader(ctx()))
	l := e.podLabels(t, scope, "m1")
	require.Equal(t, "primary", l["role"], "§8: leader_label_value right after acquiring")
	require.Equal(t, "primary", l["tmp-role"])
	require.NoError(t, m1.TouchMember(ctx(), member("m1", "primary")))
	require.Equal(t, "primary", e.podLabels(t, scope, "m1")["role"])

	// Leader change: m1 releases, m2 takes over with its own label value.
	require.NoError(t, m1.ReleaseLeader(ctx(), nil))
	require.NotContains(t, e.podLabels(t, scope, "m1"), "role", "§8: a former primary not holding the lock has no role label")
	testutil.SucceedsSoon(t, func() error {
		err := m2.AcquireLeader(ctx())
		return err
	})
	l = e.podLabels(t, scope, "m2")
	require.Equal(t, "master", l["role"], "§8: leader_label_value of m2's config")
	require.Equal(t, "primary", l["tmp-role"], "§8: tmp_role_label keeps the default values")

	// The API server refuses m1's next two pod PATCHes: the touch retries
	// within its deadline and the label still lands.
	fail.n.Store(2)
	require.NoError(t, m1.TouchMember(ctx(), member("m1", "replica")))
	require.Equal(t, "replica", e.podLabels(t, scope, "m1")["role"], "a failed label PATCH is retried")

	// A touch that fails for its whole deadline is repaired by the next.
	fail.n.Store(1000)
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := m1.TouchMember(short, member("m1", "uninitialized"))
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	fail.n.Store(0)
	require.NoError(t, m1.TouchMember(ctx(), member("m1", "uninitialized")))
	require.Equal(t, "uninitialized", e.podLabels(t, scope, "m1")["role"], "§8: other running roles verbatim")

	stopped := member("m1", "replica")
	stopped.State = "stopped"
	require.NoError(t, m1.TouchMember(ctx(), stopped))
	require.NotContains(t, e.podLabels(t, scope, "m1"), "role", "§8: removed when not running")
}

// testEndpointsLayout checks the Endpoints mode objects as a Patroni
// reader sees them: the leader Endpoints' subsets carry the leader pod IP
// and ports, release empties them, and the config Service is headless
// (spec/dcs-layout.md §8).
func testEndpointsLayout(t *testing.T, e *env) {
	scope := "epl"
	ports := []kubernetes.Port{{Name: "postgresql", Port: 5432}, {Name: "patroni", Port: 8008}}
	open := func(name string) *kubernetes.Store {
		return e.open(t, scope, name, func(c *kubernetes.Config) { c.UseEndpoints = true; c.Ports = ports })
	}
	m1 := open("m1")
	ctx := func() context.Context { return callCtx(t, 10*time.Second) }
	require.NoError(t, m1.Initialize(ctx(), "7277694203142172922", true))
	_, err := m1.SetConfig(ctx(), []byte(`{"ttl":30}`), "")
	require.NoError(t, err)
	_, err = m1.Cluster(ctx())
	require.NoError(t, err)
	require.NoError(t, m1.AcquireLeader(ctx()))

	pod, err := e.admin.CoreV1().Pods(scope).Get(ctx(), "m1", metav1.GetOptions{})
	require.NoError(t, err)
	ep, err := e.admin.CoreV1().Endpoints(scope).Get(ctx(), scope, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "m1", ep.Annotations["leader"])
	require.Len(t, ep.Subsets, 1, "§8: the leader Endpoints points at the leader pod")
	require.Len(t, ep.Subsets[0].Addresses, 1)
	require.Equal(t, pod.Status.PodIP, ep.Subsets[0].Addresses[0].IP)
	require.Equal(t, "m1", ep.Subsets[0].Addresses[0].TargetRef.Name)
	require.Len(t, ep.Subsets[0].Ports, 2)

	cfg, err := e.admin.CoreV1().Endpoints(scope).Get(ctx(), scope+"-config", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "7277694203142172922", cfg.Annotations["initialize"])
	require.JSONEq(t, `{"ttl":30}`, cfg.Annotations["config"])
	svc, err := e.admin.CoreV1().Services(scope).Get(ctx(), scope+"-config", metav1.GetOptions{})
	require.NoError(t, err, "§8: the config Service keeps the config Endpoints")
	require.Equal(t, corev1.ClusterIPNone, svc.Spec.ClusterIP)
	require.Equal(t, scope, svc.Labels["cluster-name"])

	require.NoError(t, m1.ReleaseLeader(ctx(), &dcs.Status{LastLSN: 7}))
	ep, err = e.admin.CoreV1().Endpoints(scope).Get(ctx(), scope, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotContains(t, ep.Annotations, "leader", "§8: release nulls the leader annotation")
	require.Empty(t, ep.Subsets, "§8: release empties the subsets")
	require.Equal(t, "7", ep.Annotations["optime"])
}

// requestCounter counts the requests of one store by method, watches
// apart.
type requestCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := r.Method
	if r.URL.Query().Get("watch") == "true" || strings.Contains(r.URL.Path, "/watch/") {
		kind = "WATCH"
	}
	c.mu.Lock()
	c.n[kind]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// cycleCost runs cycles steady-state HA cycles of a three-member cluster
// (each member: Cluster, TouchMember; the leader also UpdateLeader) and
// returns the requests per cycle of the leader and of a replica.
func cycleCost(t testing.TB, e *env, scope string, cycles int, endpoints bool) (leader, replica map[string]float64) {
	names := []string{"m1", "m2", "m3"}
	stores := map[string]*kubernetes.Store{}
	counters := map[string]*requestCounter{}
	for _, n := range names {
		rc := &requestCounter{n: map[string]int{}}
		counters[n] = rc
		stores[n] = e.open(t, scope, n, func(c *kubernetes.Config) {
			c.TTL = 30 * time.Second
			c.UseEndpoints = endpoints
			c.REST.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { rc.next = rt; return rc }
		})
	}
	ctx := func() context.Context { return callCtx(t, 10*time.Second) }
	role := map[string]string{"m1": "primary", "m2": "replica", "m3": "replica"}
	cycle := func(i int) {
		for _, n := range names {
			_, err := stores[n].Cluster(ctx())
			require.NoError(t, err)
			if n == "m1" {
				require.NoError(t, stores[n].UpdateLeader(ctx(), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 67108960}}))
			}
			require.NoError(t, stores[n].TouchMember(ctx(), member(n, role[n])))
		}
	}
	require.NoError(t, stores["m1"].TouchMember(ctx(), member("m1", "primary")))
	require.NoError(t, stores["m1"].AcquireLeader(ctx()))
	for i := range 2 { // warm-up: labels settle
		cycle(i)
	}
	for _, c := range counters {
		c.take()
	}
	for i := range cycles {
		cycle(i)
	}
	per := func(n string) map[string]float64 {
		out := map[string]float64{}
		for k, v := range counters[n].take() {
			out[k] = float64(v) / float64(cycles)
		}
		return out
	}
	return per("m1"), per("m2")
}

// testRequestsPerCycle measures the API load of a steady-state HA cycle
// (issue 10 acceptance: goal 1 PATCH and 0 GETs per member per cycle).
func testRequestsPerCycle(t *testing.T, e *env) {
	for _, mode := range []struct {
		name      string
		endpoints bool
	}{{"configmaps", false}, {"endpoints", true}} {
		leader, replica := cycleCost(t, e, "cost-"+mode.name, 10, mode.endpoints)
		t.Logf("%s mode, requests per HA cycle: leader %v, replica %v", mode.name, leader, replica)
		require.Equal(t, map[string]float64{"PATCH": 1}, leader, "the leader renews with one PATCH and reads nothing")
		require.Equal(t, map[string]float64{"PATCH": 1}, replica, "a replica touches its pod with one PATCH and reads nothing")
	}
}

// BenchmarkRequestsPerCycle reports the requests per steady-state HA
// cycle of a leader and of a replica (ConfigMaps mode).
func BenchmarkRequestsPerCycle(b *testing.B) {
	e := newEnv(b)
	leader, replica := cycleCost(b, e, "bench", b.N, false)
	b.ReportMetric(leader["PATCH"], "leader-PATCH/cycle")
	b.ReportMetric(leader["GET"], "leader-GET/cycle")
	b.ReportMetric(replica["PATCH"], "replica-PATCH/cycle")
	b.ReportMetric(replica["GET"], "replica-GET/cycle")
}

// testOutage stops the API server for 5 s: calls fail with
// dcs.ErrUnavailable by their deadline (retry_timeout), and the stores
// recover once it is back (spec/dcs-layout.md §3).
func testOutage(t *testing.T, e *env) {
	scope := "outage"
	const retryTimeout = 3 * time.Second
	cfg := func(c *kubernetes.Config) { c.TTL = 60 * time.Second; c.RetryTimeout = retryTimeout }
	m1 := e.open(t, scope, "m1", cfg)
	m2 := e.open(t, scope, "m2", cfg)
	ctx := func() context.Context { return callCtx(t, retryTimeout) }
	require.NoError(t, m1.TouchMember(callCtx(t, 30*time.Second), member("m1", "primary")))
	require.NoError(t, m1.AcquireLeader(callCtx(t, 30*time.Second)))
	testutil.SucceedsSoon(t, func() error {
		c, err := m2.Cluster(ctx())
		if err != nil {
			return err
		}
		if c.Leader == nil {
			return fmt.Errorf("m2 sees no leader yet")
		}
		return nil
	})

	down := time.Now()
	e.k.Kill()
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"UpdateLeader", func(ctx context.Context) error { return m1.UpdateLeader(ctx, dcs.LeaderUpdate{}) }},
		{"TouchMember", func(ctx context.Context) error { return m2.TouchMember(ctx, member("m2", "replica")) }},
		{"Cluster", func(ctx context.Context) error {
			// The watch notices the cut at once; Cluster then waits for it
			// to come back until the deadline.
			time.Sleep(200 * time.Millisecond)
			_, err := m2.Cluster(ctx)
			return err
		}},
	}
	errs := make([]error, len(calls))
	took := make([]time.Duration, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			start := time.Now()
			errs[i] = c.call(ctx())
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, c := range calls {
		t.Logf("API server down: %s failed after %s (retry_timeout %s): %v", c.name, took[i].Round(time.Millisecond), retryTimeout, errs[i])
		require.ErrorIs(t, errs[i], dcs.ErrUnavailable, "%s while the API server is down", c.name)
		// Two seconds of slack for a loaded machine.
		require.Less(t, took[i], retryTimeout+2*time.Second, "%s returns by its deadline", c.name)
	}
	time.Sleep(time.Until(down.Add(5 * time.Second)))
	require.NoError(t, e.k.Start(), "restart the API server")
	up := time.Now()
	testutil.SucceedsSoon(t, func() error {
		if err := m1.UpdateLeader(ctx(), dcs.LeaderUpdate{}); err != nil {
			return fmt.Errorf("m1 renew: %w", err)
		}
		if err := m2.TouchMember(ctx(), member("m2", "replica")); err != nil {
			return fmt.Errorf("m2 touch: %w", err)
		}
		c, err := m2.Cluster(ctx())
		if err != nil {
			return fmt.Errorf("m2 read: %w", err)
		}
		if c.Leader == nil || c.Leader.Name != "m1" || c.Member("m2") == nil {
			return fmt.Errorf("m2 sees leader %v members %d", c.Leader, len(c.Members))
		}
		return nil
	})
	t.Logf("API server down %s (restart took %s); stores recovered %s after it was ready",
		up.Sub(down).Round(time.Millisecond), up.Sub(down.Add(5*time.Second)).Round(time.Millisecond),
		time.Since(up).Round(time.Millisecond))
}
