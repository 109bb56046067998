package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// End-to-end scenarios of issue 7 beyond bootstrap and crash failover
// (spec/acceptance-scenarios.md): daemons run as processes with real
// PostgreSQL 15 and etcd; every check is what a user would look at (GET
// /patroni roles and timelines, rows on the new primary,
// pg_stat_replication, ctl list output). Timings are printed, not asserted,
// except where the scenario is about not waiting for the ttl.

// e2eTTL is the ttl StartDaemonCluster configures (seconds); loop_wait is 1.
const e2eTTL = 20

// waitHealthy waits until one node outside skip is primary and the others
// stream from an upstream, and returns the primary's index.
func waitHealthy(t *testing.T, c *testutil.DaemonCluster, skip map[int]bool, d time.Duration) int {
	t.Helper()
	var p int
	testutil.SucceedsWithin(t, d, func() error {
		var err error
		p, err = primaryOf(t.Context(), c, skip)
		return err
	})
	return p
}

// waitPrimaryIs waits until node want is the primary and every other node
// outside skip a streaming replica on the same timeline, and returns that
// timeline.
func waitPrimaryIs(t *testing.T, c *testutil.DaemonCluster, want int, skip map[int]bool, d time.Duration) int {
	t.Helper()
	var tl int
	testutil.SucceedsWithin(t, d, func() error {
		p, err := primaryOf(t.Context(), c, skip)
		if err != nil {
			return err
		}
		if p != want {
			return fmt.Errorf("primary is %s, want %s", c.Nodes[p].Name, c.Nodes[want].Name)
		}
		tl = 0
		for i, n := range c.Nodes {
			if skip[i] {
				continue
			}
			got, err := timelineOf(t.Context(), n)
			if err != nil {
				return err
			}
			if tl != 0 && got != tl {
				return fmt.Errorf("%s is on timeline %d, %s on %d", n.Name, got, c.Nodes[want].Name, tl)
			}
			tl = got
		}
		return nil
	})
	return tl
}

// waitNewPrimary waits until a node outside exclude answers GET /primary
// with 200 and returns its index.
func waitNewPrimary(t *testing.T, c *testutil.DaemonCluster, exclude map[int]bool, d time.Duration) int {
	t.Helper()
	np := -1
	testutil.SucceedsWithin(t, d, func() error {
		for i, n := range c.Nodes {
			if exclude[i] {
				continue
			}
			if code, _, err := n.Get(t.Context(), "/primary"); err == nil && code == 200 {
				np = i
				return nil
			}
		}
		return errors.New("no node answers GET /primary with 200")
	})
	return np
}

// timelineOf returns the timeline in the node's GET /patroni.
func timelineOf(ctx context.Context, n *testutil.DaemonNode) (int, error) {
	doc, err := n.Patroni(ctx)
	if err != nil {
		return 0, err
	}
	tl, ok := doc["timeline"].(float64)
	if !ok {
		return 0, fmt.Errorf("%s: no timeline in GET /patroni: %v", n.Name, doc)
	}
	return int(tl), nil
}

// streamingClients lists application_name of the walsenders of the
// Postgres on port that are streaming.
func streamingClients(ctx context.Context, port int) ([]string, error) {
	return pgColumn[string](ctx, port, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")
}

// pgColumn runs query on the Postgres on port and returns its one column.
func pgColumn[T any](ctx context.Context, port int, query string) ([]T, error) {
	c, err := pgConnect(ctx, port)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close(context.Background()) }()
	rows, err := c.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ctlRows parses the rows of a pretty ctl list/topology table into
// member name -> cells (Member, Host, Role, State, TL, ...); topology's
// "+ " indentation is kept in cell 0 and dropped from the key.
func ctlRows(out string) map[string][]string {
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			if i == 0 {
				// Keep topology's indentation: drop only the cell padding.
				cells[i] = strings.TrimRight(strings.TrimPrefix(cells[i], " "), " ")
				continue
			}
			cells[i] = strings.TrimSpace(cells[i])
		}
		name := strings.TrimLeft(cells[0], "+ ")
		if name == "Member" {
			continue
		}
		rows[name] = cells
	}
	return rows
}

// ctlListRole returns the Role column of member name in ctl list.
func ctlListRole(ctx context.Context, c *testutil.DaemonCluster, name string) (string, string, error) {
	out, err := c.Ctl(ctx, "list")
	if err != nil {
		return "", out, fmt.Errorf("ctl list: %w: %s", err, out)
	}
	row, ok := ctlRows(out)[name]
	if !ok || len(row) < 3 {
		return "", out, fmt.Errorf("%s missing from ctl list:\n%s", name, out)
	}
	return row[2], out, nil
}

