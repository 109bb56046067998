package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// send sends method path with a JSON body to a node's REST API.
func send(ctx context.Context, n *testutil.DaemonNode, method, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.APIURL()+path, bytes.NewBufferString(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s on %s: %w", method, path, n.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// TestE2ERequests drives the requests the HA loop carries out through the
// REST API of real daemons (spec/ha-loop.md §9.1-9.3, spec/rest-api.md
// POST/DELETE /restart, POST /reinitialize): an immediate restart of a
// replica (new postmaster, streaming again), a scheduled restart shown in
// GET /patroni and cancelled with DELETE /restart, a scheduled restart
// carried out at its time, reinitialize refused on the leader and
// re-cloning a replica that then holds the primary's rows.
func TestE2ERequests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and daemon processes")
	}
	ctx := t.Context()
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{Scope: "e2ereq", Nodes: 2})
	var primary int
	testutil.SucceedsWithin(t, 150*time.Second, func() error {
		var err error
		primary, err = primaryOf(ctx, c, nil)
		return err
	})
	p, r := c.Nodes[primary], c.Nodes[1-primary]
	require.NoError(t, pgExec(ctx, p.PGPort, "CREATE TABLE req(v int); INSERT INTO req VALUES (7)"))
	streaming := func(want func(doc map[string]any) error) func() error {
		return func() error {
			doc, err := r.Patroni(ctx)
			if err != nil {
				return err
			}
			if doc["role"] != "replica" || doc["replication_state"] != "streaming" {
				return fmt.Errorf("%s: role %v state %v replication %v", r.Name, doc["role"], doc["state"], doc["replication_state"])
			}
			if want != nil {
				return want(doc)
			}
			return nil
		}
	}
	var started any
	testutil.SucceedsWithin(t, 30*time.Second, streaming(func(doc map[string]any) error {
		started = doc["postmaster_start_time"]
		return nil
	}))
	restarted := func(doc map[string]any) error {
		if doc["postmaster_start_time"] == started {
			return fmt.Errorf("%s: postmaster still started at %v", r.Name, started)
		}
		return nil
	}

	// §9.1: immediate restart.
	code, body, err := send(ctx, r, http.MethodPost, "/restart", `{}`)
	require.NoError(t, err)
	require.Equal(t, 200, code, body)
	require.Equal(t, "restarted successfully", body)
	testutil.SucceedsWithin(t, 30*time.Second, streaming(restarted))
	doc, err := r.Patroni(ctx)
	require.NoError(t, err)
	started = doc["postmaster_start_time"]

	// §9.2: a scheduled restart is published and can be cancelled.
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, body, err = send(ctx, r, http.MethodPost, "/restart", `{"schedule":"`+at+`"}`)
	require.NoError(t, err)
	require.Equal(t, 202, code, body)
	code, body, err = send(ctx, r, http.MethodPost, "/restart", `{"schedule":"`+at+`"}`)
	require.NoError(t, err)
	require.Equal(t, 409, code, body)
	testutil.SucceedsWithin(t, 10*time.Second, func() error {
		doc, err := r.Patroni(ctx)
		if err != nil {
			return err
		}
		if doc["scheduled_restart"] == nil {
			return fmt.Errorf("GET /patroni does not show the scheduled restart: %v", doc)
		}
		return nil
	})
	code, body, err = send(ctx, r, http.MethodDelete, "/restart", ``)
	require.NoError(t, err)
	require.Equal(t, 200, code, body)
	code, _, err = send(ctx, r, http.MethodDelete, "/restart", ``)
	require.NoError(t, err)
	require.Equal(t, 404, code)

	// §9.2: a scheduled restart runs at its time.
	at = time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	code, body, err = send(ctx, r, http.MethodPost, "/restart", `{"schedule":"`+at+`"}`)
	require.NoError(t, err)
	require.Equal(t, 202, code, body)
	testutil.SucceedsWithin(t, 60*time.Second, streaming(restarted))

	// §9.3: reinitialize is refused on the leader and re-clones a replica.
	code, body, err = send(ctx, p, http.MethodPost, "/reinitialize", `{}`)
	require.NoError(t, err)
	require.Equal(t, 503, code, body)
	require.Contains(t, body, "I am the leader, can not reinitialize")
	require.NoError(t, pgExec(ctx, p.PGPort, "INSERT INTO req VALUES (8)"))
	code, body, err = send(ctx, r, http.MethodPost, "/reinitialize", `{"force":true}`)
	require.NoError(t, err)
	require.Equal(t, 200, code, body)
	testutil.SucceedsWithin(t, 120*time.Second, streaming(func(map[string]any) error {
		n, err := pgCount(ctx, r.PGPort, "SELECT count(*) FROM req")
		if err != nil {
			return err
		}
		if n != 2 {
			return fmt.Errorf("%s has %d rows after reinitialize", r.Name, n)
		}
		return nil
	}))
}
