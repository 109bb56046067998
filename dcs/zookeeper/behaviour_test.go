package zookeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// rawClient connects a plain go-zookeeper client, as another tool would.
func rawClient(t *testing.T, hosts []string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect(hosts, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(zkLogger{testutil.Logger(t)}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	testutil.SucceedsSoon(t, func() error {
		if st := c.State(); st != zk.StateHasSession {
			return fmt.Errorf("raw client state %s", st)
		}
		return nil
	})
	return c
}

// cutter dials real connections that it can cut like a network partition:
// after Cut, writes are dropped (the server hears nothing more, so the
// session expires on the server) and new dials fail.
type cutter struct {
	mu    sync.Mutex
	cut   bool
	conns []*cutConn
}

type cutConn struct {
	net.Conn
	frozen atomic.Bool
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *cutter) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("test: link cut")
	}
	nc, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: nc}
	c.conns = append(c.conns, cc)
	return cc, nil
}

func (c *cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, cc := range c.conns {
		cc.frozen.Store(true)
	}
}

// TestLeaderExpiryAndWake cuts the leader's link to ZooKeeper and measures
// how long its leader znode outlives the cut (spec/dcs-layout.md §7:
// session timeout = ttl; §10.2: expiry about ttl after the last renewal)
// and that a waiting member's Changes fires when the znode is gone, well
// within ttl (§10.6; ARCHITECTURE.md "Timing"). The bounds leave seconds
// for a loaded machine; the test prints the figures and
// BenchmarkWakeLatency measures the wake-up speed.
func TestLeaderExpiryAndWake(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	srv := testutil.StartZooKeeper(t)
	hosts := []string{srv.Addr()}
	scope := "expiry"
	var link cutter
	a := openStore(t, hosts, scope, "a", func(c *Config) { c.Dial = link.dial })
	b := openStore(t, hosts, scope, "b")
	raw := rawClient(t, hosts)

	require.NoError(t, a.TouchMember(t.Context(), &dcs.Member{Name: "a", State: "running"}))
	require.NoError(t, a.AcquireLeader(t.Context()))
	require.NoError(t, b.TouchMember(t.Context(), &dcs.Member{Name: "b", State: "running"}))
	c, err := b.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, "a", c.Leader.Name)
	dcstest.Drain(b.Changes(), 300*time.Millisecond)

	leaderPath := Prefix("", scope) + "/leader"
	ok, _, gone, err := raw.ExistsW(leaderPath)
	require.NoError(t, err)
	require.True(t, ok)

	// Both HA loops keep running (a keeps renewing, b keeps touching its
	// member key); only a's link dies.
	renewCtx, stopRenew := context.WithCancel(t.Context())
	var loops sync.WaitGroup
	defer loops.Wait()
	defer stopRenew()
	loops.Go(func() {
		for renewCtx.Err() == nil {
			cctx, cancel := context.WithTimeout(renewCtx, 500*time.Millisecond)
			_ = a.UpdateLeader(cctx, dcs.LeaderUpdate{})
			_ = b.TouchMember(cctx, &dcs.Member{Name: "b", State: "running"})
			cancel()
			time.Sleep(200 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	dcstest.Drain(b.Changes(), 100*time.Millisecond)
	woke := make(chan time.Time, 1)
	go func() {
		select {
		case <-b.Changes():
			woke <- time.Now()
		case <-time.After(testTTL + 5*time.Second):
			close(woke)
		}
	}()
	cutAt := time.Now()
	link.Cut()

	var goneAt, wokeAt time.Time
	select {
	case ev := <-gone:
		goneAt = time.Now()
		require.Equal(t, zk.EventNodeDeleted, ev.Type)
	case <-time.After(testTTL + 3*time.Second):
		t.Fatalf("leader znode still there %s after the cut", time.Since(cutAt))
	}
	wokeAt, ok = <-woke
	require.True(t, ok, "the waiting member was not woken")
	// goneAt is when a plain client's watch saw the deletion; the waiter's
	// own watch event travels on another connection, so it may come first.
	expiry, wake := goneAt.Sub(cutAt), wokeAt.Sub(goneAt)
	t.Logf("ttl %s: leader znode gone %s after the link was cut; waiting member woken %s after a plain client's watch saw it (negative: before)",
		testTTL, expiry.Round(time.Millisecond), wake.Round(10*time.Microsecond))
	// A generous bound: it still catches a session timeout of twice ttl.
	require.Less(t, expiry, testTTL+testTTL/2, "§10.2: expiry about ttl after the last renewal")
	require.Less(t, wake, testTTL/2, "§10.6: the waiter wakes well within ttl of the deletion (speed: BenchmarkWakeLatency)")

	c, err = b.Cluster(t.Context())
	require.NoError(t, err)
	require.False(t, c.IsLocked())
	require.Nil(t, c.Member("a"), "§7: the member znode went with the session")
	require.NoError(t, b.AcquireLeader(t.Context()))
}

// TestRestart stops ZooKeeper for 5 s: calls fail with ErrUnavailable by
// their deadline and never hang past it, and the store recovers its session
// or a new one afterwards (store.go "Every blocking method honours ctx";
// spec/dcs-layout.md §3, §7). With a ttl shorter than the outage the
// liveness check ends the session (no refresh for ttl) and the store
// continues in a new one; with a longer ttl the server restores the
// session and the store keeps it.
func TestRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	for _, tc := range []struct {
		name        string
		ttl         time.Duration
		sameSession bool
	}{
		{"ttl shorter than the outage", testTTL, false},
		{"ttl longer than the outage", 20 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testRestart(t, tc.ttl, tc.sameSession)
		})
	}
}

func testRestart(t *testing.T, ttl time.Duration, sameSession bool) {
	srv := testutil.StartZooKeeper(t)
	hosts := []string{srv.Addr()}
	withTTL := func(c *Config) { c.TTL = ttl }
	a := openStore(t, hosts, "restart", "a", withTTL)
	ctl := openStore(t, hosts, "restart", "", withTTL)
	require.NoError(t, a.TouchMember(t.Context(), &dcs.Member{Name: "a", State: "running"}))
	require.NoError(t, a.AcquireLeader(t.Context()))

	oldSession := a.SessionID()
	srv.Stop()
	downAt := time.Now()
	// A call that started before the client saw the connection drop may
	// still succeed (an identical TouchMember is skipped); wait for that.
	testutil.SucceedsSoon(t, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := a.Cluster(ctx); err == nil {
			return errors.New("the store has not noticed yet")
		}
		return nil
	})
	const deadline = 700 * time.Millisecond
	var calls, overdue int
	var worst time.Duration
	for time.Since(downAt) < 5*time.Second {
		for name, f := range map[string]func(context.Context) error{
			"Cluster":      func(c context.Context) error { _, err := a.Cluster(c); return err },
			"TouchMember":  func(c context.Context) error { return a.TouchMember(c, &dcs.Member{Name: "a", State: "running"}) },
			"UpdateLeader": func(c context.Context) error { return a.UpdateLeader(c, dcs.LeaderUpdate{}) },
			"SetConfig":    func(c context.Context) error { _, err := ctl.SetConfig(c, []byte(`{}`), ""); return err },
		} {
			cctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			err := f(cctx)
			took := time.Since(start)
			cancel()
			calls++
			worst = max(worst, took)
			require.ErrorIs(t, err, dcs.ErrUnavailable, "%s while ZooKeeper is down", name)
			if took > deadline+200*time.Millisecond {
				overdue++
			}
		}
	}
	t.Logf("ZooKeeper down 5s: %d calls with a %s deadline failed with ErrUnavailable, slowest returned after %s",
		calls, deadline, worst.Round(time.Millisecond))
	require.Zero(t, overdue, "calls returned more than 200ms after their deadline")

	srv.Start()
	upAt := time.Now()
	testutil.SucceedsSoon(t, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := a.TouchMember(ctx, &dcs.Member{Name: "a", State: "running"}); err != nil {
			return err
		}
		err := a.UpdateLeader(ctx, dcs.LeaderUpdate{})
		if errors.Is(err, dcs.ErrLeaderLost) {
			err = a.AcquireLeader(ctx)
		}
		if err != nil {
			return err
		}
		c, err := ctl.Cluster(ctx)
		if err != nil {
			return err
		}
		if c.Leader == nil || c.Leader.Name != "a" || c.Member("a") == nil {
			return fmt.Errorf("leader %v, members %d", c.Leader, len(c.Members))
		}
		return nil
	})
	t.Logf("ttl %s: recovered %s after ZooKeeper was back (session before %q, after %q)",
		ttl, time.Since(upAt).Round(time.Millisecond), oldSession, a.SessionID())
	if sameSession {
		require.Equal(t, oldSession, a.SessionID(), "the server restored the session; the store kept it")
	} else {
		require.NotEqual(t, oldSession, a.SessionID())
	}
}

