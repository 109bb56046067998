package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/dcs"
)

// spec/rest-api.md §5 GET /cluster: the example document.
func TestClusterDocument(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	at := time.Date(2023, 9, 24, 10, 36, 0, 0, time.FixedZone("", 2*3600))
	hs.dcs.c.Config = &dcs.ClusterConfig{Raw: []byte(`{"pause":true}`), Data: map[string]any{"pause": true}, Version: "3"}
	hs.dcs.c.Failover = &dcs.Failover{Leader: "patroni1", Candidate: "patroni3", ScheduledAt: &at, Version: "4"}
	m2 := hs.dcs.c.Members[1]
	m2.ConnURL = "postgres://10.89.0.6:5433/postgres"
	m2.APIURL = "http://10.89.0.6:8008/patroni"
	m2.XLogLocation, m2.ReplayLSN, m2.ReceiveLSN = lsn(0x4000060), lsn(0x4000060), lsn(0x4000060)
	hs.dcs.c.Members[0].ConnURL = "postgres://10.89.0.4:5432/postgres"
	hs.dcs.c.Members[0].APIURL = "http://10.89.0.4:8008/patroni"
	hs.dcs.c.Status.LastLSN = 0x4000060
	m3 := hs.dcs.c.Members[2]
	m3.XLogLocation, m3.ReplayLSN, m3.ReceiveLSN = nil, nil, nil
	m3.ReplicationState = ""
	m3.State = "starting"
	hs.dcs.c.Members = []*dcs.Member{m3, hs.dcs.c.Members[0], m2} // unsorted on purpose

	r, err := hs.client.Do(t.Context(), http.MethodGet, "/cluster", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.JSONEq(t, `{"members":[
  {"name":"patroni1","role":"leader","state":"running","api_url":"http://10.89.0.4:8008/patroni",
   "host":"10.89.0.4","port":5432,"timeline":5,"tags":{"clonefrom":true}},
  {"name":"patroni2","role":"replica","state":"streaming","api_url":"http://10.89.0.6:8008/patroni",
   "host":"10.89.0.6","port":5433,"timeline":5,"receive_lag":0,"receive_lsn":"0/4000060",
   "replay_lag":0,"replay_lsn":"0/4000060","lag":0,"lsn":"0/4000060"},
  {"name":"patroni3","role":"replica","state":"starting","api_url":"http://10.89.0.6:8008/patroni",
   "host":"10.89.0.6","port":5434,"timeline":5,"receive_lag":"unknown","receive_lsn":"unknown",
   "replay_lag":"unknown","replay_lsn":"unknown","lag":"unknown","lsn":"unknown"}],
 "scope":"demo","pause":true,
 "scheduled_switchover":{"at":"2023-09-24T10:36:00+02:00","from":"patroni1","to":"patroni3"}}`, r.Text())

	doc, err := hs.client.Cluster(t.Context())
	require.NoError(t, err)
	require.Len(t, doc.Members, 3)

	// Sync roles, standby leader.
	hs.dcs.c.Config = &dcs.ClusterConfig{Raw: []byte(`{"synchronous_mode":"quorum"}`), Version: "5"}
	hs.dcs.c.Sync = &dcs.SyncState{Leader: "patroni1", Standbys: []string{"patroni2"}}
	doc, err = hs.client.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"leader", "quorum_standby", "replica"}, roles(doc))
	hs.dcs.c.Config = &dcs.ClusterConfig{Raw: []byte(`{"synchronous_mode":true,"standby_cluster":{"host":"x"}}`), Version: "6"}
	doc, err = hs.client.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"standby_leader", "replica", "replica"}, roles(doc))
}

func roles(d *ClusterDocument) []string {
	var out []string
	for _, m := range d.Members {
		out = append(out, m.Role)
	}
	return out
}