// requireNoPromotion polls for d that no node in nodes answers GET
// /primary with 200 or reports role primary in GET /patroni.
func requireNoPromotion(t *testing.T, c *testutil.DaemonCluster, nodes []int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, i := range nodes {
			n := c.Nodes[i]
			if code, _, err := n.Get(t.Context(), "/primary"); err == nil && code == 200 {
				t.Fatalf("%s was promoted (GET /primary = 200)", n.Name)
			}
			if doc, err := n.Patroni(t.Context()); err == nil && doc["role"] == "primary" {
				t.Fatalf("%s was promoted (GET /patroni role primary)", n.Name)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// crash kills the daemon and the postmaster of node i together (kill -9).
func crash(t *testing.T, n *testutil.DaemonNode) time.Time {
	t.Helper()
	require.NotZero(t, n.PostmasterPID(), "%s has no postmaster", n.Name)
	n.Kill()
	n.KillPostmaster()
	return time.Now()
}

func others(c *testutil.DaemonCluster, but ...int) []int {
	var out []int
	for i := range c.Nodes {
		if !slices.Contains(but, i) {
			out = append(out, i)
		}
	}
	return out
}

func set(is ...int) map[int]bool {
	m := map[int]bool{}
	for _, i := range is {
		m[i] = true
	}
	return m
}

// figure prints a timing both to the test log and to stdout (so it shows
// in `make test` output without -v).
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf(format, args...)
	fmt.Printf("e2e: "+format+"\n", args...)
}

// ackWriter inserts increasing ids into table acked on one connection and
// records every id whose INSERT returned success (an acknowledged write),
// until the first error or Stop.
type ackWriter struct {
	mu     sync.Mutex
	acked  []int
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

func startAckWriter(t *testing.T, port int) *ackWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	conn, err := pgConnect(ctx, port)
	require.NoError(t, err)
	w := &ackWriter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer func() { _ = conn.Close(context.Background()) }()
		for id := 1; ; id++ {
			if _, err := conn.Exec(ctx, "INSERT INTO acked VALUES ($1)", id); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			w.mu.Lock()
			w.acked = append(w.acked, id)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func (w *ackWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// Stop ends the writer and waits for it; result returns what it recorded.
func (w *ackWriter) Stop() {
	w.cancel()
	<-w.done
}

func (w *ackWriter) result() ([]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked), w.err
}

func ids(ctx context.Context, port int) ([]int, error) {
	return pgColumn[int](ctx, port, "SELECT id FROM acked ORDER BY id")
}

// TestE2ESyncModeCrash checks the issue 7 scenario "kill -9 of the
// primary's daemon and postmaster together, no acknowledged write lost in
// synchronous_mode: on, old node rejoins as replica via pg_rewind"
// (spec/acceptance-scenarios.md §1.5-1.6) on Debian's external etcd. A
// writer records every acknowledged INSERT while the primary is killed;
// the sync standby (GET /sync 200 before the crash) becomes primary on the
// next timeline with every acknowledged row; the old node, started again,
// is a streaming replica on that timeline (GET /patroni,
// pg_stat_replication of the new primary) holding exactly the new
// primary's rows.
func TestE2ESyncModeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, etcd and daemon processes")
	}
	ctx := t.Context()
	etcd := testutil.StartEtcdProcess(t)
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{
		Scope:            "sync",
		EtcdEndpoint:     etcd.Endpoint(),
		BootstrapDCSYAML: "synchronous_mode: on",
	})
	primary := waitHealthy(t, c, nil, 150*time.Second)
	p := c.Nodes[primary]

	// A sync standby is chosen: GET /sync 200 on one replica, Postgres
	// lists it as sync in pg_stat_replication, ctl list as Sync Standby.
	sync := -1
	testutil.SucceedsWithin(t, 60*time.Second, func() error {
		sync = -1
		for _, i := range others(c, primary) {
			if code, _, err := c.Nodes[i].Get(ctx, "/sync"); err == nil && code == 200 {
				sync = i
			}
		}
		if sync < 0 {
			return errors.New("no replica answers GET /sync with 200")
		}
		n, err := pgCount(ctx, p.PGPort, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND application_name = '"+c.Nodes[sync].Name+"'")
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%s is not a sync walsender on the primary yet", c.Nodes[sync].Name)
		}
		role, out, err := ctlListRole(ctx, c, c.Nodes[sync].Name)
		if err != nil {
			return err
		}
		if role != "Sync Standby" {
			return fmt.Errorf("ctl list shows %s as %q:\n%s", c.Nodes[sync].Name, role, out)
		}
		return nil
	})
	tl0, err := timelineOf(ctx, p)
	require.NoError(t, err)
	require.NoError(t, pgExec(ctx, p.PGPort, "CREATE TABLE acked(id int PRIMARY KEY)"))

	w := startAckWriter(t, p.PGPort)
	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		if n := w.count(); n < 200 {
			return fmt.Errorf("writer has %d acknowledged rows", n)
		}
		return nil
	})
	killed := crash(t, p)
	// The writer ends on its own when its backend dies; an INSERT that an
	// orphaned backend acknowledged after the kill would still be counted.
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Log("writer still blocked 30 s after the crash; stopping it")
	}
	w.Stop()
	acked, werr := w.result()
	t.Logf("writer: %d acknowledged rows, ended by: %v", len(acked), werr)

	np := waitNewPrimary(t, c, set(primary), 90*time.Second)
	figure(t, "sync-mode crash failover: %.1f s from kill -9 to GET /primary 200 on %s (ttl 20, loop_wait 1, retry_timeout 3; %d acknowledged rows)",
		time.Since(killed).Seconds(), c.Nodes[np].Name, len(acked))
	require.Equal(t, sync, np, "the sync standby %s must be the one promoted", c.Nodes[sync].Name)
	n := c.Nodes[np]
	got, err := ids(ctx, n.PGPort)
	require.NoError(t, err)
	have := map[int]bool{}
	for _, id := range got {
		have[id] = true
	}
	var lost []int
	for _, id := range acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	require.Empty(t, lost, "acknowledged rows missing on the new primary")
	tl1, err := timelineOf(ctx, n)
	require.NoError(t, err)
	require.Greater(t, tl1, tl0, "the new primary runs on a new timeline")
	require.NoError(t, pgExec(ctx, n.PGPort, "INSERT INTO acked VALUES (1000000)"))

	// The old primary rejoins on the new timeline.
	p.Start(t)
	tl := waitPrimaryIs(t, c, np, nil, 120*time.Second)
	require.Equal(t, tl1, tl)
	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		cl, err := streamingClients(ctx, n.PGPort)
		if err != nil {
			return err
		}
		if !slices.Contains(cl, p.Name) {
			return fmt.Errorf("pg_stat_replication on %s lists %v, not %s", n.Name, cl, p.Name)
		}
		onOld, err := ids(ctx, p.PGPort)
		if err != nil {
			return err
		}
		onNew, err := ids(ctx, n.PGPort)
		if err != nil {
			return err
		}
		if !slices.Equal(onOld, onNew) {
			return fmt.Errorf("%s has %d rows, the new primary %d", p.Name, len(onOld), len(onNew))
		}
		return nil
	})
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "rewind") {
			t.Logf("%s: %s", p.Name, l)
		}
	}
}

