package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

var matrixPaths = []string{"/", "/primary", "/read-write", "/leader", "/standby-leader", "/replica", "/read-only", "/health", "/sync", "/async"}

// spec/rest-api.md §4: the state/role matrix.
func TestHealthMatrix(t *testing.T) {
	syncOn := func(s *Status) {
		s.Global.SynchronousMode = config.SyncOn
		s.Cluster.Sync = &dcs.SyncState{Leader: "patroni1", Standbys: []string{"patroni2"}}
	}
	standbyCluster := func(s *Status) {
		s.Global.StandbyCluster = &config.StandbyCluster{Host: "remote"}
	}
	for _, tc := range []struct {
		name  string
		st    func() Status
		query string
		codes []int // in matrixPaths order
	}{
		{name: "primary holding lock", st: primaryStatus,
			codes: []int{200, 200, 200, 200, 503, 503, 200, 200, 503, 503}},
		{name: "streaming replica not in sync", st: replicaStatus,
			codes: []int{503, 503, 503, 503, 503, 200, 200, 200, 503, 200}},
		{name: "streaming replica in sync", st: func() Status { s := replicaStatus(); syncOn(&s); return s },
			codes: []int{503, 503, 503, 503, 503, 200, 200, 200, 200, 503}},
		{name: "replica lagging beyond lag", query: "lag=1MB", st: func() Status {
			s := replicaStatus()
			s.ReplayedLocation = 67108960 - 2<<20
			s.Cluster.Status.LastLSN = 67108960
			return s
		}, codes: []int{503, 503, 503, 503, 503, 503, 503, 200, 503, 503}},
		{name: "replica within lag", query: "lag=16MB", st: func() Status {
			s := replicaStatus()
			s.ReplayedLocation = 67108960 - 2<<20
			return s
		}, codes: []int{503, 503, 503, 503, 503, 200, 200, 200, 503, 200}},
		{name: "replica with noloadbalance", st: func() Status {
			s := replicaStatus()
			s.Tags = map[string]any{"noloadbalance": true}
			return s
		}, codes: []int{503, 503, 503, 503, 503, 503, 503, 200, 503, 503}},
		{name: "standby leader", st: func() Status {
			s := primaryStatus()
			s.Role = "standby_leader"
			standbyCluster(&s)
			return s
		}, codes: []int{503, 503, 503, 200, 200, 503, 200, 200, 503, 503}},
		{name: "replica in standby cluster", st: func() Status {
			s := replicaStatus()
			standbyCluster(&s)
			syncOn(&s) // sync mode is ignored in a standby cluster
			return s
		}, codes: []int{503, 503, 503, 503, 503, 200, 200, 200, 503, 200}},
		{name: "postgres stopped", st: func() Status {
			s := replicaStatus()
			s.State, s.QueryOK = "stopped", false
			return s
		}, codes: []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}},
		// Deliberately stricter than Patroni, which answers 200 on
		// /primary to the lock holder even while its Postgres is down
		// (issue 7: a crashed primary must not attract writes).
		{name: "postgres crashed inside the lock lease", st: func() Status {
			s := primaryStatus()
			s.State, s.QueryOK = "crashed", false
			return s
		}, codes: []int{503, 503, 503, 200, 503, 503, 503, 503, 503, 503}},
		{name: "lock holder still promoting (in recovery)", st: func() Status {
			s := primaryStatus()
			s.Role = "promoted"
			return s
		}, codes: []int{503, 503, 503, 200, 503, 503, 503, 200, 503, 503}},
		{name: "primary without lock", st: func() Status {
			s := primaryStatus()
			s.LeaderUntil = specNow.Add(-time.Second)
			return s
		}, codes: []int{503, 503, 503, 503, 503, 503, 503, 200, 503, 503}},
		{name: "paused primary, DCS snapshot expired", st: func() Status {
			s := primaryStatus()
			s.Global.Pause = true
			s.DCSLastSeen = specNow.Add(-time.Minute)
			s.LeaderUntil = time.Time{}
			return s
		}, codes: []int{200, 200, 200, 200, 503, 503, 200, 200, 503, 503}},
		{name: "paused replica, DCS snapshot expired", st: func() Status {
			s := replicaStatus()
			s.Global.Pause = true
			s.DCSLastSeen = specNow.Add(-time.Minute)
			return s
		}, codes: []int{503, 503, 503, 503, 503, 200, 200, 200, 503, 503}},
		{name: "not running (uninitialized)", st: func() Status {
			return Status{Name: "n", Scope: "demo", State: "stopped", Role: "uninitialized", Global: defaultGlobal()}
		}, codes: []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.st(), nil)
			q, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			var got []int
			for _, p := range matrixPaths {
				code, doc, err := hs.client.Health(t.Context(), p, q)
				require.NoError(t, err)
				require.NotNil(t, doc, "GET health checks return the status document")
				got = append(got, code)
				for _, m := range []string{http.MethodHead, http.MethodOptions} {
					c, err := hs.client.Check(t.Context(), m, p, q)
					require.NoError(t, err)
					require.Equal(t, code, c, "%s %s", m, p)
				}
			}
			require.Equal(t, tc.codes, got, "paths %v", matrixPaths)
		})
	}
}