// spec/rest-api.md §5 GET /history, /config, /failsafe.
func TestHistoryConfigFailsafe(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	h, err := hs.client.History(t.Context())
	require.NoError(t, err)
	require.Len(t, h, 1)
	r, err := hs.client.Do(t.Context(), http.MethodGet, "/history", nil, nil)
	require.NoError(t, err)
	require.Equal(t, `[[1,25165984,"no recovery target specified","2024-08-28T19:40:12.123456+00:00","patroni2"]]`, r.Text())

	cfg, err := hs.client.Config(t.Context())
	require.NoError(t, err)
	require.Equal(t, `{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576}`, string(cfg))

	_, err = hs.client.Failsafe(t.Context())
	herr, ok := errors.AsType[*HTTPError](err)
	require.True(t, ok)
	require.Equal(t, 502, herr.Code)

	st := primaryStatus()
	st.Cluster.Config = &dcs.ClusterConfig{} // invalid
	st.Cluster.History = nil
	st.Cluster.Failsafe = dcs.Failsafe{"patroni1": "http://10.89.0.4:8008/patroni"}
	hs.status.set(st)
	_, err = hs.client.Config(t.Context())
	herr, ok = errors.AsType[*HTTPError](err)
	require.True(t, ok)
	require.Equal(t, 502, herr.Code)
	r, err = hs.client.Do(t.Context(), http.MethodGet, "/history", nil, nil)
	require.NoError(t, err)
	require.Equal(t, "[]", r.Text())
	fs, err := hs.client.Failsafe(t.Context())
	require.NoError(t, err)
	require.Equal(t, map[string]string{"patroni1": "http://10.89.0.4:8008/patroni"}, fs)
}

// spec/rest-api.md §6 PATCH and PUT /config.
func TestConfigWrites(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	out, err := hs.client.PatchConfig(t.Context(), map[string]any{"ttl": 40, "loop_wait": nil, "postgresql": map[string]any{"parameters": map[string]any{"work_mem": "8MB"}}})
	require.NoError(t, err)
	want := `{"ttl":40,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"parameters":{"work_mem":"8MB"}}}`
	require.Equal(t, want, string(out))
	require.Equal(t, want, string(hs.dcs.c.Config.Raw))
	require.EqualValues(t, 1, hs.ctl.woken.Load())

	// No change: no write, still 200 with the config.
	ver := hs.dcs.c.Config.Version
	out, err = hs.client.PatchConfig(t.Context(), map[string]any{"ttl": 40})
	require.NoError(t, err)
	require.Equal(t, want, string(out))
	require.Equal(t, ver, hs.dcs.c.Config.Version)

	out, err = hs.client.PutConfig(t.Context(), []byte(`{"b":1,"a":2}`))
	require.NoError(t, err)
	require.Equal(t, `{"b":1,"a":2}`, string(out))
	require.Equal(t, `{"b":1,"a":2}`, string(hs.dcs.c.Config.Raw))

	for _, tc := range []struct {
		name, method string
		body         []byte
		code         int
	}{
		{"patch without body", http.MethodPatch, nil, 411},
		{"patch empty object", http.MethodPatch, []byte(`{}`), 400},
		{"patch not an object", http.MethodPatch, []byte(`[1]`), 400},
		{"patch garbage", http.MethodPatch, []byte(`{"a":`), 400},
		{"put without body", http.MethodPut, nil, 411},
		{"put empty object", http.MethodPut, []byte(`{}`), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != nil {
				body = tc.body
			}
			r, err := hs.client.Do(t.Context(), tc.method, "/config", nil, body)
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code)
			require.Contains(t, r.Header.Get("Content-Type"), "text/html")
		})
	}

	// No valid config: PATCH 503. Write failures: PATCH 409, PUT 502.
	hs.dcs.c.Config = nil
	r, err := hs.client.Do(t.Context(), http.MethodPatch, "/config", nil, []byte(`{"a":1}`))
	require.NoError(t, err)
	require.Equal(t, 503, r.Code)
	hs.dcs.c.Config = &dcs.ClusterConfig{Raw: []byte(`{}`), Version: "9"}
	hs.dcs.failSet = true
	r, err = hs.client.Do(t.Context(), http.MethodPatch, "/config", nil, []byte(`{"a":1}`))
	require.NoError(t, err)
	require.Equal(t, 409, r.Code)
	r, err = hs.client.Do(t.Context(), http.MethodPut, "/config", nil, []byte(`{"a":1}`))
	require.NoError(t, err)
	require.Equal(t, 502, r.Code)
}

