package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

// fakeStatus is a SharedStatusSource holding the published status, as the
// reference daemon does.
type fakeStatus struct{ p atomic.Pointer[Status] }

func (f *fakeStatus) Status() Status        { return *f.p.Load() }
func (f *fakeStatus) SharedStatus() *Status { return f.p.Load() }
func (f *fakeStatus) set(s Status)          { f.p.Store(&s) }

// fakeDCS is an in-memory DCS for the handler: versions are counters.
type fakeDCS struct {
	mu      sync.Mutex
	c       *dcs.Cluster
	ver     int
	block   chan struct{} // when non-nil, Cluster blocks until closed or ctx ends
	failSet bool
	// onFailover runs after a failover key write, under the lock.
	onFailover func(c *dcs.Cluster, f *dcs.Failover)
}

func (f *fakeDCS) next() dcs.Version { f.ver++; return dcs.Version(strconv.Itoa(f.ver)) }

func (f *fakeDCS) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *f.c
	return &c, nil
}

func (f *fakeDCS) SetConfig(_ context.Context, data []byte, prev dcs.Version) (dcs.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSet {
		return "", dcs.ErrUnavailable
	}
	if prev != "" && (f.c.Config == nil || f.c.Config.Version != prev) {
		return "", dcs.ErrConflict
	}
	m := map[string]any{}
	_ = json.Unmarshal(data, &m)
	v := f.next()
	f.c.Config = &dcs.ClusterConfig{Raw: data, Data: m, Version: v}
	return v, nil
}

func (f *fakeDCS) SetFailover(_ context.Context, fo *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSet {
		return "", dcs.ErrUnavailable
	}
	if prev != "" && (f.c.Failover == nil || f.c.Failover.Version != prev) {
		return "", dcs.ErrConflict
	}
	v := f.next()
	if fo.IsEmpty() {
		f.c.Failover = nil
	} else {
		c := *fo
		c.Version = v
		f.c.Failover = &c
	}
	if f.onFailover != nil {
		f.onFailover(f.c, fo)
	}
	return v, nil
}

// fakeController records requests.
type fakeController struct {
	mu         sync.Mutex
	calls      []string
	restartErr error
	schedErr   error
	scheduled  bool
	reinitErr  error
	lsn        *dcs.LSN
	failsafe   FailsafeRequest // the last heartbeat received
	block      chan struct{}   // Restart blocks until closed
	woken      atomic.Int32
}

func (f *fakeController) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeController) Restart(ctx context.Context, r RestartRequest) error {
	f.record("restart")
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.restartErr
}

func (f *fakeController) ScheduleRestart(_ context.Context, r RestartRequest) error {
	f.record("schedule " + r.Schedule.UTC().Format(time.RFC3339))
	if f.schedErr != nil {
		return f.schedErr
	}
	f.scheduled = true
	return nil
}

func (f *fakeController) CancelScheduledRestart(context.Context) bool {
	f.record("cancel restart")
	was := f.scheduled
	f.scheduled = false
	return was
}

func (f *fakeController) Reload(context.Context) { f.record("reload") }

func (f *fakeController) Reinitialize(_ context.Context, r ReinitializeRequest) error {
	f.record("reinitialize force=" + strconv.FormatBool(r.Force) + " from_leader=" + strconv.FormatBool(r.FromLeader))
	return f.reinitErr
}

func (f *fakeController) Failsafe(_ context.Context, r FailsafeRequest) (*dcs.LSN, error) {
	f.record("failsafe " + r.Name)
	f.mu.Lock()
	f.failsafe = r
	f.mu.Unlock()
	return f.lsn, nil
}

func (f *fakeController) lastFailsafe() FailsafeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failsafe
}

func (f *fakeController) Wake()     { f.woken.Add(1) }
func (f *fakeController) Shutdown() { f.record("shutdown") }

func (f *fakeController) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// The spec's examples were taken at this time (dcs_last_seen).
var specNow = time.Unix(1692356928, 0).UTC()

func lsn(v uint64) *dcs.LSN { l := dcs.LSN(v); return &l }

func member(name, role, state string, port int) *dcs.Member {
	tl := 5
	return &dcs.Member{Name: name, Role: role, State: state, Timeline: &tl,
		ConnURL: "postgres://10.89.0." + strconv.Itoa(port-5428) + ":" + strconv.Itoa(port) + "/postgres",
		APIURL:  "http://10.89.0." + strconv.Itoa(port-5428) + ":8008/patroni"}
}