// spec/rest-api.md §3: the replica example document, byte for byte.
func TestReplicaDocumentMatchesSpec(t *testing.T) {
	hs := newHarness(t, replicaStatus(), nil)
	r, err := hs.client.Do(t.Context(), http.MethodGet, "/replica", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.JSONEq(t, `{"state":"running","postmaster_start_time":"2024-08-28 19:39:26.352526+00:00","role":"replica",
 "server_version":160004,"xlog":{"received_location":67419744,"replayed_location":67419744,
 "replayed_timestamp":null,"paused":false},"timeline":1,"replication_state":"streaming",
 "dcs_last_seen":1692356928,"tags":{"clonefrom":true},"database_system_identifier":"7268616322854375442",
 "patroni":{"version":"4.0.0","scope":"demo","name":"patroni2"}}`, r.Text())
	// Patroni's key order.
	require.True(t, strings.HasPrefix(r.Text(), `{"state":"running","postmaster_start_time":`), r.Text())
}

// spec/rest-api.md §3: primary and other optional fields.
func TestPatroniDocument(t *testing.T) {
	st := primaryStatus()
	st.Replication = []Replication{{Usename: "replicator", ApplicationName: "patroni2", ClientAddr: "10.89.0.6", State: "streaming", SyncState: "async"}}
	st.PendingRestart = true
	st.PendingRestartReason = map[string]dcs.PendingParam{"max_connections": {OldValue: "100", NewValue: "200"}}
	st.ScheduledRestart = &dcs.ScheduledRestart{Schedule: "2024-08-29T10:00:00+00:00", PostmasterStartTime: "x", Role: "primary"}
	st.Global.Pause = true
	st.FailsafeActive = true
	hs := newHarness(t, st, nil)
	doc, err := hs.client.Patroni(t.Context())
	require.NoError(t, err)
	r, err := hs.client.Do(t.Context(), http.MethodGet, "/patroni", nil, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"state":"running","postmaster_start_time":"2024-08-28 19:39:26.352526+00:00","role":"primary",
		"server_version":160004,"xlog":{"location":67108960},"timeline":1,
		"replication":[{"usename":"replicator","application_name":"patroni2","client_addr":"10.89.0.6","state":"streaming","sync_state":"async","sync_priority":0}],
		"pause":true,"failsafe_mode_is_active":true,"dcs_last_seen":1692356928,"tags":{"clonefrom":true},
		"database_system_identifier":"7268616322854375442","pending_restart":true,
		"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}},
		"patroni":{"version":"4.0.0","scope":"demo","name":"patroni1"},
		"scheduled_restart":{"schedule":"2024-08-29T10:00:00+00:00","role":"primary"}}`, r.Text())
	require.Equal(t, uint64(67108960), *doc.XLog.Location)

	// No DCS snapshot: cluster_unlocked.
	st = replicaStatus()
	st.Cluster = nil
	hs.status.set(st)
	doc, err = hs.client.Patroni(t.Context())
	require.NoError(t, err)
	require.True(t, doc.ClusterUnlocked)
}

// spec/rest-api.md §1: HEAD and OPTIONS answer with the bare status line.
func TestHeadIsBareStatusLine(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	for _, tc := range []struct{ req, want string }{
		{"HEAD /primary HTTP/1.1", "HTTP/1.0 200 OK\r\n\r\n"},
		{"OPTIONS /replica HTTP/1.1", "HTTP/1.0 503 Service Unavailable\r\n\r\n"},
		{"HEAD /liveness HTTP/1.1", "HTTP/1.0 503 Service Unavailable\r\n\r\n"},
		{"GET /liveness HTTP/1.1", "HTTP/1.0 200 OK\r\n\r\n"},
	} {
		t.Run(tc.req, func(t *testing.T) {
			conn, err := net.Dial("tcp", hs.srv.Listener.Addr().String())
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, tc.req+"\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			got, err := io.ReadAll(conn)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

// spec/rest-api.md §4: tag filters and replication_state.
func TestTagFilters(t *testing.T) {
	st := replicaStatus()
	st.Tags = map[string]any{"zone": "a", "nofailover": false, "weight": 1.4}
	hs := newHarness(t, st, nil)
	for _, tc := range []struct {
		path, query string
		code        int
	}{
		{"/replica", "tag_zone=a", 200},
		{"/replica", "tag_zone=b", 503},
		{"/replica", "tag_nofailover=false", 200},
		{"/replica", "tag_weight=1.4", 200},
		{"/replica", "tag_missing=x", 503},
		{"/replica", "tag_zone=a&tag_nofailover=true", 503},
		{"/read-only", "tag_zone=a", 200},
		{"/health", "tag_zone=b", 503},
		{"/replica", "replication_state=streaming", 200},
		{"/replica", "replication_state=in%20archive%20recovery", 503},
		{"/replica", "lag=garbage", 200},
		{"/foo", "", 503},
		{"/read-only-sync", "", 503},
		{"/asynchronous", "", 200},
	} {
		t.Run(tc.path+"?"+tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			code, _, err := hs.client.Health(t.Context(), tc.path, q)
			require.NoError(t, err)
			require.Equal(t, tc.code, code)
		})
	}
	// Leader paths ignore tag filters.
	hs.status.set(primaryStatus())
	code, _, err := hs.client.Health(t.Context(), "/primary", url.Values{"tag_zone": {"b"}})
	require.NoError(t, err)
	require.Equal(t, 200, code)
}

// spec/rest-api.md §4: quorum paths.
func TestQuorumPaths(t *testing.T) {
	st := replicaStatus()
	st.Global.SynchronousMode = config.SyncQuorum
	st.Cluster.Sync = &dcs.SyncState{Leader: "patroni1", Standbys: []string{"PATRONI2"}, Quorum: 1}
	hs := newHarness(t, st, nil)
	for p, want := range map[string]int{"/quorum": 200, "/read-only-quorum": 200, "/sync": 503, "/async": 503, "/read-only-sync": 503} {
		code, doc, err := hs.client.Health(t.Context(), p, nil)
		require.NoError(t, err)
		require.Equal(t, want, code, p)
		require.True(t, doc.QuorumStandby)
	}
}

// spec/rest-api.md §5: liveness and readiness.
func TestLivenessReadiness(t *testing.T) {
	for _, tc := range []struct {
		name              string
		st                func() Status
		lag, mode         string
		liveness, readies int
	}{
		{name: "primary", st: primaryStatus, liveness: 200, readies: 200},
		{name: "replica streaming", st: replicaStatus, liveness: 200, readies: 200},
		{name: "replica behind default lag", st: func() Status {
			s := replicaStatus()
			s.ReplayedLocation, s.ReceivedLocation = 0, 67108960
			return s
		}, liveness: 200, readies: 503},
		{name: "replica behind, write mode", mode: "write", st: func() Status {
			s := replicaStatus()
			s.ReplayedLocation, s.ReceivedLocation = 0, 67108960
			return s
		}, liveness: 200, readies: 200},
		{name: "replica behind, big lag", lag: "100MB", st: func() Status {
			s := replicaStatus()
			s.ReplayedLocation = 0
			return s
		}, liveness: 200, readies: 200},
		{name: "replica not streaming", st: func() Status {
			s := replicaStatus()
			s.ReplicationState = "in archive recovery"
			return s
		}, liveness: 200, readies: 503},
		{name: "loop stuck on primary", st: func() Status {
			s := primaryStatus()
			s.NextLoop = specNow.Add(-29 * time.Second)
			s.LeaderUntil = time.Time{}
			return s
		}, liveness: 503, readies: 503},
		{name: "loop stuck on replica within 2*ttl", st: func() Status {
			s := replicaStatus()
			s.NextLoop = specNow.Add(-40 * time.Second)
			return s
		}, liveness: 200, readies: 200},
		{name: "paused and stuck", st: func() Status {
			s := replicaStatus()
			s.NextLoop = time.Time{}
			s.Global.Pause = true
			return s
		}, liveness: 200, readies: 200},
		{name: "no DCS, failsafe", st: func() Status {
			s := replicaStatus()
			s.Cluster, s.FailsafeActive = nil, true
			return s
		}, liveness: 200, readies: 200},
		{name: "no DCS", st: func() Status {
			s := replicaStatus()
			s.Cluster = nil
			return s
		}, liveness: 200, readies: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.st(), nil)
			code, err := hs.client.Liveness(t.Context())
			require.NoError(t, err)
			require.Equal(t, tc.liveness, code, "liveness")
			code, err = hs.client.Readiness(t.Context(), tc.lag, tc.mode)
			require.NoError(t, err)
			require.Equal(t, tc.readies, code, "readiness")
		})
	}
}

// Health answers never wait on the HA loop or the DCS (issue 6): with a DCS
// and a controller that hang, health checks still answer at once.
func TestHealthDoesNotWaitOnSlowLoop(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	hs.dcs.block = make(chan struct{})
	hs.ctl.block = make(chan struct{})
	defer close(hs.ctl.block)
	defer close(hs.dcs.block)

	// Occupy the controller and the DCS.
	go func() { _, _ = hs.client.Restart(context.Background(), RestartOptions{}) }()
	go func() { _, _ = hs.client.Cluster(context.Background()) }()
	require.Eventually(t, func() bool { return len(hs.ctl.Calls()) > 0 }, 5*time.Second, time.Millisecond)

	for _, p := range []string{"/primary", "/replica", "/health", "/readiness", "/liveness", "/patroni", "/metrics", "/history", "/config"} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		start := time.Now()
		_, err := hs.client.Check(ctx, http.MethodGet, p, nil)
		cancel()
		require.NoError(t, err, p)
		require.Less(t, time.Since(start), time.Second, p)
	}
}

// spec/rest-api.md §1: routing by first segment; unknown methods.
func TestRouting(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	r, err := hs.client.Do(t.Context(), http.MethodGet, "/cluster/extra", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Contains(t, r.Text(), `"members"`)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "TRACE"} {
		r, err = hs.client.Do(t.Context(), m, "/nothing", nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotImplemented, r.Code, m)
		require.Contains(t, r.Text(), "Unsupported method")
	}
}

func TestServerTokensAndExtraHeaders(t *testing.T) {
	hs := newHarness(t, primaryStatus(), func(c *Config) {
		c.RestAPI.ServerTokens = "Minimal"
		c.RestAPI.HTTPExtraHeaders = map[string]string{"X-Frame-Options": "SAMEORIGIN"}
	})
	r, err := hs.client.Do(t.Context(), http.MethodGet, "/patroni", nil, nil)
	require.NoError(t, err)
	require.Equal(t, "Patroni/4.0.0", r.Header.Get("Server"))
	require.Equal(t, "SAMEORIGIN", r.Header.Get("X-Frame-Options"))
}

// A SharedStatusSource lets the handler keep the encoded status document
// per published Status. Its answers must be those of a plain
// StatusSource, also after a new Status is published.
func TestSharedStatusAnswersLikeCopies(t *testing.T) {
	shared := newHarness(t, primaryStatus(), nil)
	copied := newHarness(t, primaryStatus(), func(c *Config) { c.Status = StatusFunc(shared.status.Status) })
	get := func(hs *harness, path string) (int, string, http.Header) {
		t.Helper()
		resp, err := http.Get(hs.srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Header.Del("Date")
		return resp.StatusCode, string(body), resp.Header
	}
	stopped := primaryStatus()
	stopped.State, stopped.QueryOK = "stopped", false
	var before string
	for i, st := range []Status{primaryStatus(), replicaStatus(), stopped} {
		shared.status.set(st)
		for _, p := range []string{"/primary", "/replica", "/replica?lag=1MB", "/replica?tag_clonefrom=true", "/health", "/patroni", "/liveness"} {
			c1, b1, h1 := get(shared, p)
			c2, b2, h2 := get(copied, p)
			require.Equal(t, c2, c1, "status %d %s", i, p)
			require.Equal(t, b2, b1, "status %d %s", i, p)
			require.Equal(t, h2, h1, "status %d %s", i, p)
		}
		_, b, _ := get(shared, "/patroni")
		require.NotEqual(t, before, b, "status %d: the document of the previous status", i)
		before = b
	}
}