// spec/rest-api.md §6 POST /restart and DELETE /restart.
func TestRestart(t *testing.T) {
	future := specNow.Add(time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		name   string
		st     func() Status
		body   string
		ctlErr error
		code   int
		msg    string
		calls  []string
	}{
		{name: "now", body: ``, code: 200, msg: "restarted successfully", calls: []string{"restart"}},
		{name: "unknown key", body: `{"foo":1}`, code: 400, msg: "Unknown filter for the scheduled restart: foo"},
		{name: "bad role", body: `{"role":"leader"}`, code: 400, msg: "PostgreSQL role should be either primary, standby_leader, or replica"},
		{name: "bad version", body: `{"postgres_version":"9.6"}`, code: 400, msg: `invalid PostgreSQL major version "9.6": X.Y.Z is required before 10`},
		{name: "bad timeout", body: `{"timeout":-1}`, code: 400, msg: "Timeout should be a positive number of seconds"},
		{name: "no timezone", body: `{"schedule":"2030-01-01T10:00:00"}`, code: 400, msg: "Timezone information is mandatory for the scheduled restart"},
		{name: "in the past", body: `{"schedule":"2020-01-01T10:00:00+00:00"}`, code: 422, msg: "Cannot schedule restart in the past"},
		{name: "unparsable", body: `{"schedule":"tomorrow"}`, code: 422, msg: "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"},
		{name: "scheduled", body: `{"schedule":"` + future + `","role":"primary"}`, code: 202, msg: "Restart scheduled",
			calls: []string{"schedule " + specNow.Add(time.Hour).UTC().Format(time.RFC3339)}},
		{name: "scheduled twice", body: `{"schedule":"` + future + `"}`, ctlErr: ErrRestartScheduled, code: 409, msg: "Another restart is already scheduled",
			calls: []string{"schedule " + specNow.Add(time.Hour).UTC().Format(time.RFC3339)}},
		{name: "scheduled while paused", st: func() Status { s := primaryStatus(); s.Global.Pause = true; return s },
			body: `{"schedule":"` + future + `"}`, code: 500, msg: "Can't schedule restart in the paused state"},
		{name: "role mismatch", body: `{"role":"replica"}`, code: 503, msg: "restart conditions are not satisfied"},
		{name: "version not newer", body: `{"postgres_version":"16.4"}`, code: 503, msg: "restart conditions are not satisfied"},
		{name: "version newer", body: `{"postgres_version":"16.5","role":"primary","timeout":"30s"}`, code: 200, msg: "restarted successfully", calls: []string{"restart"}},
		{name: "nothing pending", body: `{"restart_pending":true}`, code: 503, msg: "restart conditions are not satisfied"},
		{name: "still starting", ctlErr: ErrStillStarting, code: 503, msg: "postgres is still starting", calls: []string{"restart"}},
		{name: "busy", ctlErr: &BusyError{Action: "reinitialize"}, code: 503, msg: "reinitialize already in progress", calls: []string{"restart"}},
		{name: "failed", ctlErr: errors.New("boom"), code: 503, msg: "restart failed", calls: []string{"restart"}},
		{name: "not an object", body: `"x"`, code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := primaryStatus
			if tc.st != nil {
				st = tc.st
			}
			hs := newHarness(t, st(), nil)
			hs.ctl.restartErr, hs.ctl.schedErr = tc.ctlErr, tc.ctlErr
			var body any
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r, err := hs.client.Do(t.Context(), http.MethodPost, "/restart", nil, body)
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code, r.Text())
			if tc.msg != "" {
				require.Equal(t, tc.msg, r.Text())
			}
			require.Equal(t, tc.calls, hs.ctl.Calls())
		})
	}

	hs := newHarness(t, primaryStatus(), nil)
	r, err := hs.client.CancelRestart(t.Context())
	require.NoError(t, err)
	require.Equal(t, 404, r.Code)
	require.Equal(t, "no restarts are scheduled", r.Text())
	at := specNow.Add(time.Hour)
	r, err = hs.client.Restart(t.Context(), RestartOptions{Schedule: &at})
	require.NoError(t, err)
	require.Equal(t, 202, r.Code)
	r, err = hs.client.CancelRestart(t.Context())
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "scheduled restart deleted", r.Text())
}

