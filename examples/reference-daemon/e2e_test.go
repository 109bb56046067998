package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

func pgConnect(ctx context.Context, port int) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres connect_timeout=2",
		port, testutil.PGSuperuser, testutil.PGSuperPassword))
}

func pgExec(ctx context.Context, port int, sql string) error {
	c, err := pgConnect(ctx, port)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(context.Background()) }()
	_, err = c.Exec(ctx, sql)
	return err
}

func pgCount(ctx context.Context, port int, sql string) (int, error) {
	c, err := pgConnect(ctx, port)
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close(context.Background()) }()
	var n int
	err = c.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

// primaryOf waits until exactly one node reports role primary and the
// others replica, and returns the primary's index.
func primaryOf(ctx context.Context, c *testutil.DaemonCluster, skip map[int]bool) (int, error) {
	primary := -1
	for i, n := range c.Nodes {
		if skip[i] {
			continue
		}
		doc, err := n.Patroni(ctx)
		if err != nil {
			return -1, err
		}
		switch doc["role"] {
		case "primary":
			if primary >= 0 {
				return -1, fmt.Errorf("two primaries: %s and %s", c.Nodes[primary].Name, n.Name)
			}
			primary = i
		case "replica":
			if doc["replication_state"] != "streaming" {
				return -1, fmt.Errorf("%s is a replica but not streaming: %v", n.Name, doc)
			}
		default:
			return -1, fmt.Errorf("%s has role %v state %v", n.Name, doc["role"], doc["state"])
		}
	}
	if primary < 0 {
		return -1, errors.New("no primary yet")
	}
	return primary, nil
}

