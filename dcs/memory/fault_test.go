package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/memory"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// newServer returns a server on a fresh fake clock.
func newServer(t *testing.T, cfg memory.ServerConfig) (*memory.Server, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(epoch)
	cfg.Clock = clk
	cfg.Logger = testutil.Logger(t)
	return memory.NewServer(cfg), clk
}

func client(t *testing.T, srv *memory.Server, scope, name string) *memory.Store {
	st := srv.Client(memory.ClientConfig{Scope: scope, Name: name, TTL: testTTL})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// everyCall makes each kind of call once through st and returns the errors
// by method name.
func everyCall(ctx context.Context, st *memory.Store, name string) map[string]error {
	errs := map[string]error{}
	_, errs["Cluster"] = st.Cluster(ctx)
	errs["TouchMember"] = st.TouchMember(ctx, &dcs.Member{Name: name, State: "running"})
	errs["AcquireLeader"] = st.AcquireLeader(ctx)
	errs["UpdateLeader"] = st.UpdateLeader(ctx, dcs.LeaderUpdate{})
	_, errs["SetConfig"] = st.SetConfig(ctx, []byte(`{}`), "")
	_, errs["SetFailover"] = st.SetFailover(ctx, nil, "")
	errs["Initialize"] = st.Initialize(ctx, "", false)
	errs["PutRaw"] = st.PutRaw(ctx, "status", []byte(`{}`))
	errs["DeleteCluster"] = st.DeleteCluster(ctx)
	return errs
}

// Tests: ARCHITECTURE.md "Tests: tiers" (fault schedules over dcs/memory);
// store.go ErrUnavailable ("could not be reached").
func TestPartition(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	m1, m2 := client(t, srv, "c", "m1"), client(t, srv, "c", "m2")
	require.NoError(t, m1.TouchMember(t.Context(), &dcs.Member{Name: "m1"}))
	require.NoError(t, m1.AcquireLeader(t.Context()))
	ch := m1.Changes()
	<-ch // own acquisition

	srv.Partition("m1", true)
	for name, err := range everyCall(t.Context(), m1, "m1") {
		require.ErrorIs(t, err, dcs.ErrUnavailable, "%s while partitioned", name)
	}
	// The others still work, and see the partitioned leader expire.
	c, err := m2.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, "m1", c.Leader.Name)
	clk.Step(testTTL)
	require.NoError(t, m2.AcquireLeader(t.Context()), "m1's lease expired during the partition")
	select {
	case <-ch:
		t.Fatal("a partitioned store must not be notified")
	default:
	}

	srv.Partition("m1", false)
	select {
	case <-ch:
	default:
		t.Fatal("healing a partition wakes the store")
	}
	require.ErrorIs(t, m1.UpdateLeader(t.Context(), dcs.LeaderUpdate{}), dcs.ErrLeaderLost)
	c, err = m1.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, "m2", c.Leader.Name)
	require.Nil(t, c.Member("m1"))
}

// Tests: store.go ErrUnavailable ("did not answer before the context's
// deadline") with ServerConfig.PartitionBlocks.
func TestPartitionBlocks(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, memory.ServerConfig{PartitionBlocks: true})
	m1 := client(t, srv, "c", "m1")
	srv.Partition("m1", true)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m1.Cluster(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "blocks until the deadline")
}

// Tests: a whole-DCS outage (ARCHITECTURE.md "Tests: tiers"; ha-loop
// "DCS unavailable" path).
func TestOutage(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	m1, m2 := client(t, srv, "c", "m1"), client(t, srv, "c", "m2")
	require.NoError(t, m1.AcquireLeader(t.Context()))
	ch := m2.Changes()
	<-ch

	srv.SetAvailable(false)
	for i, st := range []*memory.Store{m1, m2} {
		for name, err := range everyCall(t.Context(), st, []string{"m1", "m2"}[i]) {
			require.ErrorIs(t, err, dcs.ErrUnavailable, "%s during an outage", name)
		}
	}
	clk.Step(testTTL) // leases keep running
	srv.ExpireLeases()
	select {
	case <-ch:
		t.Fatal("nothing is delivered during an outage")
	default:
	}
	srv.SetAvailable(true)
	<-ch // woken when the outage ends
	c, err := m2.Cluster(t.Context())
	require.NoError(t, err)
	require.False(t, c.IsLocked(), "the leader key expired during the outage")
}

// Tests: SetDelay takes the delay on the server's clock and honours ctx.
func TestDelay(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	m1, m2 := client(t, srv, "c", "m1"), client(t, srv, "c", "m2")
	srv.SetDelay("m1", 2*time.Second)

	t.Run("completes after the delay", func(t *testing.T) {
		var wg sync.WaitGroup
		var err error
		wg.Go(func() { err = m1.AcquireLeader(t.Context()) })
		testutil.SucceedsSoon(t, func() error {
			if clk.Waiters() == 0 {
				return context.DeadlineExceeded // the call has not started waiting yet
			}
			return nil
		})
		c, cerr := m2.Cluster(t.Context())
		require.NoError(t, cerr)
		require.False(t, c.IsLocked(), "not applied before the delay")
		clk.Step(2 * time.Second)
		wg.Wait()
		require.NoError(t, err)
		c, cerr = m2.Cluster(t.Context())
		require.NoError(t, cerr)
		require.Equal(t, "m1", c.Leader.Name)
		// The lease was refreshed when the call was applied, 2s late.
		clk.Step(testTTL - time.Millisecond)
		c, cerr = m2.Cluster(t.Context())
		require.NoError(t, cerr)
		require.True(t, c.IsLocked())
	})

	t.Run("context ends first", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		_, err := m1.SetConfig(ctx, []byte(`{"ttl":30}`), "")
		require.ErrorIs(t, err, dcs.ErrUnavailable)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		c, cerr := m2.Cluster(t.Context())
		require.NoError(t, cerr)
		require.Nil(t, c.Config, "a call abandoned during its delay is not applied")
		require.Zero(t, clk.Waiters(), "the abandoned delay timer is stopped")
	})

	t.Run("removed", func(t *testing.T) {
		srv.SetDelay("m1", 0)
		_, err := m1.Cluster(t.Context())
		require.NoError(t, err)
	})
}

