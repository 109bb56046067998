package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/dcs"
)

// A finished promotion is published as a primary before the status query
// that follows it: GET /primary answers 200 at once, and GET /replica 503.
func TestPromotedStatusAnswersAsPrimary(t *testing.T) {
	now := time.Now()
	lease := now.Add(30 * time.Second)
	replica := &api.Status{Name: "node2", Scope: "anchor", Role: "replica", State: "running", QueryOK: true,
		Timeline: 4, ReceivedLocation: dcs.LSN(0x4000200), ReplayedLocation: dcs.LSN(0x4000100),
		ReplicationState: "streaming", LeaderUntil: lease}

	code := func(st *api.Status, path string) int {
		t.Helper()
		h, err := api.NewHandler(api.Config{Status: api.StatusFunc(func() api.Status { return *st }), Logger: nullLogger()})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	require.Equal(t, http.StatusServiceUnavailable, code(replica, "/primary"), "before: a replica")

	got := promotedStatus(replica, lease, now)
	require.NotNil(t, got)
	require.Equal(t, http.StatusOK, code(got, "/primary"))
	require.Equal(t, http.StatusServiceUnavailable, code(got, "/replica"))
	require.Equal(t, dcs.LSN(0x4000200), got.XLogLocation, "the last WAL it had")
	require.Zero(t, got.ReplayedLocation)
	require.Empty(t, got.ReplicationState)
	require.Equal(t, 4, got.Timeline, "the new timeline comes with the next refresh")
	require.Equal(t, "replica", replica.Role, "the published status is not changed in place")

	require.Nil(t, promotedStatus(replica, now.Add(-time.Second), now), "lease not held")
	require.Nil(t, promotedStatus(nil, lease, now), "nothing published yet")
	down := *replica
	down.QueryOK = false
	require.Nil(t, promotedStatus(&down, lease, now), "Postgres not answering")
}
