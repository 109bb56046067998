package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// countingStream counts the messages a stream sends that are requests of
// their own: watch progress requests and lease keepalives.
type countingStream struct {
	grpc.ClientStream
	c *counter
}

func (s countingStream) SendMsg(m any) error {
	switch r := m.(type) {
	case *pb.WatchRequest:
		if r.GetProgressRequest() != nil {
			s.c.add("Watch.progress")
		}
	case *pb.LeaseKeepAliveRequest:
		s.c.add("LeaseKeepAlive.send")
	}
	return s.ClientStream.SendMsg(m)
}

// TestRequestsPerHACycle counts the etcd requests a 3-member cluster makes
// per HA cycle (ISSUE 4 acceptance "Steady-state cost"): each member reads
// the cluster and touches its member key; the leader also renews the
// leader key with a new status. Goal: a replica costs 1 write and 0 reads.
func TestRequestsPerHACycle(t *testing.T) {
	skipShort(t)
	const (
		cycles   = 10
		loopWait = 10 * time.Second
	)
	e := testutil.StartEmbeddedEtcd(t)
	for _, tc := range []struct {
		name string
		mode etcd.ReadMode
	}{
		{"synced cache", etcd.ReadSynced},
		{"plain cache", etcd.ReadCache},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := clocktesting.NewFakeClock(time.Now())
			names := []string{"m0", "m1", "m2"}
			stores := map[string]*etcd.Store{}
			counters := map[string]*counter{}
			for _, n := range names {
				c := newCounter()
				opts := append(c.options(), grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
					cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
					s, err := streamer(ctx, desc, cc, method, o...)
					if err != nil {
						return nil, err
					}
					return countingStream{ClientStream: s, c: c}, nil
				}))
				counters[n] = c
				stores[n] = openStore(t, []string{e.Endpoint()}, "cost-"+map[etcd.ReadMode]string{etcd.ReadSynced: "synced", etcd.ReadCache: "plain"}[tc.mode], n, func(cfg *etcd.Config) {
					cfg.TTL = 30 * time.Second
					cfg.Clock = fc
					cfg.ReadMode = tc.mode
					cfg.DialOptions = opts
				})
			}
			ctx := t.Context()
			lsn := dcs.LSN(1000)
			cycle := func() {
				fc.Step(loopWait)
				for _, n := range names {
					st := stores[n]
					_, err := st.Cluster(ctx)
					require.NoError(t, err)
					lsn += 100
					if n == "m0" {
						require.NoError(t, st.UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: lsn}}))
					}
					m := member(n, lsn)
					require.NoError(t, st.TouchMember(ctx, m))
				}
			}
			require.NoError(t, stores["m0"].AcquireLeader(ctx))
			cycle() // warm-up: leases granted, keys created
			for _, c := range counters {
				c.reset()
			}
			for range cycles {
				cycle()
			}
			for _, n := range names {
				got := counters[n].snapshot()
				t.Logf("%s (%s) per %d cycles: %s", n, map[bool]string{true: "leader", false: "replica"}[n == "m0"], cycles, counters[n])
				require.Zero(t, got["Range"], "%s: 0 range requests in steady state", n)
				require.Equal(t, cycles, got["LeaseKeepAlive.send"], "%s: one keepalive per cycle", n)
				wantTxn := cycles // the member key
				if n == "m0" {
					wantTxn = 2 * cycles // + the fenced leader txn with the status
				}
				require.Equal(t, wantTxn, got["Txn"], "%s: writes per cycle", n)
				if tc.mode == etcd.ReadCache {
					require.Zero(t, got["Watch.progress"], "%s: the plain cache costs no request", n)
				} else {
					require.Equal(t, cycles, got["Watch.progress"], "%s: one progress request per read", n)
				}
			}
		})
	}
}

func member(name string, lsn dcs.LSN) *dcs.Member {
	tl := 1
	return &dcs.Member{Name: name, ConnURL: "postgres://127.0.0.1:5432/postgres",
		APIURL: "http://127.0.0.1:8008/patroni", State: "running", Role: "replica",
		PatroniVersion: "4.1.4", XLogLocation: &lsn, Timeline: &tl}
}

// TestSyncedReadOfAnIdleCluster: in the default read mode a Cluster call
// on a cluster nobody has written to since the store opened is served from
// the cache after a progress notification, not after waiting out SyncWait
// and reading the prefix. etcd answers a progress request only once the
// member's revision has reached the watch's start.
func TestSyncedReadOfAnIdleCluster(t *testing.T) {
	skipShort(t)
	e := testutil.StartEmbeddedEtcd(t)
	writer := openStore(t, []string{e.Endpoint()}, "idle", "m0", func(cfg *etcd.Config) { cfg.TTL = time.Minute })
	require.NoError(t, writer.TouchMember(t.Context(), member("m0", 100)))

	c := newCounter()
	reader := openStore(t, []string{e.Endpoint()}, "idle", "m1", func(cfg *etcd.Config) {
		cfg.DialOptions = c.options()
		cfg.SyncWait = 10 * time.Second // a fallback read would show as a 10 s call
	})
	read := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		cl, err := reader.Cluster(ctx)
		require.NoError(t, err)
		require.NotNil(t, cl.Member("m0"))
	}
	// Until its watch is established a new store reads the prefix.
	testutil.SucceedsSoon(t, func() error {
		c.reset()
		read()
		if n := c.snapshot()["Range"]; n > 0 {
			return fmt.Errorf("the read still went to etcd (%d range requests)", n)
		}
		return nil
	})
	for i := range 3 {
		start := time.Now()
		read()
		t.Logf("read %d: %s", i+1, time.Since(start).Round(time.Millisecond))
	}
	require.Zero(t, c.snapshot()["Range"], "reads of an idle cluster come from the synced cache: %s", c)
}
