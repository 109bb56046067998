package consul

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// helperEnv makes the test binary act as a member process that takes the
// leader key and then waits to be killed (TestLeaderExpiryOnProcessDeath).
const helperEnv = "PGWARDEN_CONSUL_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		helperMember(v)
		return
	}
	goleak.VerifyTestMain(m)
}

// testTTL is the cluster ttl of the tests: a 2 s session, which test agents
// accept (testutil.ConsulSessionTTLMin), so expiry tests take seconds.
const testTTL = 4 * time.Second

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
}

// openStore opens a store on agent, closed when t ends.
func openStore(t testing.TB, addr, scope, name string, edit ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{
		Address:   addr,
		Scope:     scope,
		Name:      name,
		TTL:       testTTL,
		WatchWait: 5 * time.Second,
		Logger:    testutil.Logger(t),
	}
	for _, e := range edit {
		e(&cfg)
	}
	st, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func member(name, role string) *dcs.Member {
	lsn := dcs.LSN(100)
	return &dcs.Member{
		Name:         name,
		ConnURL:      "postgres://127.0.0.1:5432/postgres",
		APIURL:       "http://127.0.0.1:8008/patroni",
		State:        "running",
		Role:         role,
		XLogLocation: &lsn,
	}
}

// spec/dcs-layout.md §10: the conformance suite against a real agent, in
// the default ReadCache mode (a member's snapshot shows another client's
// write once its blocking query returned it) and in ReadSynced mode (cache
// plus an index probe).
func TestConformance(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	for _, mode := range []struct {
		name string
		mode ReadMode
	}{{"ReadCache", ReadCache}, {"ReadSynced", ReadSynced}} {
		t.Run(mode.name, func(t *testing.T) {
			dcstest.Run(t, dcstest.Harness{
				New: func(t *testing.T, scope, name string) dcs.Store {
					return openStore(t, agent.Addr(), scope, name, func(c *Config) { c.ReadMode = mode.mode })
				},
				TTL: testTTL,
				// Consul invalidates a session on its own timer, exactly
				// 2×TTL after the last renewal; allow for scheduling on a
				// loaded machine.
				ExpiryGrace:  2 * time.Second,
				WatchLatency: time.Second,
			})
		})
	}
}

// spec/dcs-layout.md §6: keys without a leading slash, the session's
// settings, and the leader and member keys locked by it.
func TestLayoutAndSession(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	st := openStore(t, agent.Addr(), "batman", "pg0")
	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	require.NoError(t, st.AcquireLeader(callCtx(t, 5*time.Second)))

	client := rawClient(t, agent.Addr())
	leader, _, err := client.KV().Get("service/batman/leader", nil)
	require.NoError(t, err)
	require.NotNil(t, leader)
	require.Equal(t, "pg0", string(leader.Value))
	m, _, err := client.KV().Get("service/batman/members/pg0", nil)
	require.NoError(t, err)
	require.NotNil(t, m)
	require.Equal(t, leader.Session, m.Session, "member and leader keys are locked by one session")

	se, _, err := client.Session().Info(leader.Session, nil)
	require.NoError(t, err)
	require.NotNil(t, se)
	require.Equal(t, "batman-pg0", se.Name)
	require.Equal(t, "2s", se.TTL, "session TTL is ttl/2")
	require.Equal(t, api.SessionBehaviorDelete, se.Behavior)
	require.Equal(t, time.Millisecond, se.LockDelay)
	require.Empty(t, se.NodeChecks, "no health checks: only the TTL invalidates the session")
	require.Empty(t, se.Checks)
}

// spec/dcs-layout.md §3, §6, §10.6: the watcher's cache answers Cluster
// without a request, and every change by another client wakes Changes,
// well within ttl, with the change in the next snapshot. It prints how
// soon; BenchmarkWakeLatency measures the wake-up speed.
func TestWatchLatency(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	watcher := openStore(t, agent.Addr(), "latency", "w")
	writer := openStore(t, agent.Addr(), "latency", "x")
	require.NoError(t, writer.TouchMember(callCtx(t, 5*time.Second), member("x", "replica")))

	testutil.SucceedsSoon(t, func() error {
		c, err := watcher.Cluster(callCtx(t, 5*time.Second))
		if err != nil {
			return err
		}
		if c.Member("x") == nil {
			return fmt.Errorf("member x not seen yet")
		}
		return nil
	})
	dcstest.Drain(watcher.Changes(), 50*time.Millisecond)

	before := watcher.readThroughs.Load()
	for range 100 {
		_, err := watcher.Cluster(callCtx(t, 5*time.Second))
		require.NoError(t, err)
	}
	require.Equal(t, before, watcher.readThroughs.Load(), "steady-state Cluster must not read through")

	const rounds = 20
	var lat []time.Duration
	var prev dcs.Version
	for i := range rounds {
		dcstest.Drain(watcher.Changes(), 50*time.Millisecond)
		start := time.Now()
		v, err := writer.SetFailover(callCtx(t, 5*time.Second), &dcs.Failover{Candidate: fmt.Sprintf("m%d", i)}, prev)
		require.NoError(t, err)
		prev = v
		select {
		case <-watcher.Changes():
			lat = append(lat, time.Since(start))
		case <-time.After(testTTL / 2):
			t.Fatalf("round %d: Changes did not fire within %s of another client's write", i, testTTL/2)
		}
		c, err := watcher.Cluster(callCtx(t, 5*time.Second))
		require.NoError(t, err)
		require.NotNil(t, c.Failover)
		require.Equal(t, fmt.Sprintf("m%d", i), c.Failover.Candidate)
	}
	slices.Sort(lat)
	t.Logf("wake-up latency after a write by another client over %d rounds (write included): min %s, median %s, max %s",
		rounds, lat[0], lat[rounds/2], lat[rounds-1])
}

// BenchmarkWakeLatency measures how soon a member waiting on Changes wakes
// after another client's write through a real agent: the blocking query
// returns at once (goal: median under 100 ms, slowest under 250 ms).
func BenchmarkWakeLatency(b *testing.B) {
	agent := testutil.StartConsul(b)
	dcstest.MeasureWake(b, openStore(b, agent.Addr(), "wake", "writer"), openStore(b, agent.Addr(), "wake", "waiter"))
}

// spec/dcs-layout.md §6 and store.go "Liveness": when the leader's process
// dies, its key disappears ttl after the last renewal (2 × the session TTL),
// the waiting member sees it go, and takes the key at once: the 1 ms
// lock-delay does not refuse the acquire.
//
// Consul documents a session TTL as a lower bound: a session is never
// invalidated before it, and may be reaped up to twice it later. The
// server's timer is in fact always twice the TTL, which sessionTTL relies
// on, so the key lives ttl. The bounds below catch a key that goes at one
// session TTL (ttl/2) or lingers a second ttl (a session TTL of ttl); they
// leave seconds for a loaded machine. How fast the watcher wakes is
// BenchmarkWakeLatency's business.
func TestLeaderExpiryOnProcessDeath(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	scope := "expiry"

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+agent.Addr()+","+scope+",dead")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "leader\n", line)
	require.NoError(t, cmd.Process.Kill())
	killed := time.Now() // the helper renewed when it acquired, just before
	_ = cmd.Wait()

	st := openStore(t, agent.Addr(), scope, "alive")
	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("alive", "replica")))
	c, err := st.Cluster(callCtx(t, 5*time.Second))
	require.NoError(t, err)
	require.Equal(t, "dead", c.Leader.Name)
	require.ErrorIs(t, st.AcquireLeader(callCtx(t, 5*time.Second)), dcs.ErrConflict)

	var gone time.Duration
	for gone == 0 {
		select {
		case <-st.Changes():
			c, err := st.Cluster(callCtx(t, 5*time.Second))
			require.NoError(t, err)
			if !c.IsLocked() {
				gone = time.Since(killed)
			}
		case <-time.After(3 * testTTL):
			t.Fatal("leader key did not expire within 3×ttl")
		}
	}
	require.NoError(t, st.AcquireLeader(callCtx(t, 5*time.Second)), "lock-delay must not block the takeover")
	took := time.Since(killed)
	t.Logf("ttl %s (session TTL %s): leader key gone %s after the leader died, taken over after %s (%s after it went)",
		testTTL, sessionTTL(testTTL), gone.Round(time.Millisecond), took.Round(time.Millisecond), (took - gone).Round(time.Millisecond))
	// killed is after the helper's last renewal, so the key lived at least
	// gone; the quarter ttl of slack covers the time from that renewal to
	// the kill.
	require.GreaterOrEqual(t, gone, testTTL-testTTL/4, "the key must live ttl (2 × the session TTL), not one session TTL")
	require.Less(t, took, testTTL+lockDelay+testTTL/2, "the key must be gone, and taken over, about ttl after the last renewal")
}

