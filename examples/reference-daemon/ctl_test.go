package main

import (
	"bufio"
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/memory"
)

// memberLoop stands in for a member's HA loop behind the real REST API
// handler: it records what it is asked and answers as the loop would.
type memberLoop struct {
	mu        sync.Mutex
	calls     []string
	scheduled bool  // a restart is scheduled
	reinitErr error // answer to Reinitialize
}

func (l *memberLoop) record(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, s)
}

func (l *memberLoop) Restart(context.Context, api.RestartRequest) error {
	l.record("restart")
	return nil
}

func (l *memberLoop) ScheduleRestart(_ context.Context, r api.RestartRequest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.scheduled {
		return api.ErrRestartScheduled
	}
	l.scheduled = true
	l.calls = append(l.calls, "schedule restart "+r.Schedule.UTC().Format(time.RFC3339))
	return nil
}

func (l *memberLoop) CancelScheduledRestart(context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.scheduled
	l.scheduled = false
	l.calls = append(l.calls, "cancel restart")
	return was
}

func (l *memberLoop) Reload(context.Context) { l.record("reload") }

func (l *memberLoop) Reinitialize(context.Context, api.ReinitializeRequest) error {
	l.record("reinitialize")
	return l.reinitErr
}

func (l *memberLoop) Failsafe(context.Context, api.FailsafeRequest) (*dcs.LSN, error) {
	return nil, nil
}
func (l *memberLoop) Wake()     {}
func (l *memberLoop) Shutdown() {}

func (l *memberLoop) Calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

// ctlCluster is the cluster "batman" for ctl's member commands: a
// dcs/memory DCS holding three member keys and postgresql0's leader key;
// postgresql0 and postgresql1 serve the real REST API handler over HTTP,
// postgresql2's API address refuses connections.
type ctlCluster struct {
	srv   *memory.Server
	loops map[string]*memberLoop
	down  string // postgresql2's API host:port
}

