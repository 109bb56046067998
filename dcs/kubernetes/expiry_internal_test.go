package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestLocalExpiryFakeClock checks the client-side leader expiry rule on a
// fake clock (spec/dcs-layout.md §8 "Expiry is judged locally"): a reader
// keeps the leader for ttl after it last saw the record change, drops it
// at ttl, and its Changes fires then. client-go's fake clientset has no
// resourceVersions, which this rule does not need.
func TestLocalExpiryFakeClock(t *testing.T) {
	labels := map[string]string{"application": "t", "cluster-name": "batman"}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels}}
	}
	client := fake.NewClientset(pod("m1"), pod("m2"))
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	const ttl = 30 * time.Second
	open := func(name string) *Store {
		st, err := New(Config{Scope: "batman", Name: name, Labels: map[string]string{"application": "t"},
			Client: client, Clock: clk, TTL: ttl, Logger: testutil.Logger(t)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	m1, m2 := open("m1"), open("m2")
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return c
	}
	leaderOf := func(st *Store) string {
		c, err := st.Cluster(ctx())
		require.NoError(t, err)
		if c.Leader == nil {
			return ""
		}
		return c.Leader.Name
	}
	require.Empty(t, leaderOf(m1))
	require.Empty(t, leaderOf(m2))
	require.NoError(t, m1.AcquireLeader(ctx()))
	testutil.SucceedsSoon(t, func() error {
		if l := leaderOf(m2); l != "m1" {
			return fmt.Errorf("m2 sees leader %q", l)
		}
		return nil
	})
	for len(m2.Changes()) > 0 {
		<-m2.Changes()
	}

	clk.Step(ttl - time.Second)
	require.Equal(t, "m1", leaderOf(m2), "§8: alive until ttl after the last change")
	select {
	case <-m2.Changes():
		t.Fatal("Changes fired before the leader expired")
	case <-time.After(100 * time.Millisecond):
	}

	clk.Step(time.Second)
	testutil.SucceedsWithin(t, 5*time.Second, func() error {
		if l := leaderOf(m2); l != "" {
			return fmt.Errorf("m2 still sees leader %q at ttl", l)
		}
		return nil
	})
	select {
	case <-m2.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("§8: Changes did not fire when the leader expired locally")
	}
	err := m1.UpdateLeader(ctx(), dcs.LeaderUpdate{})
	require.True(t, errors.Is(err, dcs.ErrLeaderLost), "the holder's own clock expired it too: %v", err)
}