// TestE2EManualOperations runs, on one three-node cluster one after the
// other, the issue 7 scenarios that leave the cluster healthy: clean stop
// of the primary (fast handover, spec/acceptance-scenarios.md §16.3),
// ctl switchover --force, scheduled switchover (§10.7), switchover via
// POST /switchover (§10.6), ctl failover --candidate, a kill -9 of the
// primary's postmaster alone (restarted in place), pause/resume with
// the primary crashed while paused (§10.5, ha-loop: no automatic action
// while paused), and ctl reinit of a replica (§10.5).
func TestE2EManualOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and daemon processes")
	}
	ctx := t.Context()
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{Scope: "ops"})
	primary := waitHealthy(t, c, nil, 150*time.Second)
	require.NoError(t, pgExec(ctx, c.Nodes[primary].PGPort, "CREATE TABLE ops(v int)"))
	insertOn := func(t *testing.T, i, v int) {
		t.Helper()
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			return pgExec(ctx, c.Nodes[i].PGPort, fmt.Sprintf("INSERT INTO ops VALUES (%d)", v))
		})
	}
	// hasRow waits until every running node has the row v.
	hasRow := func(t *testing.T, v int, skip map[int]bool) {
		t.Helper()
		for i, n := range c.Nodes {
			if skip[i] {
				continue
			}
			testutil.SucceedsWithin(t, 30*time.Second, func() error {
				got, err := pgCount(ctx, n.PGPort, fmt.Sprintf("SELECT count(*) FROM ops WHERE v = %d", v))
				if err != nil {
					return err
				}
				if got != 1 {
					return fmt.Errorf("%s has %d rows with v = %d", n.Name, got, v)
				}
				return nil
			})
		}
	}
	insertOn(t, primary, 1)

	ok := t.Run("clean stop of the primary hands over without waiting for ttl", func(t *testing.T) {
		old := c.Nodes[primary]
		tl0, err := timelineOf(ctx, old)
		require.NoError(t, err)
		start := time.Now()
		old.Stop(30 * time.Second)
		stopped := time.Since(start)
		require.Zero(t, old.PostmasterPID(), "SIGTERM stops Postgres too")
		np := waitNewPrimary(t, c, set(primary), 60*time.Second)
		took := time.Since(start)
		figure(t, "clean stop (SIGTERM) handover: %.2f s to GET /primary 200 on %s (daemon exited after %.2f s)",
			took.Seconds(), c.Nodes[np].Name, stopped.Seconds())
		// Without releasing the leader key the replicas would wait for it
		// to expire, at least ttl - loop_wait = 19 s after the last renewal.
		require.Less(t, took, time.Duration(e2eTTL/2)*time.Second, "the leader key was not released on SIGTERM")
		insertOn(t, np, 2)
		old.Start(t)
		tl := waitPrimaryIs(t, c, np, nil, 90*time.Second)
		require.Greater(t, tl, tl0)
		hasRow(t, 2, nil)
		primary = np
	})
	if !ok {
		return
	}

	ok = t.Run("ctl switchover --force", func(t *testing.T) {
		cand := others(c, primary)[0]
		start := time.Now()
		out, err := c.Ctl(ctx, "switchover", "--candidate", c.Nodes[cand].Name, "--force")
		took := time.Since(start)
		require.NoError(t, err, out)
		require.Contains(t, out, `Successfully switched over to "`+c.Nodes[cand].Name+`"`)
		figure(t, "ctl switchover --force command time: %.2f s", took.Seconds())
		waitPrimaryIs(t, c, cand, nil, 60*time.Second)
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			role, out, err := ctlListRole(ctx, c, c.Nodes[cand].Name)
			if err != nil {
				return err
			}
			if role != "Leader" {
				return fmt.Errorf("ctl list shows %s as %q:\n%s", c.Nodes[cand].Name, role, out)
			}
			return nil
		})
		insertOn(t, cand, 3)
		hasRow(t, 3, nil)
		primary = cand
	})
	if !ok {
		return
	}

	ok = t.Run("ctl switchover --scheduled", func(t *testing.T) {
		cand := others(c, primary)[0]
		at := time.Now().Add(6 * time.Second).Truncate(time.Second)
		out, err := c.Ctl(ctx, "switchover", "--candidate", c.Nodes[cand].Name,
			"--scheduled", at.Format(time.RFC3339), "--force")
		require.NoError(t, err, out)
		require.Contains(t, out, "Switchover scheduled")
		out, err = c.Ctl(ctx, "list")
		require.NoError(t, err, out)
		if time.Now().Before(at) {
			require.Contains(t, out, "Switchover scheduled at: "+at.Format("2006-01-02T15:04:05-07:00"), out)
			require.Equal(t, "Leader", ctlRows(out)[c.Nodes[primary].Name][2], out)
		}
		var switched time.Time
		testutil.SucceedsWithin(t, 60*time.Second, func() error {
			code, _, err := c.Nodes[cand].Get(ctx, "/primary")
			if err != nil || code != 200 {
				return fmt.Errorf("%s: GET /primary = %d, %v", c.Nodes[cand].Name, code, err)
			}
			switched = time.Now()
			return nil
		})
		require.False(t, switched.Before(at), "switched over at %s, before the scheduled %s", switched, at)
		figure(t, "scheduled switchover: %s primary %.2f s after the scheduled time", c.Nodes[cand].Name, switched.Sub(at).Seconds())
		waitPrimaryIs(t, c, cand, nil, 60*time.Second)
		out, err = c.Ctl(ctx, "list")
		require.NoError(t, err, out)
		require.NotContains(t, out, "Switchover scheduled")
		primary = cand
	})
	if !ok {
		return
	}

	ok = t.Run("POST /switchover", func(t *testing.T) {
		cand := others(c, primary)[1]
		body, _ := json.Marshal(map[string]string{"leader": c.Nodes[primary].Name, "candidate": c.Nodes[cand].Name})
		start := time.Now()
		code, text := post(t, c.Nodes[primary], "/switchover", body)
		took := time.Since(start)
		require.Equal(t, 200, code, text)
		require.Contains(t, text, c.Nodes[cand].Name)
		figure(t, "POST /switchover answered after %.2f s", took.Seconds())
		waitPrimaryIs(t, c, cand, nil, 60*time.Second)
		code, _, err := c.Nodes[primary].Get(ctx, "/replica")
		require.NoError(t, err)
		require.Equal(t, 200, code, "the old primary answers GET /replica")
		insertOn(t, cand, 4)
		hasRow(t, 4, nil)
		primary = cand
	})
	if !ok {
		return
	}

	ok = t.Run("ctl failover --candidate", func(t *testing.T) {
		cand := others(c, primary)[0]
		start := time.Now()
		out, err := c.Ctl(ctx, "failover", "--candidate", c.Nodes[cand].Name, "--force")
		took := time.Since(start)
		require.NoError(t, err, out)
		require.Contains(t, out, `Successfully failed over to "`+c.Nodes[cand].Name+`"`)
		figure(t, "ctl failover --candidate command time: %.2f s", took.Seconds())
		waitPrimaryIs(t, c, cand, nil, 60*time.Second)
		insertOn(t, cand, 5)
		hasRow(t, 5, nil)
		primary = cand
	})
	if !ok {
		return
	}

	ok = t.Run("kill -9 of the primary's postmaster only: restarted in place", func(t *testing.T) {
		n := c.Nodes[primary]
		doc, err := n.Patroni(ctx)
		require.NoError(t, err)
		timeline := doc["timeline"]
		pid := n.PostmasterPID()
		require.NotZero(t, pid, "%s has no postmaster", n.Name)
		killed := time.Now()
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		// While Postgres is down the node must not send writers to itself:
		// GET /primary answers 503 until the postmaster runs again.
		saw503 := false
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			switch code := httpStatus(n.APIURL() + "/primary"); {
			case code == http.StatusServiceUnavailable:
				saw503 = true
			case code == http.StatusOK && saw503:
				return nil
			}
			if p := n.PostmasterPID(); p != 0 && p != pid && !saw503 {
				return nil // back already; the check below fails
			}
			return fmt.Errorf("%s: waiting for GET /primary to go 503 and back to 200", n.Name)
		})
		require.True(t, saw503, "GET /primary on %s never answered 503 while its postmaster was dead", n.Name)
		insertOn(t, primary, 50)
		figure(t, "postmaster-only kill: %s writable again after %.2f s, without a failover", n.Name, time.Since(killed).Seconds())
		require.NotEqual(t, pid, n.PostmasterPID(), "a new postmaster runs")
		doc, err = n.Patroni(ctx)
		require.NoError(t, err)
		require.Equal(t, "primary", doc["role"])
		require.Equal(t, timeline, doc["timeline"], "restarted in place: no promotion, no new timeline")
		for _, i := range others(c, primary) {
			require.NotEqual(t, http.StatusOK, httpStatus(c.Nodes[i].APIURL()+"/primary"), "%s must not have taken over", c.Nodes[i].Name)
		}
		hasRow(t, 50, nil)
	})
	if !ok {
		return
	}

	ok = t.Run("pause: no automatic failover; resume heals", func(t *testing.T) {
		out, err := c.Ctl(ctx, "pause", "--wait")
		require.NoError(t, err, out)
		require.Contains(t, out, "'pause' request sent, waiting until it is recognized by all nodes")
		require.Contains(t, out, "Success: cluster management is paused")
		testutil.SucceedsWithin(t, 10*time.Second, func() error {
			for _, n := range c.Nodes {
				doc, err := n.Patroni(ctx)
				if err != nil {
					return err
				}
				if doc["pause"] != true {
					return fmt.Errorf("%s: GET /patroni has no pause: true", n.Name)
				}
			}
			return nil
		})
		out, err = c.Ctl(ctx, "list")
		require.NoError(t, err, out)
		require.Contains(t, out, " Maintenance mode: on")

		old := c.Nodes[primary]
		crash(t, old)
		rest := others(c, primary)
		// The leader key expires after ttl; paused replicas must not take
		// over even then.
		requireNoPromotion(t, c, rest, time.Duration(e2eTTL+1+3)*time.Second)
		testutil.SucceedsWithin(t, 10*time.Second, func() error {
			out, err := c.Ctl(ctx, "list")
			if err != nil {
				return fmt.Errorf("ctl list: %w: %s", err, out)
			}
			if strings.Contains(out, "| Leader ") {
				return fmt.Errorf("the leader key has not expired yet:\n%s", out)
			}
			return nil
		})
		for _, i := range rest {
			doc, err := c.Nodes[i].Patroni(ctx)
			require.NoError(t, err)
			require.Equal(t, "replica", doc["role"], "%s", c.Nodes[i].Name)
			require.Equal(t, true, doc["pause"], "%s", c.Nodes[i].Name)
		}

		start := time.Now()
		out, err = c.Ctl(ctx, "resume", "--wait")
		require.NoError(t, err, out)
		require.Contains(t, out, "Success: cluster management is resumed")
		np := waitNewPrimary(t, c, set(primary), 60*time.Second)
		figure(t, "after ctl resume --wait, %s primary in %.2f s", c.Nodes[np].Name, time.Since(start).Seconds())
		insertOn(t, np, 6)
		old.Start(t)
		waitPrimaryIs(t, c, np, nil, 90*time.Second)
		hasRow(t, 6, nil)
		for _, n := range c.Nodes {
			doc, err := n.Patroni(ctx)
			require.NoError(t, err)
			require.Nil(t, doc["pause"], "%s still paused", n.Name)
		}
		primary = np
	})
	if !ok {
		return
	}

	t.Run("ctl reinit of a replica", func(t *testing.T) {
		r := c.Nodes[others(c, primary)[0]]
		// A file only the old data directory has: reinit rebuilds it.
		marker := filepath.Join(r.DataDir, "e2e-before-reinit")
		require.NoError(t, os.WriteFile(marker, []byte("x"), 0o644))
		start := time.Now()
		out, err := c.Ctl(ctx, "reinit", c.Scope, r.Name, "--force")
		require.NoError(t, err, out)
		require.Contains(t, out, "Success: reinitialize for member "+r.Name, out)
		testutil.SucceedsWithin(t, 90*time.Second, func() error {
			if _, err := os.Stat(marker); err == nil {
				return fmt.Errorf("%s: the data directory was not rebuilt yet", r.Name)
			}
			doc, err := r.Patroni(ctx)
			if err != nil {
				return err
			}
			if doc["role"] != "replica" || doc["state"] != "running" || doc["replication_state"] != "streaming" {
				return fmt.Errorf("%s: role %v state %v replication %v", r.Name, doc["role"], doc["state"], doc["replication_state"])
			}
			return nil
		})
		figure(t, "ctl reinit: %s streaming again after %.1f s", r.Name, time.Since(start).Seconds())
		waitPrimaryIs(t, c, primary, nil, 30*time.Second)
		insertOn(t, primary, 7)
		hasRow(t, 7, nil)
	})
}