// helperMember runs in a child process: it takes the leader key, says so
// on stdout, and waits to be killed.
func helperMember(arg string) {
	parts := strings.Split(arg, ",")
	st, err := New(Config{Address: parts[0], Scope: parts[1], Name: parts[2], TTL: testTTL, WatchWait: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.TouchMember(ctx, member(parts[2], "primary")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := st.AcquireLeader(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("leader")
	select {}
}

// spec/dcs-layout.md §6 "register_service": the catalog shows the role tags
// before and after a role change, and the entry goes away on Close.
func TestServiceRegistration(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	scope := "Svc.Test"
	st := openStore(t, agent.Addr(), scope, "pg0", func(c *Config) {
		c.Service = ServiceConfig{Register: true, Tags: []string{"pgwarden"}, CheckInterval: 10 * time.Second}
	})
	client := rawClient(t, agent.Addr())
	tags := func() ([]string, error) {
		svcs, _, err := client.Catalog().Service(ServiceName(scope), "", &api.QueryOptions{RequireConsistent: true})
		if err != nil {
			return nil, err
		}
		if len(svcs) != 1 {
			return nil, fmt.Errorf("%d catalog entries, want 1", len(svcs))
		}
		s := svcs[0]
		if s.ServiceID != scope+"/pg0" || s.ServiceAddress != "127.0.0.1" || s.ServicePort != 5432 {
			return nil, fmt.Errorf("unexpected entry %s %s:%d", s.ServiceID, s.ServiceAddress, s.ServicePort)
		}
		return s.ServiceTags, nil
	}

	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "replica")))
	got, err := tags()
	require.NoError(t, err)
	require.Equal(t, []string{"pgwarden", "replica"}, got)

	checks, _, err := client.Health().Checks(ServiceName(scope), nil)
	require.NoError(t, err)
	require.Len(t, checks, 1)
	require.Equal(t, "http", checks[0].Type)

	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	got, err = tags()
	require.NoError(t, err)
	require.Equal(t, []string{"pgwarden", "primary", "master"}, got)

	m := member("pg0", "standby_leader")
	require.NoError(t, st.Register(callCtx(t, 5*time.Second), m))
	got, err = tags()
	require.NoError(t, err)
	require.Equal(t, []string{"pgwarden", "standby-leader"}, got)

	require.NoError(t, st.Close())
	svcs, _, err := client.Catalog().Service(ServiceName(scope), "", nil)
	require.NoError(t, err)
	require.Empty(t, svcs, "deregistered on Close")
}

// spec/dcs-layout.md §3: with Consul down for 5 s every call returns
// dcs.ErrUnavailable by its deadline, the store recovers when Consul is
// back, and nothing leaks.
func TestConsulDown(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	// The restarted agent's process waiter belongs to the agent, not to the
	// store under test.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/pgwarden/pgwarden/internal/testutil.startProcess.func1"))
	st, err := New(Config{Address: agent.Addr(), Scope: "down", Name: "pg0", TTL: testTTL,
		WatchWait: 5 * time.Second, Logger: testutil.Logger(t)})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()

	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	require.NoError(t, st.AcquireLeader(callCtx(t, 5*time.Second)))

	const deadline = 1500 * time.Millisecond // stands in for retry_timeout
	// slack is how late past the deadline a call may return on a loaded
	// machine; a call that ignored its deadline would wait out
	// RetryTimeout (10 s) or hang on the paused agent.
	const slack = 2 * time.Second
	// TouchMember publishes a changed value each time, so that it cannot
	// be skipped as identical to what is stored.
	lsn := dcs.LSN(1000)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"TouchMember", func(ctx context.Context) error {
			lsn++
			m := member("pg0", "primary")
			m.XLogLocation = &lsn
			return st.TouchMember(ctx, m)
		}},
		{"UpdateLeader", func(ctx context.Context) error {
			return st.UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 5}})
		}},
		{"SetConfig", func(ctx context.Context) error { _, err := st.SetConfig(ctx, []byte(`{}`), ""); return err }},
		// Last: Cluster may answer from the cache until the watcher has
		// noticed the outage.
		{"Cluster", func(ctx context.Context) error { _, err := st.Cluster(ctx); return err }},
	}

	// A hung agent (SIGSTOP): requests get no answer at all. Cluster is
	// left out: the cache answers it until its blocking query is overdue.
	agent.Pause()
	for _, c := range calls[:3] {
		t.Run("hung/"+c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call(callCtx(t, deadline))
			took := time.Since(start)
			require.ErrorIs(t, err, dcs.ErrUnavailable)
			require.Less(t, took, deadline+slack)
			t.Logf("%s returned after %s: %v", c.name, took.Round(time.Millisecond), err)
		})
	}
	agent.Resume()

	// A dead agent: connections are refused, for 5 s.
	agent.Kill()
	down := time.Now()
	for _, c := range calls {
		t.Run("down/"+c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call(callCtx(t, deadline))
			took := time.Since(start)
			require.ErrorIs(t, err, dcs.ErrUnavailable)
			require.Less(t, took, deadline+slack)
		})
	}
	time.Sleep(time.Until(down.Add(5 * time.Second)))
	agent.Start() // dev mode: the agent comes back empty
	back := time.Now()

	// Recovery: a new session, the member key again, the leader key free.
	testutil.SucceedsSoon(t, func() error {
		return st.TouchMember(callCtx(t, 2*time.Second), member("pg0", "primary"))
	})
	t.Logf("TouchMember succeeded %s after the agent served again", time.Since(back).Round(time.Millisecond))
	testutil.SucceedsSoon(t, func() error {
		c, err := st.Cluster(callCtx(t, 2*time.Second))
		if err != nil {
			return err
		}
		if c.Member("pg0") == nil {
			return fmt.Errorf("member key not back yet")
		}
		return nil
	})
	require.ErrorIs(t, st.UpdateLeader(callCtx(t, 5*time.Second), dcs.LeaderUpdate{}), dcs.ErrLeaderLost,
		"the leader key went with the old session and must not be recreated")
	require.NoError(t, st.AcquireLeader(callCtx(t, 5*time.Second)))
	require.NoError(t, st.UpdateLeader(callCtx(t, 5*time.Second), dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 7}}))
	c, err := st.Cluster(callCtx(t, 5*time.Second))
	require.NoError(t, err)
	require.Equal(t, "pg0", c.Leader.Name)
	require.Equal(t, dcs.LSN(7), c.Status.LastLSN)
}