func newCtlCluster(t *testing.T, edit func(m *dcs.Member)) *ctlCluster {
	t.Helper()
	ctx := t.Context()
	c := &ctlCluster{srv: memory.NewServer(memory.ServerConfig{}), loops: map[string]*memberLoop{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c.down = ln.Addr().String()
	require.NoError(t, ln.Close())

	roles := map[string]string{"postgresql0": "primary", "postgresql1": "replica", "postgresql2": "replica"}
	for i, name := range []string{"postgresql0", "postgresql1", "postgresql2"} {
		st := c.srv.Client(memory.ClientConfig{Scope: "batman", Name: name})
		t.Cleanup(func() { _ = st.Close() })
		m := &dcs.Member{Name: name, ConnURL: "postgres://127.0.0.1:" + []string{"5432", "5433", "5434"}[i] + "/postgres",
			State: "running", Role: roles[name], Timeline: intp(5)}
		if name == "postgresql2" {
			m.APIURL = "http://" + c.down + "/patroni"
		} else {
			loop := &memberLoop{}
			c.loops[name] = loop
			h, err := api.NewHandler(api.Config{
				Status: api.StatusFunc(func() api.Status {
					return api.Status{State: "running", Role: roles[name], QueryOK: true, PendingRestart: m.PendingRestart}
				}),
				Controller: loop, DCS: st, Logger: nullLogger(),
			})
			require.NoError(t, err)
			hs := httptest.NewServer(h)
			t.Cleanup(hs.Close)
			m.APIURL = hs.URL + "/patroni"
		}
		if edit != nil {
			edit(m)
		}
		if i == 0 {
			require.NoError(t, st.Initialize(ctx, "7277694203142172922", true))
			require.NoError(t, st.AcquireLeader(ctx))
		}
		require.NoError(t, st.TouchMember(ctx, m))
	}
	return c
}

// ctl runs one ctl command against the cluster with stdin as the answers
// to its prompts and returns what it printed (postgresql2's API address
// replaced by DOWN) and its error.
func (c *ctlCluster) ctl(t *testing.T, stdin string, argv ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	st := c.srv.Client(memory.ClientConfig{Scope: "batman"})
	x := &ctl{cfg: &config.Config{Scope: "batman"}, in: bufio.NewReader(strings.NewReader(stdin)), out: &out,
		now: func() time.Time { return time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC) }, timeout: 10 * time.Second}
	x.h = &dcsHandle{store: st}
	defer x.h.Close()
	var err error
	switch argv[0] {
	case "restart":
		err = x.restart(argv[1:])
	case "reload":
		err = x.reload(argv[1:])
	case "reinit":
		err = x.reinit(argv[1:])
	case "flush":
		err = x.flush(argv[1:])
	case "remove":
		err = x.remove(argv[1:])
	default:
		t.Fatalf("no ctl command %s in this test", argv[0])
	}
	return strings.ReplaceAll(out.String(), c.down, "DOWN"), err
}

// The cluster table ctl prints before acting (spec/patronictl.md §2).
const ctlTable = `+ Cluster: batman (7277694203142172922) -+---------+----+-------------+-----+------------+-----+
| Member      | Host           | Role    | State   | TL | Receive LSN | Lag | Replay LSN | Lag |
+-------------+----------------+---------+---------+----+-------------+-----+------------+-----+
| postgresql0 | 127.0.0.1:5432 | Leader  | running |  5 |             |     |            |     |
| postgresql1 | 127.0.0.1:5433 | Replica | running |  5 |     unknown |     |    unknown |     |
| postgresql2 | 127.0.0.1:5434 | Replica | running |  5 |     unknown |     |    unknown |     |
+-------------+----------------+---------+---------+----+-------------+-----+------------+-----+
`

// ctlTablePending is ctlTable when postgresql1 has a pending restart.
const ctlTablePending = `+ Cluster: batman (7277694203142172922) -+---------+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
| Member      | Host           | Role    | State   | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason | Scheduled restart | Tags |
+-------------+----------------+---------+---------+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
| postgresql0 | 127.0.0.1:5432 | Leader  | running |  5 |             |     |            |     |                 |                        |                   |      |
| postgresql1 | 127.0.0.1:5433 | Replica | running |  5 |     unknown |     |    unknown |     | *               |                        |                   |      |
| postgresql2 | 127.0.0.1:5434 | Replica | running |  5 |     unknown |     |    unknown |     |                 |                        |                   |      |
+-------------+----------------+---------+---------+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
`

// spec/patronictl.md §3.5-§3.8, §3.15: what restart, reload, reinit, flush
// and remove print for each member's answer, the prompts they ask, their
// refusals, and the requests the members receive.
func TestCtlMemberActions(t *testing.T) {
	refused := func(path string) string {
		return "(api: POST " + path + ": Post \"http://DOWN" + path + "\": dial tcp DOWN: connect: connection refused)"
	}
	tests := []struct {
		name    string
		edit    func(m *dcs.Member) // changes a member key before it is written
		loops   func(c *ctlCluster) // sets what the members' loops answer
		stdin   string
		argv    []string
		want    string
		wantErr string
		calls   map[string][]string // requests each member's loop received
	}{
		{name: "restart all forced", argv: []string{"restart", "batman", "--force"},
			want: ctlTable + "Success: restart on member postgresql0\nSuccess: restart on member postgresql1\n" +
				"Failed: restart for member postgresql2, status code=0, " + refused("/restart") + "\n",
			calls: map[string][]string{"postgresql0": {"restart"}, "postgresql1": {"restart"}}},
		{name: "restart prompts", stdin: "now\ny\n\n", argv: []string{"restart", "batman", "postgresql1"},
			want: ctlTable + "When should the restart take place (e.g. 2030-01-01T13:00)  [now]: " +
				"Are you sure you want to restart members postgresql1? [y/N]: " +
				"Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) : " +
				"Success: restart on member postgresql1\n",
			calls: map[string][]string{"postgresql1": {"restart"}}},
		{name: "restart refused", stdin: "now\nn\n", argv: []string{"restart", "batman", "postgresql1"},
			want: ctlTable + "When should the restart take place (e.g. 2030-01-01T13:00)  [now]: " +
				"Are you sure you want to restart members postgresql1? [y/N]: ",
			wantErr: "Aborted restart"},
		{name: "restart scheduled twice", stdin: "y\n\n", argv: []string{"restart", "batman", "postgresql1", "--scheduled", "2030-01-02T00:00Z"},
			want: ctlTable + "Are you sure you want to schedule restart of members postgresql1 at 2030-01-02T00:00:00Z? [y/N]: " +
				"Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) : " +
				"Success: restart scheduled on member postgresql1\n",
			calls: map[string][]string{"postgresql1": {"schedule restart 2030-01-02T00:00:00Z"}}},
		{name: "restart pending replicas", argv: []string{"restart", "batman", "--role", "replica", "--pending", "--force"},
			edit:  func(m *dcs.Member) { m.PendingRestart = m.Name == "postgresql1" },
			want:  ctlTablePending + "Success: restart on member postgresql1\n",
			calls: map[string][]string{"postgresql1": {"restart"}}},
		{name: "restart bad pg version", argv: []string{"restart", "batman", "--pg-version", "x", "--force"},
			want: ctlTable, wantErr: "x is not a valid PostgreSQL version"},
		{name: "restart unknown member", argv: []string{"restart", "batman", "nobody"},
			wantErr: "nobody is not a member of cluster"},
		{name: "restart without cluster", argv: []string{"restart"}, wantErr: "Missing argument 'CLUSTER_NAME'."},
		{name: "reload forced", argv: []string{"reload", "batman", "--force"},
			want: ctlTable + "Reload request received for member postgresql0 and will be processed within 10 seconds\n" +
				"Reload request received for member postgresql1 and will be processed within 10 seconds\n" +
				"Failed: reload for member postgresql2, status code=0, " + refused("/reload") + "\n",
			calls: map[string][]string{"postgresql0": {"reload"}, "postgresql1": {"reload"}}},
		{name: "reload primary refused", stdin: "n\n", argv: []string{"reload", "batman", "--role", "primary"},
			want:    ctlTable + "Are you sure you want to reload members postgresql0? [y/N]: ",
			wantErr: "Aborted reload"},
		{name: "reload without cluster", argv: []string{"reload"}, wantErr: "Missing argument 'CLUSTER_NAME'."},
		{name: "reinit replicas", stdin: "y\n", argv: []string{"reinit", "batman", "postgresql1", "postgresql2"},
			want: "Are you sure you want to reinitialize members postgresql1, postgresql2? [y/N]: " +
				"Success: reinitialize for member postgresql1\n" +
				"Failed: reinitialize for member postgresql2, status code=0, " + refused("/reinitialize") + "\n",
			calls: map[string][]string{"postgresql1": {"reinitialize"}}},
		{name: "reinit asks which", stdin: "postgresql1\ny\n", argv: []string{"reinit", "batman"},
			want: "Which member do you want to reinitialize: " +
				"Are you sure you want to reinitialize members postgresql1? [y/N]: " +
				"Success: reinitialize for member postgresql1\n",
			calls: map[string][]string{"postgresql1": {"reinitialize"}}},
		{name: "reinit busy", argv: []string{"reinit", "batman", "postgresql1", "--force"},
			loops: func(c *ctlCluster) { c.loops["postgresql1"].reinitErr = &api.BusyError{Action: "reinitialize"} },
			want:  "Failed: reinitialize for member postgresql1, status code=503, (reinitialize already in progress)\n",
			calls: map[string][]string{"postgresql1": {"reinitialize"}}},
		{name: "reinit leader", argv: []string{"reinit", "batman", "postgresql0", "--force"},
			wantErr: "No replica among provided members"},
		{name: "reinit forced without names", argv: []string{"reinit", "batman", "--force"}},
		{name: "reinit without cluster", argv: []string{"reinit"}, wantErr: "Missing argument 'CLUSTER_NAME'."},
		{name: "remove wrong name", stdin: "robin\n", argv: []string{"remove", "batman"},
			want: ctlTable + "Please confirm the cluster name to remove: ", wantErr: "Cluster names specified do not match"},
		{name: "remove without cluster", argv: []string{"remove"}, wantErr: "Missing argument 'CLUSTER_NAME'."},
		{name: "flush restart", argv: []string{"flush", "batman", "restart", "--force"},
			loops: func(c *ctlCluster) { c.loops["postgresql1"].scheduled = true },
			edit: func(m *dcs.Member) {
				if m.Name != "postgresql2" {
					m.ScheduledRestart = &dcs.ScheduledRestart{Schedule: "2030-01-02T00:00:00+00:00"}
				}
			},
			want: "Failed: flush scheduled restart for member postgresql0\n" +
				"Success: flush scheduled restart for member postgresql1\n" +
				"No scheduled restart for member postgresql2\n",
			calls: map[string][]string{"postgresql0": {"cancel restart"}, "postgresql1": {"cancel restart"}}},
		{name: "flush restart refused", stdin: "n\n", argv: []string{"flush", "batman", "postgresql1", "restart"},
			want: "Are you sure you want to flush members postgresql1? [y/N]: ", wantErr: "Aborted flush"},
		{name: "flush no switchover", argv: []string{"flush", "batman", "switchover"},
			want: "No pending scheduled switchover\n"},
		{name: "flush bad target", argv: []string{"flush", "batman", "failover"},
			wantErr: "Invalid value for '{restart|switchover}': 'failover'"},
		{name: "flush without target", argv: []string{"flush", "batman"},
			wantErr: "Usage: flush CLUSTER_NAME [MEMBER ...] {restart|switchover}"},
		{name: "flush without cluster", argv: []string{"flush"},
			wantErr: "Usage: flush CLUSTER_NAME [MEMBER ...] {restart|switchover}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCtlCluster(t, tc.edit)
			if tc.loops != nil {
				tc.loops(c)
			}
			out, err := c.ctl(t, tc.stdin, tc.argv...)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, out)
			for name, loop := range c.loops {
				require.Equal(t, tc.calls[name], loop.Calls(), "requests to %s", name)
			}
		})
	}
}