// post sends a JSON POST to the node's REST API and returns the status and
// body.
func post(t *testing.T, n *testutil.DaemonNode, path string, body []byte) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.APIURL()+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// haproxyConfig adapts the sample haproxy.cfg to the test's ports: the
// three server lines of each section point at node i's Postgres and REST
// ports, and the bind ports are replaced. It fails if the sample no longer
// has the expected shape.
func haproxyConfig(t *testing.T, nodes []*testutil.DaemonNode, primaryPort, replicaPort, statsPort int) string {
	t.Helper()
	b, err := os.ReadFile("haproxy.cfg")
	require.NoError(t, err)
	s := string(b)
	for from, to := range map[string]int{"127.0.0.1:5000": primaryPort, "127.0.0.1:5001": replicaPort, "127.0.0.1:7000": statsPort} {
		require.Equal(t, 1, strings.Count(s, "bind "+from), "sample haproxy.cfg binds %s once", from)
		s = strings.Replace(s, "bind "+from, fmt.Sprintf("bind 127.0.0.1:%d", to), 1)
	}
	re := regexp.MustCompile(`(?m)^(\s*)server postgresql(\d) 127\.0\.0\.1:\d+ (.*) check port \d+$`)
	replaced := 0
	s = re.ReplaceAllStringFunc(s, func(line string) string {
		m := re.FindStringSubmatch(line)
		i := int(m[2][0] - '0')
		replaced++
		n := nodes[i]
		return fmt.Sprintf("%sserver %s 127.0.0.1:%d %s check port %d", m[1], n.Name, n.PGPort, m[3], n.APIPort)
	})
	require.Equal(t, 6, replaced, "sample haproxy.cfg has three servers in each of two sections")
	return s
}