// spec/rest-api.md §6 POST /switchover and /failover.
func TestSwitchover(t *testing.T) {
	realNow := time.Now()
	future := realNow.Add(time.Hour).UTC().Format(time.RFC3339)
	// takeOver makes the candidate (or patroni2) the leader when the
	// failover key is written.
	takeOver := func(c *dcs.Cluster, f *dcs.Failover) {
		if f.ScheduledAt != nil {
			return
		}
		next := f.Candidate
		if next == "" {
			next = "patroni2"
		}
		c.Leader = &dcs.Leader{Name: next, Version: "99"}
		c.Failover = nil
	}
	for _, tc := range []struct {
		name       string
		path       string
		body       string
		paused     bool
		sync       bool
		onFailover func(c *dcs.Cluster, f *dcs.Failover)
		failWrite  bool
		code       int
		msg        string
		written    *dcs.Failover
	}{
		{name: "failover without candidate", path: "/failover", body: `{"leader":""}`, code: 400, msg: "Failover could be performed only to a specific candidate"},
		{name: "switchover without leader", path: "/switchover", body: `{"candidate":"patroni2"}`, code: 400, msg: "Switchover could be performed only from a specific leader"},
		{name: "failover scheduled", path: "/failover", body: `{"candidate":"patroni2","scheduled_at":"` + future + `"}`, code: 400, msg: "Failover can't be scheduled"},
		{name: "scheduled while paused", path: "/switchover", paused: true, body: `{"leader":"patroni1","candidate":"patroni2","scheduled_at":"` + future + `"}`, code: 400, msg: "Can't schedule switchover in the paused state"},
		{name: "schedule without timezone", path: "/switchover", body: `{"leader":"patroni1","scheduled_at":"2099-01-01T10:00"}`, code: 400, msg: "Timezone information is mandatory for the scheduled switchover"},
		{name: "schedule in the past", path: "/switchover", body: `{"leader":"patroni1","scheduled_at":"2001-01-01T10:00:00Z"}`, code: 422, msg: "Cannot schedule switchover in the past"},
		{name: "paused without candidate", path: "/switchover", paused: true, body: `{"leader":"patroni1"}`, code: 400, msg: "Switchover is possible only to a specific candidate in a paused state"},
		{name: "same source and target", path: "/switchover", body: `{"leader":"patroni1","member":"patroni1"}`, code: 400, msg: "Switchover target and source are the same"},
		{name: "leader does not match", path: "/switchover", body: `{"leader":"patroni2"}`, code: 412, msg: "leader name does not match"},
		{name: "candidate not sync", path: "/switchover", sync: true, body: `{"leader":"patroni1","candidate":"patroni3"}`, code: 412, msg: "candidate name does not match with sync_standby"},
		{name: "candidate unknown", path: "/switchover", body: `{"leader":"patroni1","candidate":"nobody"}`, code: 412, msg: "candidate does not exists"},
		{name: "candidate unreachable", path: "/switchover", body: `{"leader":"patroni1","candidate":"patroni3"}`, code: 412, msg: "switchover is not possible: no good candidates have been found"},
		{name: "scheduled", path: "/switchover", body: `{"leader":"patroni1","scheduled_at":"` + future + `"}`, code: 202, msg: "Switchover scheduled",
			written: &dcs.Failover{Leader: "patroni1"}},
		{name: "done", path: "/switchover", onFailover: takeOver, body: `{"leader":"patroni1","candidate":"patroni2"}`, code: 200, msg: `Successfully switched over to "patroni2"`,
			written: nil},
		{name: "done to any", path: "/switchover", onFailover: takeOver, body: `{"leader":"patroni1"}`, code: 200, msg: `Successfully switched over to "patroni2"`},
		{name: "sync mode picks sync standby", path: "/switchover", sync: true, onFailover: takeOver, body: `{"leader":"patroni1"}`, code: 200, msg: `Successfully switched over to "patroni2"`},
		{name: "failover done", path: "/failover", onFailover: takeOver, body: `{"candidate":"patroni2"}`, code: 200, msg: `Successfully failed over to "patroni2"`},
		{name: "failover with leader is a switchover", path: "/failover", onFailover: takeOver, body: `{"leader":"patroni1","candidate":"patroni2"}`, code: 200, msg: `Successfully switched over to "patroni2"`},
		{name: "other member won", path: "/switchover", body: `{"leader":"patroni1","candidate":"patroni2"}`, code: 200, msg: `Switched over to "patroni4" instead of "patroni2"`,
			onFailover: func(c *dcs.Cluster, f *dcs.Failover) { c.Leader = &dcs.Leader{Name: "patroni4"} }},
		{name: "key removed without change", path: "/switchover", body: `{"leader":"patroni1","candidate":"patroni2"}`, code: 503, msg: "Switchover failed",
			onFailover: func(c *dcs.Cluster, f *dcs.Failover) { c.Failover = nil }},
		{name: "write fails", path: "/switchover", failWrite: true, body: `{"leader":"patroni1","candidate":"patroni2"}`, code: 503, msg: "failed to write failover key into DCS"},
		{name: "empty body", path: "/switchover", body: `{}`, code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := primaryStatus()
			st.Global.Pause = tc.paused
			hs := newHarness(t, st, func(c *Config) { c.Clock = clock.RealClock{} })
			hs.dcs.onFailover = tc.onFailover
			hs.dcs.failSet = tc.failWrite
			if tc.sync {
				hs.dcs.c.Config = &dcs.ClusterConfig{Raw: []byte(`{"synchronous_mode":true}`), Version: "2"}
				hs.dcs.c.Sync = &dcs.SyncState{Leader: "patroni1", Standbys: []string{"patroni2"}}
			}
			r, err := hs.client.Do(t.Context(), http.MethodPost, tc.path, nil, []byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code, r.Text())
			if tc.msg != "" {
				require.Equal(t, tc.msg, r.Text())
			}
			if tc.written != nil {
				require.NotNil(t, hs.dcs.c.Failover)
				require.Equal(t, tc.written.Leader, hs.dcs.c.Failover.Leader)
				require.Equal(t, tc.written.Candidate, hs.dcs.c.Failover.Candidate)
			}
		})
	}
}