// Tests: Run delivers an expiry notification at the lease deadline, not
// before (store.go Changes; spec/dcs-layout.md §10.2, §10.6).
func TestRunExpiresAtDeadline(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	runServer(t, srv)
	m1, w := client(t, srv, "c", "m1"), client(t, srv, "c", "w")
	require.NoError(t, m1.AcquireLeader(t.Context()))
	<-w.Changes()

	clk.Step(testTTL - time.Millisecond)
	select {
	case <-w.Changes():
		t.Fatal("woken before the deadline")
	case <-time.After(20 * time.Millisecond):
	}
	clk.Step(time.Millisecond)
	select {
	case <-w.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not deliver the expiry")
	}
}

// Tests: stores of other scopes and namespaces do not see each other
// (spec/dcs-layout.md §1 paths).
func TestScopesAndNamespaces(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, memory.ServerConfig{})
	a := srv.Client(memory.ClientConfig{Scope: "batman", Name: "m1"})
	sameA := srv.Client(memory.ClientConfig{Scope: "batman", Namespace: "//service/", Name: "m2"})
	otherScope := srv.Client(memory.ClientConfig{Scope: "robin", Name: "m1"})
	otherNS := srv.Client(memory.ClientConfig{Scope: "batman", Namespace: "prod", Name: "m1"})
	for _, st := range []*memory.Store{a, sameA, otherScope, otherNS} {
		defer st.Close()
	}
	require.NoError(t, a.AcquireLeader(t.Context()))
	c, err := sameA.Cluster(t.Context())
	require.NoError(t, err)
	require.Equal(t, "m1", c.Leader.Name, `namespace "//service/" is "service"`)
	for _, st := range []*memory.Store{otherScope, otherNS} {
		c, err := st.Cluster(t.Context())
		require.NoError(t, err)
		require.False(t, c.IsLocked())
		require.NoError(t, st.AcquireLeader(t.Context()))
	}
}

// Tests: sessions are exposed as Leader.Session and Member.Session and
// change when a lease is re-granted after expiry (spec/dcs-layout.md §4:
// "If the lease is lost ... the next touch re-creates it").
func TestSessions(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	m1 := client(t, srv, "c", "m1")
	require.NoError(t, m1.TouchMember(t.Context(), &dcs.Member{Name: "m1"}))
	require.NoError(t, m1.AcquireLeader(t.Context()))
	c, err := m1.Cluster(t.Context())
	require.NoError(t, err)
	first := c.Leader.Session
	require.NotEmpty(t, first)
	require.Equal(t, first, c.Member("m1").Session)

	clk.Step(testTTL)
	require.NoError(t, m1.TouchMember(t.Context(), &dcs.Member{Name: "m1"}))
	c, err = m1.Cluster(t.Context())
	require.NoError(t, err)
	require.NotEqual(t, first, c.Member("m1").Session, "a new lease after expiry")
}

// Tests: model.go Cluster ("a fresh one on every call ... never mutates it
// afterwards") with the snapshot shared between reads without a change.
func TestSnapshotSharing(t *testing.T) {
	t.Parallel()
	srv, clk := newServer(t, memory.ServerConfig{})
	m1, m2 := client(t, srv, "c", "m1"), client(t, srv, "c", "m2")
	require.NoError(t, m1.TouchMember(t.Context(), &dcs.Member{Name: "m1", State: "running"}))
	require.NoError(t, m1.AcquireLeader(t.Context()))

	a, err := m1.Cluster(t.Context())
	require.NoError(t, err)
	b, err := m2.Cluster(t.Context())
	require.NoError(t, err)
	require.NotSame(t, a, b, "every call returns a fresh Cluster")
	require.Equal(t, a, b)
	a.Members = append(a.Members, &dcs.Member{Name: "appended"})
	b.Members = append(b.Members, &dcs.Member{Name: "other"})
	require.Equal(t, "appended", a.Members[1].Name, "appends do not clobber each other")
	c, err := m2.Cluster(t.Context())
	require.NoError(t, err)
	require.Len(t, c.Members, 1, "a caller's append does not reach later reads")

	require.NoError(t, m2.TouchMember(t.Context(), &dcs.Member{Name: "m2"}))
	c, err = m2.Cluster(t.Context())
	require.NoError(t, err)
	require.Len(t, c.Members, 2, "a write invalidates the shared snapshot")
	clk.Step(testTTL)
	c, err = m2.Cluster(t.Context())
	require.NoError(t, err)
	require.Empty(t, c.Members, "expiry invalidates the shared snapshot")
	require.False(t, c.IsLocked())
}
