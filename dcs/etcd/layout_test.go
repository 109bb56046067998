package etcd_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestRawLayout writes every key through the Store and reads them back with
// the plain etcd client, comparing against spec/dcs-layout.md §1, §2 and §4:
// the paths, the values (decodable by the dcs codec), and which keys are
// bound to the member's lease.
func TestRawLayout(t *testing.T) {
	skipShort(t)
	e := testutil.StartEmbeddedEtcd(t)
	eps := []string{e.Endpoint()}
	st := openStore(t, eps, "batman", "postgresql0", func(c *etcd.Config) {
		c.Namespace = "/service/"
		c.TTL = 30 * time.Second
	})
	ctx := t.Context()
	lsn := dcs.LSN(67108960)
	tl := 3
	m := &dcs.Member{Name: "postgresql0", ConnURL: "postgres://127.0.0.1:5432/postgres",
		APIURL: "http://127.0.0.1:8008/patroni", State: "running", Role: "primary",
		PatroniVersion: "4.1.4", XLogLocation: &lsn, Timeline: &tl}
	require.NoError(t, st.Initialize(ctx, "", true))
	require.NoError(t, st.Initialize(ctx, "7277694203142172922", false))
	_, err := st.SetConfig(ctx, []byte(`{"ttl":30,"loop_wait":10}`), "")
	require.NoError(t, err)
	require.NoError(t, st.TouchMember(ctx, m))
	require.NoError(t, st.AcquireLeader(ctx))
	status := &dcs.Status{LastLSN: lsn, Slots: map[string]dcs.LSN{"postgresql0": lsn}}
	require.NoError(t, st.UpdateLeader(ctx, dcs.LeaderUpdate{Status: status,
		Failsafe: dcs.Failsafe{"postgresql0": "http://127.0.0.1:8008/patroni"}}))
	_, err = st.SetSync(ctx, &dcs.SyncState{Leader: "postgresql0", Standbys: []string{"postgresql1"}}, "")
	require.NoError(t, err)
	hist := &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 25623960, Reason: "no recovery target specified"}}}
	require.NoError(t, st.SetHistory(ctx, hist))
	_, err = st.SetFailover(ctx, &dcs.Failover{Leader: "postgresql0", Candidate: "postgresql1"}, "")
	require.NoError(t, err)

	raw := rawClient(t, eps)
	resp, err := raw.Get(ctx, "/", clientv3.WithPrefix())
	require.NoError(t, err)
	got := map[string]string{}
	leases := map[string]int64{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
		leases[string(kv.Key)] = kv.Lease
	}
	p := "/service/batman/"
	require.Equal(t, []string{p + "config", p + "failover", p + "failsafe", p + "history", p + "initialize",
		p + "leader", p + "members/postgresql0", p + "status", p + "sync"}, sortedKeys(got), "§1: key set and paths")

	require.Equal(t, "7277694203142172922", got[p+"initialize"], "§2.1: plain decimal string")
	require.Equal(t, "postgresql0", got[p+"leader"], "§2.3: plain member name")
	require.JSONEq(t, `{"ttl":30,"loop_wait":10}`, got[p+"config"])
	require.Equal(t, string(dcs.EncodeMember(m)), got[p+"members/postgresql0"], "§2.4: the codec's member JSON")
	require.True(t, strings.HasPrefix(got[p+"members/postgresql0"], `{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":`),
		"§2.4: compact JSON in emission order")
	require.JSONEq(t, `{"optime":67108960,"slots":{"postgresql0":67108960}}`, got[p+"status"], "§2.5")
	require.JSONEq(t, `{"postgresql0":"http://127.0.0.1:8008/patroni"}`, got[p+"failsafe"], "§2.9")
	require.JSONEq(t, `{"leader":"postgresql0","quorum":0,"sync_standby":"postgresql1"}`, got[p+"sync"], "§2.8")
	require.JSONEq(t, `{"leader":"postgresql0","member":"postgresql1"}`, got[p+"failover"], "§2.7")
	var h [][]any
	require.NoError(t, json.Unmarshal([]byte(got[p+"history"]), &h), "§2.6: a JSON array of lines")
	require.Len(t, h, 1)
	for k, v := range got {
		require.False(t, strings.Contains(v, ": ") || strings.Contains(v, ", "), "§2: compact JSON in %s: %s", k, v)
	}

	// §4: one lease, TTL = ttl, bound to the member key and the leader key
	// only.
	lease := leases[p+"leader"]
	require.NotZero(t, lease, "§2.3: the leader key is bound to a lease")
	require.Equal(t, lease, leases[p+"members/postgresql0"], "§4: one lease per member for member and leader keys")
	for _, k := range []string{"config", "failover", "failsafe", "history", "initialize", "status", "sync"} {
		require.Zero(t, leases[p+k], "§1: %s is not TTL-bound", k)
	}
	ttl, err := raw.TimeToLive(ctx, clientv3.LeaseID(lease))
	require.NoError(t, err)
	require.Equal(t, int64(30), ttl.GrantedTTL, "§4: lease TTL = ttl")

	// What the Store reads back decodes like the codec's golden values.
	c, err := st.Cluster(ctx)
	require.NoError(t, err)
	require.Empty(t, c.Problems)
	require.Equal(t, "postgresql0", c.Leader.Name)
	require.Equal(t, "primary", c.Leader.Member.Role)
	require.Equal(t, lsn, c.Status.LastLSN)
	require.Equal(t, []string{"postgresql1"}, c.Sync.Standbys)
	require.Equal(t, "postgresql1", c.Failover.Candidate)
	require.Equal(t, 2, c.History.Timeline())
	require.True(t, c.Initialize.Valid())
	require.Equal(t, dcs.Version(itoa(resp.Kvs, p+"leader")), c.Leader.Version, "§1: version = mod_revision")

	// Release writes the last status and deletes the leader key in one step.
	require.NoError(t, st.ReleaseLeader(ctx, &dcs.Status{LastLSN: lsn + 1}))
	r2, err := raw.Get(ctx, p+"leader")
	require.NoError(t, err)
	require.Zero(t, r2.Count, "§2.3: release deletes the leader key")
	r3, err := raw.Get(ctx, p+"status")
	require.NoError(t, err)
	require.JSONEq(t, `{"optime":67108961}`, string(r3.Kvs[0].Value), "§2.5: last status on release")

	require.NoError(t, st.DeleteCluster(ctx))
	r4, err := raw.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.Zero(t, r4.Count, "§4: remove cluster deletes the prefix")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
