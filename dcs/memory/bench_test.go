package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/memory"
)

// BenchmarkHACycle measures one HA loop cycle of a three-member cluster:
// each member reads the cluster and touches its key, the leader renews
// with a status, and the clock moves on. The HA simulation runs hundreds
// of thousands of these.
func BenchmarkHACycle(b *testing.B) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(epoch)
	srv := memory.NewServer(memory.ServerConfig{Clock: clk})
	var stores []*memory.Store
	var members []*dcs.Member
	for i := range 3 {
		name := fmt.Sprintf("m%d", i+1)
		stores = append(stores, srv.Client(memory.ClientConfig{Scope: "sim", Name: name, TTL: 30 * time.Second}))
		lsn, tl := dcs.LSN(1000), 1
		members = append(members, &dcs.Member{Name: name, ConnURL: "postgres://127.0.0.1:5432/postgres",
			APIURL: "http://127.0.0.1:8008/patroni", State: "running", Role: "replica", PatroniVersion: "4.1.4",
			XLogLocation: &lsn, Timeline: &tl})
	}
	if err := stores[0].AcquireLeader(ctx); err != nil {
		b.Fatal(err)
	}
	_, _ = stores[0].SetConfig(ctx, []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10}`), "")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j, st := range stores {
			if _, err := st.Cluster(ctx); err != nil {
				b.Fatal(err)
			}
			lsn := dcs.LSN(1000 + i)
			members[j].XLogLocation = &lsn
			if err := st.TouchMember(ctx, members[j]); err != nil {
				b.Fatal(err)
			}
		}
		if err := stores[0].UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: dcs.LSN(1000 + i)}}); err != nil {
			b.Fatal(err)
		}
		clk.Step(time.Second)
	}
}

// benchCluster returns a store of a three-member cluster with a leader,
// config, status and history, as a simulation step sees it.
func benchCluster(b *testing.B) (*memory.Store, *dcs.Member) {
	ctx := context.Background()
	srv := memory.NewServer(memory.ServerConfig{Clock: clocktesting.NewFakeClock(epoch)})
	var first *memory.Store
	var m *dcs.Member
	for i := range 3 {
		name := fmt.Sprintf("m%d", i+1)
		st := srv.Client(memory.ClientConfig{Scope: "sim", Name: name})
		lsn, tl := dcs.LSN(1000), 1
		m = &dcs.Member{Name: name, ConnURL: "postgres://127.0.0.1:5432/postgres",
			APIURL: "http://127.0.0.1:8008/patroni", State: "running", Role: "replica", PatroniVersion: "4.1.4",
			XLogLocation: &lsn, Timeline: &tl}
		if err := st.TouchMember(ctx, m); err != nil {
			b.Fatal(err)
		}
		if first == nil {
			first = st
		}
	}
	if err := first.AcquireLeader(ctx); err != nil {
		b.Fatal(err)
	}
	_, _ = first.SetConfig(ctx, []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10}`), "")
	_ = first.UpdateLeader(ctx, dcs.LeaderUpdate{Status: &dcs.Status{LastLSN: 1000}})
	_ = first.SetHistory(ctx, &dcs.TimelineHistory{})
	_ = first.Initialize(ctx, "7277694203142172922", true)
	return first, m
}

// BenchmarkCluster measures one snapshot read (dominated by decoding in
// dcs.BuildCluster).
func BenchmarkCluster(b *testing.B) {
	st, _ := benchCluster(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Cluster(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTouchMember measures one member write with a changed value.
func BenchmarkTouchMember(b *testing.B) {
	st, _ := benchCluster(b)
	lsn, tl := dcs.LSN(1000), 1
	m := &dcs.Member{Name: "m1", State: "running", Role: "primary", XLogLocation: &lsn, Timeline: &tl}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l := dcs.LSN(i)
		m.XLogLocation = &l
		if err := st.TouchMember(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
}