// spec/rest-api.md §6: the switchover outcome is unknown after
// 2*max(10, loop_wait) seconds.
func TestSwitchoverTimeout(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil) // fake clock
	done := make(chan *Response, 1)
	go func() {
		r, err := hs.client.Switchover(context.Background(), "patroni1", "patroni2", nil)
		if err != nil {
			r = &Response{Body: []byte(err.Error())}
		}
		done <- r
	}()
	for {
		select {
		case r := <-done:
			require.Equal(t, 503, r.Code)
			require.Equal(t, "Switchover status unknown after 20 seconds; operation may still be in progress", r.Text())
			return
		case <-time.After(time.Millisecond):
			if hs.clock.HasWaiters() {
				hs.clock.Step(time.Second)
			}
		}
	}
}

// spec/rest-api.md §6 DELETE /switchover.
func TestDeleteSwitchover(t *testing.T) {
	hs := newHarness(t, primaryStatus(), nil)
	r, err := hs.client.CancelSwitchover(t.Context())
	require.NoError(t, err)
	require.Equal(t, 404, r.Code)
	require.Equal(t, "no switchover is scheduled", r.Text())

	at := specNow.Add(time.Hour)
	hs.dcs.c.Failover = &dcs.Failover{Leader: "patroni1", ScheduledAt: &at, Version: "7"}
	r, err = hs.client.CancelSwitchover(t.Context())
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "scheduled switchover deleted", r.Text())
	require.Nil(t, hs.dcs.c.Failover)
}

