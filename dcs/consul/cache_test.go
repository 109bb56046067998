package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// store.go Changes: only the leader, failover, config, sync and initialize
// keys wake the loop; member and status updates do not.
func TestRelevantChange(t *testing.T) {
	snap := func(pairs ...*api.KVPair) *snapshot {
		s := &snapshot{pairs: map[string]*api.KVPair{}}
		for _, p := range pairs {
			s.pairs[p.Key] = p
		}
		return s
	}
	kv := func(key string, idx uint64, session string) *api.KVPair {
		return &api.KVPair{Key: key, ModifyIndex: idx, Session: session, Value: []byte("v")}
	}
	base := snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 7, ""))
	cases := []struct {
		name       string
		prev, next *snapshot
		want       bool
	}{
		{"first snapshot", nil, base, true},
		{"nothing changed", base, base, false},
		{"member update", base, snap(kv("leader", 5, "s1"), kv("members/a", 9, "s1"), kv("status", 7, "")), false},
		{"status update", base, snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 9, "")), false},
		{"leader gone", base, snap(kv("members/a", 6, "s1"), kv("status", 7, "")), true},
		{"leader taken over", base, snap(kv("leader", 9, "s2"), kv("members/a", 6, "s1"), kv("status", 7, "")), true},
		{"failover written", base, snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 7, ""), kv("failover", 8, "")), true},
		{"config written", base, snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 7, ""), kv("config", 8, "")), true},
		{"sync written", base, snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 7, ""), kv("sync", 8, "")), true},
		{"initialize written", base, snap(kv("leader", 5, "s1"), kv("members/a", 6, "s1"), kv("status", 7, ""), kv("initialize", 8, "")), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, relevantChange(tc.prev, tc.next))
		})
	}
}

// store.go: backends retry transient errors inside the deadline and map
// everything else to the sentinels at the edge.
func TestRetryableAndMapping(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name  string
		err   error
		read  bool
		retry bool
	}{
		{"refused write", fmt.Errorf("put: %w", dial), false, true},
		{"no leader write", api.StatusError{Code: 500, Body: "No cluster leader"}, false, true},
		{"server error read", api.StatusError{Code: 500, Body: "rpc error"}, true, true},
		{"server error write", api.StatusError{Code: 500, Body: "rpc error"}, false, false},
		{"acl denied", api.StatusError{Code: 403, Body: "Permission denied"}, true, false},
		{"reset read", errors.New("read: connection reset by peer"), true, true},
		{"reset write", errors.New("read: connection reset by peer"), false, false},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.retry, retryable(tc.err, tc.read))
		})
	}

	err := unavailable("read cluster", dial)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.ErrorAs(t, err, new(*net.OpError), "the cause is kept")
	err = unavailable("set config", fmt.Errorf("%w: changed", dcs.ErrConflict))
	require.ErrorIs(t, err, dcs.ErrConflict)
	require.NotErrorIs(t, err, dcs.ErrUnavailable)
}

// spec/dcs-layout.md §1: versions are Consul ModifyIndexes.
func TestParseVersion(t *testing.T) {
	n, err := parseVersion(version(42))
	require.NoError(t, err)
	require.Equal(t, uint64(42), n)
	_, err = parseVersion("abc")
	require.ErrorIs(t, err, dcs.ErrConflict)
}
