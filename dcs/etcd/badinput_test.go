package etcd_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestUnreachable checks the dcs.Store contract "every blocking method
// returns by the context's deadline, with ErrUnavailable if the DCS did not
// answer" against endpoints where nothing listens and a server that stops.
//
// The calls must return by the deadline, not by DialTimeout (10 s) or never;
// slack leaves time for a loaded machine past the deadline.
func TestUnreachable(t *testing.T) {
	skipShort(t)
	const deadline, slack = time.Second, 2 * time.Second
	t.Run("nothing listens", func(t *testing.T) {
		port := testutil.FreePort(t)
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		start := time.Now()
		_, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{"127.0.0.1:" + strconv.Itoa(port)}, Scope: "b", Name: "a",
			Logger: quietLogger(t)})
		took := time.Since(start)
		require.ErrorIs(t, err, dcs.ErrUnavailable)
		require.ErrorContains(t, err, "connection refused", "the probe names the cause")
		require.Less(t, took, deadline+slack, "Open returns by the deadline (+ the 250 ms probe)")
		t.Logf("Open against a closed port: %s: %v", took.Round(time.Millisecond), err)
	})
	t.Run("server stopped", func(t *testing.T) {
		e := testutil.StartEmbeddedEtcd(t)
		st := openStore(t, []string{e.Endpoint()}, "b", "a")
		require.NoError(t, st.TouchMember(t.Context(), member("a", 1)))
		require.NoError(t, st.AcquireLeader(t.Context()))
		e.Stop()
		for _, op := range []struct {
			name string
			fn   func(ctx context.Context) error
		}{
			{"Cluster", func(ctx context.Context) error { _, err := st.Cluster(ctx); return err }},
			{"TouchMember", func(ctx context.Context) error { return st.TouchMember(ctx, member("a", 2)) }},
			{"UpdateLeader", func(ctx context.Context) error { return st.UpdateLeader(ctx, dcs.LeaderUpdate{}) }},
			{"SetConfig", func(ctx context.Context) error { _, err := st.SetConfig(ctx, []byte(`{}`), ""); return err }},
			{"ReleaseLeader", func(ctx context.Context) error { return st.ReleaseLeader(ctx, nil) }},
		} {
			t.Run(op.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), deadline)
				defer cancel()
				start := time.Now()
				err := op.fn(ctx)
				took := time.Since(start)
				require.ErrorIs(t, err, dcs.ErrUnavailable)
				require.Less(t, took, deadline+slack, "returns by the deadline")
				t.Logf("%s returned after %s", op.name, took.Round(time.Millisecond))
			})
		}
	})
}

// TestWrongPassword checks that a rejected password is a clear ErrAuth at
// Open, and that the right one works (spec/dcs-layout.md §4: auth).
func TestWrongPassword(t *testing.T) {
	skipShort(t)
	e := testutil.StartEmbeddedEtcd(t)
	raw := rawClient(t, []string{e.Endpoint()})
	ctx := t.Context()
	_, err := raw.UserAdd(ctx, "root", "s3cret")
	require.NoError(t, err)
	_, err = raw.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = raw.AuthEnable(ctx)
	require.NoError(t, err)

	octx, cancel := context.WithTimeout(ctx, 20*time.Second) // bcrypt is slow under -race
	defer cancel()
	_, err = etcd.Open(octx, etcd.Config{Endpoints: []string{e.Endpoint()}, Scope: "b", Name: "a",
		Username: "root", Password: "wrong", Logger: quietLogger(t)})
	require.ErrorIs(t, err, etcd.ErrAuth)
	require.ErrorContains(t, err, "invalid user ID or password")
	t.Logf("wrong password: %v", err)

	st := openStore(t, []string{e.Endpoint()}, "b", "a", func(c *etcd.Config) {
		c.Username, c.Password = "root", "s3cret"
	})
	require.NoError(t, st.TouchMember(ctx, member("a", 1)))
	require.NoError(t, st.AcquireLeader(ctx))
	c, err := st.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", c.Leader.Name)
}

// TestTLSMismatch checks that speaking TLS to a plain endpoint is reported
// as ErrTLS, not as a bare timeout.
func TestTLSMismatch(t *testing.T) {
	skipShort(t)
	e := testutil.StartEmbeddedEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	https := "https" + e.Endpoint()[len("http"):]
	_, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{https}, Scope: "b", Logger: quietLogger(t)})
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.ErrorIs(t, err, etcd.ErrTLS)
	t.Logf("https to a plain endpoint: %v", err)
}

// TestCorruptedValues checks spec/dcs-layout.md §1: unparsable values
// degrade, are listed in Problems and never make Cluster fail.
func TestCorruptedValues(t *testing.T) {
	skipShort(t)
	e := testutil.StartEmbeddedEtcd(t)
	st := openStore(t, []string{e.Endpoint()}, "b", "a")
	ctx := t.Context()
	require.NoError(t, st.TouchMember(ctx, member("a", 1)))
	for key, value := range map[string]string{
		"members/x": "{not json",
		"config":    "[1,2",
		"sync":      "{\"leader\":",
		"history":   "nope",
	} {
		require.NoError(t, st.PutRaw(ctx, key, []byte(value)))
	}
	for _, mode := range []etcd.ReadMode{etcd.ReadSynced, etcd.ReadConsistent} {
		other := openStore(t, []string{e.Endpoint()}, "b", "", func(c *etcd.Config) { c.ReadMode = mode })
		c, err := other.Cluster(ctx)
		require.NoError(t, err, "bad data never makes Cluster fail")
		require.NotNil(t, c.Member("a"), "good keys still decode")
		require.NotNil(t, c.Member("x"), "§1: bad JSON in members/x gives a member with empty data")
		require.False(t, c.Config.Valid(), "§1: bad config is invalid")
		require.True(t, c.Sync.IsEmpty(), "§1: bad sync gives an empty state")
		require.GreaterOrEqual(t, len(c.Problems), 3)
		for _, p := range c.Problems {
			var de *dcs.DecodeError
			require.True(t, errors.As(p, &de), "problems are *dcs.DecodeError: %v", p)
		}
	}
}