// startHAProxy runs Debian's haproxy in the foreground with cfg until the
// test ends.
func startHAProxy(t *testing.T, cfg string) {
	t.Helper()
	bin := testutil.RequireBinary(t, "/usr/sbin/haproxy", "apt-get install haproxy (or run scripts/install-deps.sh)")
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))
	out, err := exec.CommandContext(t.Context(), bin, "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "haproxy -c: %s", out)
	logPath := filepath.Join(dir, "haproxy.log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("==== haproxy log\n%s", b)
		}
	})
}

// writeThrough connects to port (HAProxy's primary port), writes row v and
// returns the port of the Postgres it reached (inet_server_port); a
// replica reached by mistake fails the write.
func writeThrough(ctx context.Context, port, v int) (int, error) {
	c, err := pgConnect(ctx, port)
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close(context.Background()) }()
	if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO topo VALUES (%d)", v)); err != nil {
		return 0, err
	}
	var p int
	err = c.QueryRow(ctx, "SELECT inet_server_port()").Scan(&p)
	return p, err
}

// TestE2ETopology runs the issue 7 scenarios about where nodes replicate
// from and who may promote, on one cluster started in order (node0 first,
// so it is the primary): node2 is tagged nofailover and replicatefrom
// node1 and streams from node1 (pg_stat_replication on node1,
// spec/acceptance-scenarios.md §3); a standby cluster in a second scope
// follows node0 (§16.4); HAProxy with the sample haproxy.cfg routes a real
// client to node0, and after kill -9 of node0 to node1, the only candidate
// (nofailover respected, §12.1); with node1 killed too only the nofailover
// node2 is left and nobody promotes; node1 started again leads.
func TestE2ETopology(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, haproxy and daemon processes")
	}
	ctx := t.Context()
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{
		Scope:   "topo",
		NoStart: true,
		TagsYAML: func(i int) string {
			if i == 2 {
				return "nofailover: true\nreplicatefrom: node1"
			}
			return ""
		},
	})
	c.Nodes[0].Start(t)
	waitHealthy(t, c, set(1, 2), 120*time.Second)
	c.Nodes[1].Start(t)
	c.Nodes[2].Start(t)
	waitPrimaryIs(t, c, 0, nil, 150*time.Second)
	require.NoError(t, pgExec(ctx, c.Nodes[0].PGPort, "CREATE TABLE topo(v int)"))

	t.Run("replicatefrom", func(t *testing.T) {
		testutil.SucceedsWithin(t, 60*time.Second, func() error {
			on1, err := streamingClients(ctx, c.Nodes[1].PGPort)
			if err != nil {
				return err
			}
			on0, err := streamingClients(ctx, c.Nodes[0].PGPort)
			if err != nil {
				return err
			}
			if !slices.Equal(on1, []string{"node2"}) || !slices.Equal(on0, []string{"node1"}) {
				return fmt.Errorf("pg_stat_replication: node0 serves %v, node1 serves %v; want node1 and node2", on0, on1)
			}
			return nil
		})
		out, err := c.Ctl(ctx, "topology")
		require.NoError(t, err, out)
		rows := ctlRows(out)
		require.Equal(t, "+ node1", rows["node1"][0], out)
		require.Equal(t, "  + node2", rows["node2"][0], out)
		t.Logf("ctl topology:\n%s", out)
	})

	t.Run("standby cluster", func(t *testing.T) {
		sc := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{
			Scope:            "topo-standby",
			Nodes:            1,
			EtcdEndpoint:     c.EtcdEndpoint,
			BootstrapDCSYAML: fmt.Sprintf("standby_cluster:\n  host: 127.0.0.1\n  port: %d", c.Nodes[0].PGPort),
		})
		s := sc.Nodes[0]
		require.NoError(t, pgExec(ctx, c.Nodes[0].PGPort, "INSERT INTO topo VALUES (100)"))
		testutil.SucceedsWithin(t, 120*time.Second, func() error {
			code, body, err := s.Get(ctx, "/standby-leader")
			if err != nil || code != 200 {
				return fmt.Errorf("%s: GET /standby-leader = %d %s, %v", s.Name, code, body, err)
			}
			got, err := pgCount(ctx, s.PGPort, "SELECT count(*) FROM topo WHERE v = 100")
			if err != nil {
				return err
			}
			if got != 1 {
				return errors.New("the row written in cluster topo is not on the standby leader yet")
			}
			return nil
		})
		require.NoError(t, pgExec(ctx, c.Nodes[0].PGPort, "INSERT INTO topo VALUES (101)"))
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			got, err := pgCount(ctx, s.PGPort, "SELECT count(*) FROM topo WHERE v = 101")
			if err != nil {
				return err
			}
			if got != 1 {
				return errors.New("a later row is not on the standby leader yet")
			}
			return nil
		})
		code, _, err := s.Get(ctx, "/primary")
		require.NoError(t, err)
		require.Equal(t, 503, code, "a standby leader is not a primary")
		doc, err := s.Patroni(ctx)
		require.NoError(t, err)
		require.Equal(t, "standby_leader", doc["role"])
		require.Equal(t, "streaming", doc["replication_state"])
		on0, err := streamingClients(ctx, c.Nodes[0].PGPort)
		require.NoError(t, err)
		require.Contains(t, on0, s.Name, "the standby leader streams from topo's primary")
		role, out, err := ctlListRole(ctx, sc, s.Name)
		require.NoError(t, err)
		require.Equal(t, "Standby Leader", role, out)

		// ctl promote-cluster: the standby cluster becomes a primary
		// cluster of its own and takes writes.
		out, err = sc.Ctl(ctx, "promote-cluster", "topo-standby", "--force")
		require.NoError(t, err, out)
		require.Contains(t, out, "cluster is successfully promoted", out)
		t.Logf("ctl promote-cluster:\n%s", out)
		code, _, err = s.Get(ctx, "/primary")
		require.NoError(t, err)
		require.Equal(t, 200, code, "the promoted cluster's leader is a primary")
		require.NoError(t, pgExec(ctx, s.PGPort, "INSERT INTO topo VALUES (102)"))
		out, err = sc.Ctl(ctx, "promote-cluster", "topo-standby", "--force")
		require.Error(t, err)
		require.Contains(t, out, "Cluster is already in the required state", out)

		// ctl demote-cluster: a standby cluster again, here replaying from
		// an archive only (its own timeline has left topo's behind).
		out, err = sc.Ctl(ctx, "demote-cluster", "topo-standby", "--force")
		require.Error(t, err, "nothing to follow given")
		require.Contains(t, out, "At least --host, --port or --restore-command should be specified", out)
		out, err = sc.Ctl(ctx, "demote-cluster", "topo-standby", "--restore-command", "false", "--force")
		require.NoError(t, err, out)
		require.Contains(t, out, "cluster is successfully demoted", out)
		t.Logf("ctl demote-cluster:\n%s", out)
		code, _, err = s.Get(ctx, "/standby-leader")
		require.NoError(t, err)
		require.Equal(t, 200, code)
		code, _, err = s.Get(ctx, "/primary")
		require.NoError(t, err)
		require.Equal(t, 503, code)
		require.Error(t, pgExec(ctx, s.PGPort, "INSERT INTO topo VALUES (103)"), "a standby leader is read-only")
		got, err := pgCount(ctx, s.PGPort, "SELECT count(*) FROM topo WHERE v = 102")
		require.NoError(t, err)
		require.Equal(t, 1, got, "the row written while it was a primary is kept")
		s.Stop(30 * time.Second)
	})

	ports := testutil.FreePorts(t, 3)
	startHAProxy(t, haproxyConfig(t, c.Nodes, ports[0], ports[1], ports[2]))
	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		got, err := writeThrough(ctx, ports[0], 1)
		if err != nil {
			return err
		}
		if got != c.Nodes[0].PGPort {
			return fmt.Errorf("haproxy's primary port reached port %d, want node0's %d", got, c.Nodes[0].PGPort)
		}
		return nil
	})

	ok := t.Run("nofailover respected; haproxy follows the failover", func(t *testing.T) {
		killed := crash(t, c.Nodes[0])
		np := waitNewPrimary(t, c, set(0), 90*time.Second)
		promoted := time.Since(killed)
		require.Equal(t, 1, np, "node2 is tagged nofailover")
		var routed time.Duration
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			got, err := writeThrough(ctx, ports[0], 2)
			if err != nil {
				return err
			}
			if got != c.Nodes[1].PGPort {
				return fmt.Errorf("haproxy's primary port reached port %d, want node1's %d", got, c.Nodes[1].PGPort)
			}
			routed = time.Since(killed)
			return nil
		})
		figure(t, "crash failover with a nofailover replica: node1 primary %.1f s after kill -9, first write through haproxy at %.1f s",
			promoted.Seconds(), routed.Seconds())
		waitPrimaryIs(t, c, 1, set(0), 60*time.Second)
		on1, err := streamingClients(ctx, c.Nodes[1].PGPort)
		require.NoError(t, err)
		require.Equal(t, []string{"node2"}, on1)
	})
	if !ok {
		return
	}

	t.Run("only a nofailover replica left: nobody promotes", func(t *testing.T) {
		crash(t, c.Nodes[1])
		requireNoPromotion(t, c, []int{2}, time.Duration(e2eTTL+1+3)*time.Second)
		doc, err := c.Nodes[2].Patroni(ctx)
		require.NoError(t, err)
		require.Equal(t, "replica", doc["role"])
		_, err = writeThrough(ctx, ports[0], 3)
		require.Error(t, err, "haproxy must not route writes to the nofailover replica")

		c.Nodes[1].Start(t)
		start := time.Now()
		waitPrimaryIs(t, c, 1, set(0), 90*time.Second)
		figure(t, "node1 restarted after a crash leads again after %.1f s", time.Since(start).Seconds())
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			got, err := writeThrough(ctx, ports[0], 4)
			if err != nil {
				return err
			}
			if got != c.Nodes[1].PGPort {
				return fmt.Errorf("haproxy's primary port reached port %d, want node1's %d", got, c.Nodes[1].PGPort)
			}
			return nil
		})
	})
}