// spec/rest-api.md §6 POST /reinitialize, /reload, /sigterm, /citus.
func TestOtherActions(t *testing.T) {
	hs := newHarness(t, replicaStatus(), nil)
	r, err := hs.client.Reinitialize(t.Context(), true, false)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "reinitialize started", r.Text())
	r, err = hs.client.Do(t.Context(), http.MethodPost, "/reinitialize", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, []string{"reinitialize force=true from_leader=false", "reinitialize force=false from_leader=false"}, hs.ctl.Calls())

	hs.ctl.reinitErr = &BusyError{Action: "restart"}
	r, err = hs.client.Reinitialize(t.Context(), false, true)
	require.NoError(t, err)
	require.Equal(t, 503, r.Code)
	require.Equal(t, "restart already in progress", r.Text())

	hs.dcs.c.Leader = &dcs.Leader{Name: "patroni2"}
	r, err = hs.client.Reinitialize(t.Context(), false, false)
	require.NoError(t, err)
	require.Equal(t, "I am the leader, can not reinitialize", r.Text())
	hs.dcs.c.Leader = nil
	r, err = hs.client.Reinitialize(t.Context(), false, false)
	require.NoError(t, err)
	require.Equal(t, 503, r.Code)
	require.Equal(t, "Cluster has no leader, can not reinitialize", r.Text())

	r, err = hs.client.Reload(t.Context())
	require.NoError(t, err)
	require.Equal(t, 202, r.Code)
	require.Equal(t, "reload scheduled", r.Text())
	r, err = hs.client.Sigterm(t.Context())
	require.NoError(t, err)
	require.Equal(t, 202, r.Code)
	require.Equal(t, "shutdown scheduled", r.Text())
	require.Contains(t, hs.ctl.Calls(), "shutdown")

	r, err = hs.client.Do(t.Context(), http.MethodPost, "/citus", nil, map[string]any{"type": "before_demote", "group": 1})
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "OK", r.Text())
}

// spec/rest-api.md §6 POST /failsafe.
func TestFailsafe(t *testing.T) {
	req := FailsafeRequest{Name: "patroni1", ConnURL: "postgres://a:5432/postgres", APIURL: "http://a:8008/patroni", Slots: map[string]dcs.LSN{"patroni2": 100}}
	hs := newHarness(t, replicaStatus(), nil)
	r, err := hs.client.SendFailsafe(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, 502, r.Code, "failsafe_mode off")

	st := replicaStatus()
	st.Global.FailsafeMode = true
	hs.status.set(st)
	hs.ctl.lsn = lsn(67419744)
	r, err = hs.client.SendFailsafe(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, "Accepted", r.Text())
	require.Equal(t, "67419744", r.Header.Get("lsn"))
	require.Equal(t, []string{"failsafe patroni1"}, hs.ctl.Calls())
	require.Equal(t, req, hs.ctl.lastFailsafe(), "the heartbeat reaches the controller whole")

	st = primaryStatus()
	st.Global.FailsafeMode = true
	hs.status.set(st)
	r, err = hs.client.SendFailsafe(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, 500, r.Code)
	require.Equal(t, "Running as a leader", r.Text())
}