// TestE2EBootstrapAndCrashFailover checks acceptance-scenarios "cold
// bootstrap" and "primary crash" with three daemons as processes, real
// PostgreSQL 15 and an embedded etcd: one primary and two streaming
// replicas by GET /patroni, a row written on the primary visible on the
// replicas; then kill -9 of the primary's daemon and postmaster together
// gives a new primary (GET /primary 200) holding the row, and ctl list
// shows it as Leader (spec/patronictl.md §2). The crashed node, started
// again, rejoins as a streaming replica (pg_rewind) with the rows written
// after the crash; ctl switchover refuses an unknown candidate without
// changing anything (spec/patronictl.md §3.3) and switches over to the
// rejoined node. Last, edit-config of max_connections and restart
// --pending apply it on every node.
func TestE2EBootstrapAndCrashFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and daemon processes")
	}
	ctx := t.Context()
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{})

	var primary int
	testutil.SucceedsWithin(t, 150*time.Second, func() error {
		var err error
		primary, err = primaryOf(ctx, c, nil)
		return err
	})
	p := c.Nodes[primary]
	require.NoError(t, pgExec(ctx, p.PGPort, "CREATE TABLE e2e(v int); INSERT INTO e2e VALUES (42)"))

	// Issue 7 acceptance: a second daemon on the same data directory is
	// refused with a clear message and a non-zero exit, and changes nothing.
	second := exec.CommandContext(ctx, c.Bin, p.ConfigPath)
	second.WaitDelay = 5 * time.Second
	out2, err := second.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out2), "in use by another daemon", string(out2))
	code, _, err := p.Get(ctx, "/primary")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	for i, n := range c.Nodes {
		if i == primary {
			continue
		}
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			got, err := pgCount(ctx, n.PGPort, "SELECT count(*) FROM e2e WHERE v = 42")
			if err != nil {
				return err
			}
			if got != 1 {
				return fmt.Errorf("%s has %d rows", n.Name, got)
			}
			return nil
		})
	}
	var out string
	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		// Member keys are published once per loop: wait for the replicas'.
		o, err := c.Ctl(ctx, "list")
		if err != nil {
			return fmt.Errorf("ctl list: %w: %s", err, o)
		}
		if !strings.Contains(o, "| "+p.Name) || strings.Count(o, "| Leader ") != 1 || strings.Count(o, "| streaming ") != 2 {
			return fmt.Errorf("want %s and one Leader and two streaming replicas:\n%s", p.Name, o)
		}
		out = o
		return nil
	})
	t.Logf("ctl list after bootstrap:\n%s", out)

	// Crash: the daemon and the postmaster of the primary together.
	pmPID := p.PostmasterPID()
	require.NotZero(t, pmPID)
	p.Kill()
	p.KillPostmaster()
	killed := time.Now()

	var newPrimary int
	testutil.SucceedsWithin(t, 90*time.Second, func() error {
		for i, n := range c.Nodes {
			if i == primary {
				continue
			}
			if code, _, err := n.Get(ctx, "/primary"); err == nil && code == 200 {
				newPrimary = i
				return nil
			}
		}
		return errors.New("no node answers GET /primary with 200")
	})
	failover := time.Since(killed)
	t.Logf("failover time (kill -9 of daemon+postmaster to GET /primary = 200 on %s): %.1f s (ttl 20, loop_wait 1, retry_timeout 3)",
		c.Nodes[newPrimary].Name, failover.Seconds())
	fmt.Printf("e2e: crash failover time %.1f s\n", failover.Seconds())

	np := c.Nodes[newPrimary]
	got, err := pgCount(ctx, np.PGPort, "SELECT count(*) FROM e2e WHERE v = 42")
	require.NoError(t, err)
	require.Equal(t, 1, got, "the row written before the crash is on the new primary")
	require.NoError(t, pgExec(ctx, np.PGPort, "INSERT INTO e2e VALUES (43)"))

	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		out, err := c.Ctl(ctx, "list")
		if err != nil {
			return fmt.Errorf("ctl list: %w: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "| "+np.Name+" ") {
				if !strings.Contains(l, "| Leader ") {
					return fmt.Errorf("%s is not Leader in ctl list:\n%s", np.Name, out)
				}
				return nil
			}
		}
		return fmt.Errorf("%s missing from ctl list:\n%s", np.Name, out)
	})

	// The old primary rejoins as a replica of the new one.
	p.Start(t)
	testutil.SucceedsWithin(t, 90*time.Second, func() error {
		doc, err := p.Patroni(ctx)
		if err != nil {
			return err
		}
		if doc["role"] != "replica" || doc["replication_state"] != "streaming" {
			return fmt.Errorf("%s: role %v state %v replication %v", p.Name, doc["role"], doc["state"], doc["replication_state"])
		}
		got, err := pgCount(ctx, p.PGPort, "SELECT count(*) FROM e2e WHERE v = 43")
		if err != nil {
			return err
		}
		if got != 1 {
			return fmt.Errorf("%s has not replayed the row written after the crash", p.Name)
		}
		return nil
	})

	// A switchover to a member that does not exist changes nothing.
	out, err = c.Ctl(ctx, "switchover", "--candidate", "nobody", "--force")
	require.Error(t, err)
	require.Contains(t, out, "Error: Member nobody does not exist in cluster e2e or is tagged as nofailover")
	code, _, err = np.Get(ctx, "/primary")
	require.NoError(t, err)
	require.Equal(t, 200, code)

	// Switch back to the rejoined node.
	start := time.Now()
	out, err = c.Ctl(ctx, "switchover", "--candidate", p.Name, "--force")
	took := time.Since(start)
	require.NoError(t, err, out)
	require.Contains(t, out, "Successfully switched over to")
	t.Logf("ctl switchover command time: %.2f s", took.Seconds())
	fmt.Printf("e2e: switchover command time %.2f s\n", took.Seconds())
	testutil.SucceedsWithin(t, 60*time.Second, func() error {
		if code, _, err := p.Get(ctx, "/primary"); err != nil || code != 200 {
			return fmt.Errorf("%s: GET /primary = %d, %v", p.Name, code, err)
		}
		return pgExec(ctx, p.PGPort, "INSERT INTO e2e VALUES (44)")
	})

	// edit-config of a parameter that needs a restart, then restart
	// --pending (issue 7 scenario; spec/patronictl.md §3.5, §3.10).
	out, err = c.Ctl(ctx, "edit-config", "-p", "max_connections=120", "--force")
	require.NoError(t, err, out)
	require.Contains(t, out, "Configuration changed")
	testutil.SucceedsWithin(t, 30*time.Second, func() error {
		for _, n := range c.Nodes {
			doc, err := n.Patroni(ctx)
			if err != nil {
				return err
			}
			if doc["pending_restart"] != true {
				return fmt.Errorf("%s: no pending restart yet", n.Name)
			}
		}
		return nil
	})
	out, err = c.Ctl(ctx, "restart", c.Scope, "--pending", "--force")
	require.NoError(t, err, out)
	require.Equal(t, 3, strings.Count(out, "Success: restart on member"), out)
	for _, n := range c.Nodes {
		testutil.SucceedsWithin(t, 30*time.Second, func() error {
			got, err := pgCount(ctx, n.PGPort, "SELECT current_setting('max_connections')::int")
			if err != nil {
				return err
			}
			if got != 120 {
				return fmt.Errorf("%s: max_connections %d", n.Name, got)
			}
			return nil
		})
	}
}

// waitRunningPrimary waits until n's GET /patroni says role primary and
// state running.
func waitRunningPrimary(ctx context.Context, t *testing.T, n *testutil.DaemonNode, within time.Duration) {
	t.Helper()
	testutil.SucceedsWithin(t, within, func() error {
		doc, err := n.Patroni(ctx)
		if err != nil {
			return err
		}
		if doc["role"] != "primary" || doc["state"] != "running" {
			return fmt.Errorf("%s: role %v state %v", n.Name, doc["role"], doc["state"])
		}
		return nil
	})
}