// TestLayout reads what the store wrote with a plain client and checks it
// against spec/dcs-layout.md §1, §2 and §7: paths, values, ephemeral leader
// and member znodes owned by the session, persistent others, versions.
func TestLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	srv := testutil.StartZooKeeper(t)
	hosts := []string{srv.Addr()}
	a := openStore(t, hosts, "batman", "postgresql0", func(c *Config) { c.Namespace = "//pg//" })
	raw := rawClient(t, hosts)
	ctx := t.Context()

	lsn := dcs.LSN(67108960)
	tl := 3
	m := &dcs.Member{Name: "postgresql0", ConnURL: "postgres://127.0.0.1:5432/postgres",
		APIURL: "http://127.0.0.1:8008/patroni", State: "running", Role: "primary", PatroniVersion: "4.1.4",
		XLogLocation: &lsn, Timeline: &tl}
	require.NoError(t, a.Initialize(ctx, "", true))
	require.NoError(t, a.Initialize(ctx, "7277694203142172922", false))
	cfgJSON := []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10}`)
	_, err := a.SetConfig(ctx, cfgJSON, "")
	require.NoError(t, err)
	require.NoError(t, a.TouchMember(ctx, m))
	require.NoError(t, a.AcquireLeader(ctx))
	status := &dcs.Status{LastLSN: lsn, Slots: map[string]dcs.LSN{"postgresql0": lsn}}
	fs := dcs.Failsafe{"postgresql0": "http://127.0.0.1:8008/patroni"}
	require.NoError(t, a.UpdateLeader(ctx, dcs.LeaderUpdate{Status: status, Failsafe: fs}))
	syncState := &dcs.SyncState{Leader: "postgresql0", Standbys: []string{"postgresql1"}}
	_, err = a.SetSync(ctx, syncState, "")
	require.NoError(t, err)
	hist := &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 25623960,
		Reason: "no recovery target specified", Timestamp: "2019-09-23T16:57:57+02:00", NewLeader: "postgresql0"}}}
	require.NoError(t, a.SetHistory(ctx, hist))
	fo := &dcs.Failover{Leader: "postgresql0", Candidate: "postgresql1"}
	_, err = a.SetFailover(ctx, fo, "")
	require.NoError(t, err)

	session, err := strconv.ParseInt(a.SessionID()[2:], 16, 64)
	require.NoError(t, err)
	base := "/pg/batman"
	for _, tc := range []struct {
		key       string
		want      []byte
		ephemeral bool
	}{
		{"initialize", []byte("7277694203142172922"), false},
		{"config", cfgJSON, false},
		{"leader", []byte("postgresql0"), true},
		{"members/postgresql0", dcs.EncodeMember(m), true},
		{"status", dcs.EncodeStatus(status), false},
		{"failsafe", dcs.EncodeFailsafe(fs), false},
		{"sync", dcs.EncodeSync(syncState), false},
		{"history", dcs.EncodeHistory(hist), false},
		{"failover", dcs.EncodeFailover(fo), false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			data, st, err := raw.Get(base + "/" + tc.key)
			require.NoError(t, err, "§1: %s/%s exists", base, tc.key)
			require.Equal(t, string(tc.want), string(data), "§2: value of %s", tc.key)
			if tc.ephemeral {
				require.Equal(t, session, st.EphemeralOwner, "§7: %s is an ephemeral znode of the session", tc.key)
			} else {
				require.Zero(t, st.EphemeralOwner, "§7: %s is persistent", tc.key)
			}
		})
	}
	t.Run("values are compact JSON", func(t *testing.T) {
		data, _, err := raw.Get(base + "/members/postgresql0")
		require.NoError(t, err)
		var v map[string]any
		require.NoError(t, json.Unmarshal(data, &v))
		require.Equal(t, "running", v["state"])
		require.NotContains(t, string(data), ": ", "§2: compact separators")
	})
	t.Run("config version is mzxid", func(t *testing.T) {
		_, st, err := raw.Get(base + "/config")
		require.NoError(t, err)
		c, err := a.Cluster(ctx)
		require.NoError(t, err)
		require.Equal(t, dcs.Version(strconv.FormatInt(st.Mzxid, 10)), c.Config.Version,
			"§7: the config's modify-version is its mzxid")
		require.Equal(t, a.SessionID(), c.Leader.Session)
	})
	t.Run("delete sync writes {}", func(t *testing.T) {
		c, err := a.Cluster(ctx)
		require.NoError(t, err)
		require.NoError(t, a.DeleteSync(ctx, c.Sync.Version))
		data, _, err := raw.Get(base + "/sync")
		require.NoError(t, err)
		require.Equal(t, "{}", string(data), "§2.8/§7: ZooKeeper clears sync by writing {}")
	})
	t.Run("release ends the session", func(t *testing.T) {
		require.NoError(t, a.ReleaseLeader(ctx, &dcs.Status{LastLSN: lsn + 1}))
		for _, key := range []string{"leader", "members/postgresql0"} {
			ok, _, err := raw.Exists(base + "/" + key)
			require.NoError(t, err)
			require.False(t, ok, "§7: releasing the leader ends the session, dropping %s", key)
		}
		data, _, err := raw.Get(base + "/status")
		require.NoError(t, err)
		require.Equal(t, string(dcs.EncodeStatus(&dcs.Status{LastLSN: lsn + 1})), string(data),
			"store.go ReleaseLeader: last is published")
		require.NoError(t, a.TouchMember(ctx, m), "the next touch re-creates the member in a new session")
		_, st, err := raw.Get(base + "/members/postgresql0")
		require.NoError(t, err)
		require.NotEqual(t, session, st.EphemeralOwner)
	})
}

// TestExhibitor discovers the ensemble from an Exhibitor REST endpoint
// served by the test, and moves the connection when the list changes,
// keeping the session (spec/config.md `exhibitor`; spec/dcs-layout.md §7).
func TestExhibitor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	srv := testutil.StartZooKeeper(t)
	var servers atomic.Value
	servers.Store([]string{"127.0.0.1"})
	var polls atomic.Int64
	ex := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != ExhibitorPath {
			http.NotFound(w, r)
			return
		}
		polls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"servers": servers.Load(), "port": srv.ClientPort})
	}))
	t.Cleanup(ex.Close)
	exHost, exPort, err := net.SplitHostPort(ex.Listener.Addr().String())
	require.NoError(t, err)
	port, _ := strconv.Atoi(exPort)

	a := openStore(t, nil, "exhibitor", "a", func(c *Config) {
		c.Exhibitor = &Exhibitor{Hosts: []string{"127.0.0.2", exHost}, Port: port, PollInterval: 100 * time.Millisecond}
	})
	require.Equal(t, []string{srv.Addr()}, a.Hosts())
	require.NoError(t, a.TouchMember(t.Context(), &dcs.Member{Name: "a", State: "running"}))
	session := a.SessionID()

	servers.Store([]string{"localhost"})
	moved := net.JoinHostPort("localhost", strconv.Itoa(srv.ClientPort))
	testutil.SucceedsSoon(t, func() error {
		if got := a.server(); got != moved {
			return fmt.Errorf("connected to %q, want %q", got, moved)
		}
		return nil
	})
	require.Equal(t, []string{moved}, a.Hosts())
	require.Equal(t, session, a.SessionID(), "moving to another server keeps the session")
	c, err := a.Cluster(t.Context())
	require.NoError(t, err)
	require.NotNil(t, c.Member("a"))
	require.GreaterOrEqual(t, polls.Load(), int64(2), "read at Open and polled again")
}

// TestSteadyStateReads checks the watch-fed cache: in a steady-state HA
// cycle the leader's store reads only the znodes that changed, not the
// whole cluster (issue 8; spec/dcs-layout.md §3 "the cache").
func TestSteadyStateReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	srv := testutil.StartZooKeeper(t)
	hosts := []string{srv.Addr()}
	names := []string{"a", "b", "c"}
	st := map[string]*Store{}
	for _, n := range names {
		st[n] = openStore(t, hosts, "steady", n)
	}
	ctx := t.Context()
	a := st["a"]
	require.NoError(t, a.Initialize(ctx, "7277694203142172922", true))
	_, err := a.SetConfig(ctx, []byte(`{"ttl":30}`), "")
	require.NoError(t, err)
	require.NoError(t, a.AcquireLeader(ctx))
	_, err = a.SetSync(ctx, &dcs.SyncState{Leader: "a", Standbys: []string{"b"}}, "")
	require.NoError(t, err)
	require.NoError(t, a.SetHistory(ctx, &dcs.TimelineHistory{}))
	_, err = a.SetFailover(ctx, &dcs.Failover{}, "")
	require.NoError(t, err)

	cycle := func(lsn dcs.LSN) {
		for _, n := range names {
			s := st[n]
			_, err := s.Cluster(ctx)
			require.NoError(t, err)
			require.NoError(t, s.TouchMember(ctx, &dcs.Member{Name: n, State: "running", XLogLocation: &lsn}))
			if n == "a" {
				require.NoError(t, s.UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: lsn}}))
			}
		}
	}
	cycle(1)
	cycle(2)
	time.Sleep(300 * time.Millisecond) // background re-arming settles
	before := a.Stats()
	const cycles = 5
	for i := range cycles {
		cycle(dcs.LSN(10 + i))
	}
	time.Sleep(300 * time.Millisecond)
	after := a.Stats()
	c, err := a.Cluster(ctx)
	require.NoError(t, err)
	require.Len(t, c.Members, 3)
	require.Equal(t, dcs.LSN(14), c.Member("c").LSN(), "the cache follows every change")
	require.Equal(t, dcs.LSN(14), c.Status.LastLSN)

	// A full read: every fixed key, the members directory, every member.
	znodes := len(dataKeys) + 1 + len(names)
	reads := float64(after.Reads-before.Reads) / cycles
	writes := float64(after.Writes-before.Writes) / cycles
	t.Logf("leader's store per HA cycle (3 members, every member's xlog_location changing): %.1f reads, %.1f writes, %.1f syncs; a full read would be %d reads",
		reads, writes, float64(after.Syncs-before.Syncs)/cycles, znodes)
	// Changed each cycle: b's and c's member znodes, our own member and
	// status (re-armed after our writes), plus the leader fence read: 5,
	// sometimes one more when a background re-arm and a Cluster call both
	// read a znode that changed in between.
	require.LessOrEqual(t, reads, 8.0, "only changed znodes are read (a full read is %d)", znodes)
}

// TestACLsOnServer writes with set_acls and auth_data: every znode the store
// creates carries the configured ACL, a client without the credential is
// refused, and the store itself works (spec/config.md `set_acls`,
// `auth_data`; spec/dcs-layout.md §7).
func TestACLsOnServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	t.Parallel()
	srv := testutil.StartZooKeeper(t)
	hosts := []string{srv.Addr()}
	want := zk.DigestACL(zk.PermAll, "patroni", "s3cret")[0]
	a := openStore(t, hosts, "acl", "a", func(c *Config) {
		c.SetACLs = map[string][]string{"digest:" + want.ID: {"ALL"}}
		c.AuthData = map[string]string{"digest": "patroni:s3cret"}
	})
	ctx := t.Context()
	require.NoError(t, a.TouchMember(ctx, &dcs.Member{Name: "a", State: "running"}))
	require.NoError(t, a.AcquireLeader(ctx))
	_, err := a.SetConfig(ctx, []byte(`{"ttl":30}`), "")
	require.NoError(t, err)
	c, err := a.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", c.Leader.Name)
	require.True(t, c.Config.Valid())

	authed := rawClient(t, hosts)
	require.NoError(t, authed.AddAuth("digest", []byte("patroni:s3cret")))
	for _, p := range []string{"/service", "/service/acl", "/service/acl/leader", "/service/acl/config",
		"/service/acl/members/a"} {
		acl, _, err := authed.GetACL(p)
		require.NoError(t, err)
		require.Equal(t, []zk.ACL{want}, acl, "every created znode carries set_acls (%s)", p)
	}
	_, _, err = rawClient(t, hosts).Get("/service/acl/config")
	require.ErrorIs(t, err, zk.ErrNoAuth, "a client without the credential cannot read")
}