// spec/patronictl.md §3.5: with --force, a scheduled restart replaces the
// one already scheduled; without it the member answers 409.
func TestCtlRestartRescheduled(t *testing.T) {
	c := newCtlCluster(t, nil)
	c.loops["postgresql1"].scheduled = true
	out, err := c.ctl(t, "y\n\n", "restart", "batman", "postgresql1", "--scheduled", "2030-01-02T00:00Z")
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(out, "Failed: another restart is already scheduled on member postgresql1\n"), out)
	out, err = c.ctl(t, "", "restart", "batman", "postgresql1", "--scheduled", "2030-01-02T00:00Z", "--force")
	require.NoError(t, err)
	require.Equal(t, ctlTable+"Success: restart scheduled on member postgresql1\n", out)
	require.Equal(t, []string{"cancel restart", "schedule restart 2030-01-02T00:00:00Z"}, c.loops["postgresql1"].Calls())
}

// spec/patronictl.md §3.8: a scheduled switchover is deleted through the
// leader's API, which clears the failover key.
func TestCtlFlushSwitchover(t *testing.T) {
	c := newCtlCluster(t, nil)
	st := c.srv.Client(memory.ClientConfig{Scope: "batman"})
	defer st.Close()
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	_, err := st.SetFailover(t.Context(), &dcs.Failover{Leader: "postgresql0", Candidate: "postgresql1", ScheduledAt: &at}, "")
	require.NoError(t, err)
	out, err := c.ctl(t, "", "flush", "batman", "switchover")
	require.NoError(t, err)
	require.Equal(t, "Success: scheduled switchover deleted\n", out)
	cl, err := st.Cluster(t.Context())
	require.NoError(t, err)
	require.True(t, cl.Failover == nil || cl.Failover.IsEmpty(), "failover key after flush: %+v", cl.Failover)
}