// baseCluster is a three-member cluster led by patroni1.
func baseCluster() *dcs.Cluster {
	m1 := member("patroni1", "primary", "running", 5432)
	m1.Tags = map[string]any{"clonefrom": true}
	m1.XLogLocation = lsn(67108960)
	m2 := member("patroni2", "replica", "running", 5433)
	m2.ReplicationState = "streaming"
	m2.XLogLocation, m2.ReplayLSN, m2.ReceiveLSN = lsn(67108960), lsn(67108960), lsn(67108960)
	m3 := member("patroni3", "replica", "running", 5434)
	m3.ReplicationState = "streaming"
	m3.XLogLocation, m3.ReplayLSN, m3.ReceiveLSN = lsn(67108960), lsn(67108960), lsn(67108960)
	raw := []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576}`)
	return &dcs.Cluster{
		Initialize: &dcs.Initialize{SystemID: "7268616322854375442", Version: "1"},
		Config:     &dcs.ClusterConfig{Raw: raw, Data: map[string]any{"ttl": json.Number("30")}, Version: "1"},
		Leader:     &dcs.Leader{Name: "patroni1", Version: "1", Member: m1},
		Status:     dcs.Status{LastLSN: 67108960},
		Members:    []*dcs.Member{m1, m2, m3},
		History:    &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 25165984, Reason: "no recovery target specified", Timestamp: "2024-08-28T19:40:12.123456+00:00", NewLeader: "patroni2"}}},
	}
}

func defaultGlobal() config.Settings {
	s, _ := config.NewDynamic().Settings()
	return s
}

// Node states of spec/rest-api.md §4.
func primaryStatus() Status {
	return Status{Name: "patroni1", Scope: "demo", State: "running", Role: "primary", QueryOK: true,
		PostmasterStartTime: time.Date(2024, 8, 28, 19, 39, 26, 352526000, time.UTC),
		ServerVersion:       160004, Timeline: 1, XLogLocation: 67108960, SystemID: "7268616322854375442",
		Cluster: baseCluster(), DCSLastSeen: specNow, Global: defaultGlobal(),
		LeaderUntil: specNow.Add(30 * time.Second), NextLoop: specNow.Add(5 * time.Second),
		Tags: map[string]any{"clonefrom": true}}
}

func replicaStatus() Status {
	return Status{Name: "patroni2", Scope: "demo", State: "running", Role: "replica", QueryOK: true,
		PostmasterStartTime: time.Date(2024, 8, 28, 19, 39, 26, 352526000, time.UTC),
		ServerVersion:       160004, Timeline: 1, ReceivedLocation: 67419744, ReplayedLocation: 67419744,
		ReplicationState: "streaming", SystemID: "7268616322854375442",
		Cluster: baseCluster(), DCSLastSeen: specNow, Global: defaultGlobal(),
		NextLoop: specNow.Add(5 * time.Second), Tags: map[string]any{"clonefrom": true}}
}

type harness struct {
	t      *testing.T
	status *fakeStatus
	dcs    *fakeDCS
	ctl    *fakeController
	clock  *clocktesting.FakeClock
	h      *Handler
	srv    *httptest.Server
	client *Client
}

func newHarness(t *testing.T, st Status, mod func(*Config)) *harness {
	t.Helper()
	hs := &harness{t: t, status: &fakeStatus{}, dcs: &fakeDCS{c: baseCluster(), ver: 10},
		ctl: &fakeController{}, clock: clocktesting.NewFakeClock(specNow.Add(2 * time.Second))}
	hs.status.set(st)
	cfg := Config{Status: hs.status, Controller: hs.ctl, DCS: hs.dcs, Clock: hs.clock,
		Version: "4.0.0", SwitchoverPoll: 5 * time.Millisecond, Peers: fakeProber{}}
	if mod != nil {
		mod(&cfg)
	}
	h, err := NewHandler(cfg)
	require.NoError(t, err)
	hs.h = h
	hs.srv = httptest.NewServer(h)
	t.Cleanup(hs.srv.Close)
	hs.client = &Client{BaseURL: hs.srv.URL}
	return hs
}

// fakeProber answers for members by name: patroni3 is unreachable.
type fakeProber struct{}

func (fakeProber) Probe(_ context.Context, m *dcs.Member) (*StatusDocument, error) {
	if m.Name == "patroni3" || m.Name == "down" {
		return nil, context.DeadlineExceeded
	}
	loc := uint64(1)
	return &StatusDocument{State: "running", Role: "replica", XLog: &XLog{ReceivedLocation: &loc, ReplayedLocation: &loc}}, nil
}
