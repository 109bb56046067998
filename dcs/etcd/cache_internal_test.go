package etcd

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func newCacheStore() *Store {
	return &Store{
		prefix:   "/service/batman/",
		entries:  map[string]entry{},
		log:      slog.New(slog.DiscardHandler),
		changes:  make(chan struct{}, 1),
		progress: make(chan struct{}),
	}
}

func kv(key, value string, mod int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte("/service/batman/" + key), Value: []byte(value), ModRevision: mod}
}

func hdr(rev int64, term uint64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 1, MemberId: 7, Revision: rev, RaftTerm: term}
}

// TestCacheStaleGuard checks the guard against a lagging etcd member
// (spec/dcs-layout.md §4 "A stale etcd node (raft_term going backwards for
// the same cluster_id) is abandoned"): a snapshot older than what the cache
// saw, or a response from an older raft term, is rejected.
func TestCacheStaleGuard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		header  *pb.ResponseHeader
		wantErr bool
	}{
		{"same term newer revision", hdr(20, 3), false},
		{"newer term", hdr(20, 4), false},
		{"older revision", hdr(5, 3), true},
		{"older raft term", hdr(20, 2), true},
		{"other cluster resets the guard", &pb.ResponseHeader{ClusterId: 2, Revision: 1, RaftTerm: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCacheStore()
			_, err := s.resetLocked(&clientv3.GetResponse{Header: hdr(10, 3), Kvs: []*mvccpb.KeyValue{kv("leader", "a", 9)}})
			require.NoError(t, err)
			_, err = s.resetLocked(&clientv3.GetResponse{Header: tc.header})
			if tc.wantErr {
				require.ErrorIs(t, err, errStale)
				require.Equal(t, "a", string(s.entries["leader"].value), "a stale snapshot leaves the cache alone")
				return
			}
			require.NoError(t, err)
		})
	}
}

// TestCacheOrdering checks that the cache only moves forward: events older
// than an entry or than the last snapshot are ignored, deletions leave
// tombstones, and our own writes newer than a snapshot survive it.
func TestCacheOrdering(t *testing.T) {
	s := newCacheStore()
	_, err := s.resetLocked(&clientv3.GetResponse{Header: hdr(10, 1), Kvs: []*mvccpb.KeyValue{kv("leader", "a", 9)}})
	require.NoError(t, err)

	t.Run("old event ignored", func(t *testing.T) {
		ch, err := s.applyEventsLocked(&clientv3.WatchResponse{Header: *hdr(10, 1), Events: []*clientv3.Event{
			{Type: mvccpb.PUT, Kv: kv("leader", "old", 8)},
			{Type: mvccpb.PUT, Kv: kv("config", "{}", 7)},
		}})
		require.NoError(t, err)
		require.False(t, ch)
		require.Equal(t, "a", string(s.entries["leader"].value))
		require.NotContains(t, s.entries, "config", "an event older than the snapshot cannot add a key")
	})
	t.Run("delete leaves a tombstone", func(t *testing.T) {
		ch, err := s.applyEventsLocked(&clientv3.WatchResponse{Header: *hdr(12, 1), Events: []*clientv3.Event{
			{Type: mvccpb.DELETE, Kv: kv("leader", "", 12)},
		}})
		require.NoError(t, err)
		require.True(t, ch, "a leader change wakes the loop")
		require.True(t, s.entries["leader"].deleted)
		require.False(t, s.setLocked("leader", entry{value: []byte("a"), modRev: 11}), "a late put cannot resurrect the key")
		require.True(t, s.entries["leader"].deleted)
	})
	t.Run("own write survives an older snapshot", func(t *testing.T) {
		require.True(t, s.setLocked("leader", entry{value: []byte("b"), modRev: 20}))
		_, err := s.resetLocked(&clientv3.GetResponse{Header: hdr(15, 1)})
		require.NoError(t, err)
		require.Equal(t, "b", string(s.entries["leader"].value))
	})
	t.Run("member change does not wake", func(t *testing.T) {
		ch, err := s.applyEventsLocked(&clientv3.WatchResponse{Header: *hdr(21, 1), Events: []*clientv3.Event{
			{Type: mvccpb.PUT, Kv: kv("members/a", "{}", 21)},
			{Type: mvccpb.PUT, Kv: kv("status", `{"optime":1}`, 21)},
		}})
		require.NoError(t, err)
		require.False(t, ch, "dcs.Store Changes: member and status updates do not wake")
	})
}