// spec/dcs-layout.md §6: after a ttl change the keys move to a new session
// (a session's TTL is fixed) and the leader keeps its key.
func TestSetTTLMovesKeys(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	st := openStore(t, agent.Addr(), "ttl", "pg0")
	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	require.NoError(t, st.AcquireLeader(callCtx(t, 5*time.Second)))
	st.SetTTL(6 * time.Second)
	require.NoError(t, st.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	require.NoError(t, st.UpdateLeader(callCtx(t, 5*time.Second), dcs.LeaderUpdate{}))

	client := rawClient(t, agent.Addr())
	leader, _, err := client.KV().Get("service/ttl/leader", nil)
	require.NoError(t, err)
	require.NotNil(t, leader)
	se, _, err := client.Session().Info(leader.Session, nil)
	require.NoError(t, err)
	require.NotNil(t, se)
	require.Equal(t, "3s", se.TTL)
	m, _, err := client.KV().Get("service/ttl/members/pg0", nil)
	require.NoError(t, err)
	require.NotNil(t, m)
	require.Equal(t, leader.Session, m.Session)
}

func rawClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	tr := cleanhttp.DefaultPooledTransport()
	c, err := api.NewClient(&api.Config{Address: addr, HttpClient: &http.Client{Transport: tr}})
	require.NoError(t, err)
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// spec/config.md ("consul": token): the ACL token goes with every request;
// without it an agent that denies by default refuses the session, which
// surfaces as dcs.ErrUnavailable with the cause kept.
func TestACLToken(t *testing.T) {
	skipShort(t)
	const root = "4c1e7f4a-64a9-4bbc-9a37-2a0f1d1c3b6e"
	agent := testutil.StartConsulWith(t, testutil.ConsulOptions{
		HCL: []string{fmt.Sprintf(`acl { enabled = true
  default_policy = "deny"
  tokens { initial_management = %q
    agent = %q } }`, root, root)},
		ManagementToken: root,
	})
	good := openStore(t, agent.Addr(), "acl", "pg0", func(c *Config) { c.Token = root })
	require.NoError(t, good.TouchMember(callCtx(t, 5*time.Second), member("pg0", "primary")))
	require.NoError(t, good.AcquireLeader(callCtx(t, 5*time.Second)))
	c, err := good.Cluster(callCtx(t, 5*time.Second))
	require.NoError(t, err)
	require.Equal(t, "pg0", c.Leader.Name)

	anon := openStore(t, agent.Addr(), "acl", "pg1")
	err = anon.TouchMember(callCtx(t, 2*time.Second), member("pg1", "replica"))
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.Contains(t, strings.ToLower(err.Error()), "permission denied")
	_, err = anon.SetConfig(callCtx(t, 2*time.Second), []byte(`{}`), "")
	require.ErrorIs(t, err, dcs.ErrUnavailable, "an ACL refusal is not a version conflict")
}

// spec/config.md ("consul": dc, consistency): every read mode and
// consistency works against the agent's datacenter; an unknown datacenter
// is dcs.ErrUnavailable.
func TestConsistencyAndDatacenter(t *testing.T) {
	skipShort(t)
	agent := testutil.StartConsul(t)
	writer := openStore(t, agent.Addr(), "modes", "w")
	require.NoError(t, writer.TouchMember(callCtx(t, 5*time.Second), member("w", "primary")))
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"cache default", func(c *Config) {}},
		{"synced consistent", func(c *Config) { c.ReadMode, c.Consistency = ReadSynced, ConsistencyConsistent }},
		{"consistent stale", func(c *Config) { c.ReadMode, c.Consistency = ReadConsistent, ConsistencyStale }},
		{"datacenter", func(c *Config) { c.Datacenter = "dc1" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, agent.Addr(), "modes", "r", tc.edit)
			testutil.SucceedsSoon(t, func() error {
				c, err := st.Cluster(callCtx(t, 5*time.Second))
				if err != nil {
					return err
				}
				if c.Member("w") == nil {
					return fmt.Errorf("member w not visible")
				}
				return nil
			})
		})
	}
	t.Run("unknown datacenter", func(t *testing.T) {
		st := openStore(t, agent.Addr(), "modes", "r", func(c *Config) { c.Datacenter = "nowhere" })
		_, err := st.Cluster(callCtx(t, 2*time.Second))
		require.ErrorIs(t, err, dcs.ErrUnavailable)
	})
}
