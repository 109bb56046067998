package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// spec/rest-api.md §7: a peer is reachable with an xlog object; not in
// recovery iff xlog.location or role primary; a replica's position is
// max(received, replayed).
func TestPeerStatus(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name string
		doc  *StatusDocument
		want bool
		rec  bool
		lsn  dcs.LSN
	}{
		{name: "no xlog", doc: &StatusDocument{Role: "replica"}},
		{name: "primary", doc: &StatusDocument{Role: "primary", XLog: &XLog{Location: u(100)}}, want: true, lsn: 100},
		{name: "master without location", doc: &StatusDocument{Role: "master", XLog: &XLog{}}, want: true},
		{name: "replica", doc: &StatusDocument{Role: "replica", XLog: &XLog{ReceivedLocation: u(90), ReplayedLocation: u(95)}}, want: true, rec: true, lsn: 95},
		{name: "replica received ahead", doc: &StatusDocument{Role: "replica", XLog: &XLog{ReceivedLocation: u(99), ReplayedLocation: u(95)}}, want: true, rec: true, lsn: 99},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := peerStatus(tc.doc, nil)
			require.Equal(t, tc.want, ps.Reachable)
			require.Equal(t, tc.rec, ps.InRecovery)
			require.Equal(t, tc.lsn, ps.LSN)
		})
	}
}

// peerEndpoint serves method path with h (anything else is 404) and
// records the Basic auth of each request in auth as "user:password".
func peerEndpoint(t *testing.T, method, path string, auth *atomic.Value, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method || r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		if u, p, ok := r.BasicAuth(); ok {
			auth.Store(u + ":" + p)
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// peerServer answers GET /patroni with doc (nil: 503 with an empty
// object, as a node without Postgres).
func peerServer(t *testing.T, doc any, auth *atomic.Value) *httptest.Server {
	t.Helper()
	return peerEndpoint(t, http.MethodGet, "/patroni", auth, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if doc == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"state":"stopped","role":"replica","dcs_last_seen":0}`))
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
}

// spec/rest-api.md §7, spec/ha-loop.md §5: Probe asks every member with an
// api_url in parallel, with the configured Basic auth, and reads each
// answer; a member without api_url is left out and one that does not
// answer is unreachable.
func TestPeersProbe(t *testing.T) {
	var auth atomic.Value
	u := func(v uint64) *uint64 { return &v }
	primary := peerServer(t, &StatusDocument{State: "running", Role: "primary", Timeline: 3,
		XLog: &XLog{Location: u(0x5000000)}, Tags: map[string]any{"failover_priority": 5}}, &auth)
	replica := peerServer(t, &StatusDocument{State: "running", Role: "replica", Timeline: 3,
		XLog: &XLog{ReceivedLocation: u(0x4000000), ReplayedLocation: u(0x3000000)},
		Tags: map[string]any{"nofailover": true}}, &auth)
	stopped := peerServer(t, nil, &auth)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	p := NewPeers(PeersConfig{Username: "u", Password: "secret"})
	got := p.Probe(t.Context(), []*dcs.Member{
		{Name: "n1", APIURL: primary.URL + "/patroni"},
		{Name: "n2", APIURL: replica.URL + "/patroni"},
		{Name: "n3", APIURL: stopped.URL + "/patroni"},
		{Name: "n4", APIURL: gone.URL + "/patroni"},
		{Name: "n5"},
	})
	require.Equal(t, map[string]ha.PeerStatus{
		"n1": {Reachable: true, Timeline: 3, LSN: 0x5000000, Priority: 5},
		"n2": {Reachable: true, InRecovery: true, Timeline: 3, LSN: 0x4000000, NoFailover: true, Priority: 1},
		"n3": {},
		"n4": {},
	}, got)
	require.Equal(t, "u:secret", auth.Load())
}

// A configured Prober is used instead of the REST client.
func TestPeersProbeWithProber(t *testing.T) {
	p := NewPeers(PeersConfig{Prober: fakeProber{}})
	got := p.Probe(t.Context(), []*dcs.Member{{Name: "patroni3", APIURL: "http://unused/patroni"}})
	require.Equal(t, map[string]ha.PeerStatus{"patroni3": {}}, got)
}

// spec/rest-api.md §6-§7, spec/ha-loop.md §11: the failsafe heartbeat
// goes to every other member of the failsafe key with name, conn_url,
// api_url and slots (absolute LSNs), as Patroni 3.x sends it, and the lsn
// header of each answer comes back by member name.
func TestPeersFailsafe(t *testing.T) {
	var got map[string]any
	var auth atomic.Value
	srv := peerEndpoint(t, http.MethodPost, "/failsafe", &auth, func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("lsn", "50331648")
		_, _ = w.Write([]byte("Accepted"))
	})
	hb := ha.FailsafeHeartbeat{Name: "n1", ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni",
		Slots: map[string]dcs.LSN{"n1": 67419744, "n2": 50331648, "cdc": 1 << 40}}
	pp := NewPeers(PeersConfig{Username: "u", Password: "secret"})
	lsns, ok := pp.Failsafe(t.Context(), dcs.Failsafe{"n1": "http://10.0.0.1:8008/patroni", "n2": srv.URL + "/patroni"}, hb)
	require.True(t, ok)
	require.Equal(t, map[string]dcs.LSN{"n2": 50331648}, lsns)
	require.Equal(t, map[string]any{
		"name": "n1", "conn_url": "postgres://10.0.0.1:5432/postgres", "api_url": "http://10.0.0.1:8008/patroni",
		"slots": map[string]any{"n1": json.Number("67419744"), "n2": json.Number("50331648"), "cdc": json.Number("1099511627776")},
	}, got)
	require.Equal(t, "u:secret", auth.Load())

	// A key without this node fails without calling anybody.
	got = nil
	_, ok = pp.Failsafe(t.Context(), dcs.Failsafe{"n2": srv.URL + "/patroni"}, hb)
	require.False(t, ok)
	require.Nil(t, got)

	// A key naming only this node passes.
	lsns, ok = pp.Failsafe(t.Context(), dcs.Failsafe{"n1": "http://10.0.0.1:8008/patroni"}, hb)
	require.True(t, ok)
	require.Empty(t, lsns)
}

// spec/ha-loop.md §11: a member that does not accept the heartbeat is
// asked once more, then the heartbeat fails.
func TestPeersFailsafeRefused(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	pp := NewPeers(PeersConfig{})
	lsns, ok := pp.Failsafe(t.Context(), dcs.Failsafe{"n1": "http://10.0.0.1:8008/patroni", "n2": srv.URL + "/patroni"},
		ha.FailsafeHeartbeat{Name: "n1"})
	require.False(t, ok)
	require.Empty(t, lsns)
	require.Equal(t, int32(2), calls.Load())
}