// TestFailsafeBody checks the POST /failsafe body of spec/rest-api.md §6
// as a Patroni 3.x primary sends it (ha.py check_failsafe_topology): name,
// conn_url, api_url and slots, slot name -> absolute LSN, including the
// primary's own slot name at its WAL position. A slot entry that is not an
// LSN is dropped, never a reason to refuse the heartbeat (a refusal
// demotes the primary).
func TestFailsafeBody(t *testing.T) {
	st := replicaStatus()
	st.Global.FailsafeMode = true
	hs := newHarness(t, st, nil)
	tests := []struct {
		name string
		body string
		want FailsafeRequest
		code int
	}{
		{
			name: "patroni body",
			body: `{"name":"patroni1","conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni",` +
				`"slots":{"patroni1":67419744,"patroni2":67108864,"cdc":50331648,"far":18446744073709551615}}`,
			want: FailsafeRequest{
				Name: "patroni1", ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni",
				Slots: map[string]dcs.LSN{"patroni1": 67419744, "patroni2": 67108864, "cdc": 50331648, "far": 1<<64 - 1},
			},
			code: 200,
		},
		{
			name: "no slots (older Patroni)",
			body: `{"name":"patroni1","conn_url":"postgres://a/postgres","api_url":"http://a:8008/patroni"}`,
			want: FailsafeRequest{Name: "patroni1", ConnURL: "postgres://a/postgres", APIURL: "http://a:8008/patroni"},
			code: 200,
		},
		{
			name: "bad slot entries dropped",
			body: `{"name":"patroni1","conn_url":"c","api_url":"a","slots":{"ok":5,"neg":-1,"frac":1.5,"text":"0/5","nil":null}}`,
			want: FailsafeRequest{Name: "patroni1", ConnURL: "c", APIURL: "a", Slots: map[string]dcs.LSN{"ok": 5}},
			code: 200,
		},
		{
			name: "slots not an object",
			body: `{"name":"patroni1","conn_url":"c","api_url":"a","slots":[1,2]}`,
			want: FailsafeRequest{Name: "patroni1", ConnURL: "c", APIURL: "a"},
			code: 200,
		},
		{name: "name not a string", body: `{"name":5,"conn_url":"c","api_url":"a"}`, code: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs.ctl.failsafe = FailsafeRequest{}
			r, err := hs.client.Do(t.Context(), http.MethodPost, "/failsafe", nil, []byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.code, r.Code, r.Text())
			require.Equal(t, tc.want, hs.ctl.lastFailsafe())
		})
	}

	// The client sends what the handler reads back.
	req := FailsafeRequest{Name: "patroni1", ConnURL: "c", APIURL: "a", Slots: map[string]dcs.LSN{"patroni1": 1 << 40, "cdc": 7}}
	r, err := hs.client.SendFailsafe(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, 200, r.Code)
	require.Equal(t, req, hs.ctl.lastFailsafe())
}

// spec/rest-api.md §5 GET /metrics.
func TestMetrics(t *testing.T) {
	st := replicaStatus()
	st.Global.SynchronousMode = "on"
	st.Cluster.Sync = &dcs.SyncState{Leader: "patroni1", Standbys: []string{"patroni2"}}
	st.LeaseRenewed = specNow.Add(-3 * time.Second)
	hs := newHarness(t, st, nil)
	hs.h.Metrics().ObserveDecision("no action: I am a secondary")
	hs.h.Metrics().ObserveDCSCall("touch_member", 3*time.Millisecond)
	hs.h.Metrics().ObserveLoop(20 * time.Millisecond)
	text, err := hs.client.Metrics(t.Context())
	require.NoError(t, err)
	lbl := `{name="patroni2",scope="demo"}`
	for _, line := range []string{
		"# TYPE patroni_version gauge", "patroni_version" + lbl + " 40000",
		"# TYPE patroni_postgres_timeline gauge", "patroni_postgres_timeline" + lbl + " 1",
		"# TYPE patroni_xlog_received_location counter", "patroni_xlog_received_location" + lbl + " 6.7419744e+07",
		"# TYPE patroni_xlog_location counter", "patroni_xlog_location" + lbl + " 0",
		"patroni_replica" + lbl + " 1", "patroni_primary" + lbl + " 0", "patroni_sync_standby" + lbl + " 1",
		"patroni_postgres_streaming" + lbl + " 1", "patroni_postgres_state" + lbl + " 5",
		"patroni_postgres_server_version" + lbl + " 160004", "patroni_dcs_last_seen" + lbl + " 1.692356928e+09",
		"patroni_failover_priority" + lbl + " 1", "patroni_postmaster_start_time" + lbl + " 1.724873966352526e+09",
		"patroni_cluster_unlocked" + lbl + " 0", "patroni_is_paused" + lbl + " 0",
		"pgwarden_lease_renewal_age_seconds" + lbl + " 5",
		`pgwarden_decisions_total{reason="no action: I am a secondary"} 1`,
		"# TYPE pgwarden_dcs_call_duration_seconds histogram", `pgwarden_dcs_call_duration_seconds_count{op="touch_member"} 1`,
		"pgwarden_loop_duration_seconds_count 1", "pgwarden_failovers_total 0", "pgwarden_switchovers_total 0",
	} {
		require.Contains(t, text, line+"\n")
	}
	require.True(t, strings.Contains(text, "# HELP patroni_postgres_state Numeric representation of Postgres state. Values: 0=initdb"))
}
