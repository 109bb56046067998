package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestDemo runs what `DEMO_EXIT=1 make demo` runs: `reference-daemon demo`
// on the sample configurations, with only their ports moved to free ones.
// A user expects three nodes on the embedded DCS, a `ctl list` with a
// leader, a failover after the primary is killed, the old primary back as a
// replica, and exit status 0.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	bin := testutil.DaemonBinary(t)
	dir := t.TempDir()
	// The samples' ports: PostgreSQL, REST API, raft (embedded etcd; its
	// client port is the raft port + 10000).
	old := []int{5432, 5433, 5434, 8000, 8001, 8002, 2222, 2223, 2224}
	fresh := testutil.FreePortPairs(t, len(old), 10000)
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("postgres%d.yml", i)
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("sample configuration: %v", err)
		}
		s := string(b)
		for j, p := range old {
			s = strings.ReplaceAll(s, fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", fresh[j]))
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", dir)
	// The demo keeps its data under TMPDIR; keep it in the test's temp dir.
	cmd.Env = append(os.Environ(), "DEMO_EXIT=1", "TMPDIR="+testutil.PGTempDir(t))
	// On a timeout, ask the demo to stop its cluster (it handles SIGINT)
	// instead of killing it and orphaning the daemons.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = time.Minute
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("demo took %.1f s; output:\n%s", time.Since(start).Seconds(), out)
	t.Cleanup(func() {
		if t.Failed() { // the demo's logs, before its directory goes
			logDemoNodes(t, string(out))
		}
	})
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	text := string(out)
	for _, want := range []string{
		"demo: waiting for the cluster to bootstrap",
		"| Leader",
		"(daemon and postmaster, kill -9)",
		"demo: new primary after",
		"rejoins as a replica",
		"demo: stopping the cluster",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// The last `ctl list` (after the rejoin) shows a leader and two
	// streaming replicas.
	last := text[strings.LastIndex(text, "rejoins as a replica"):]
	if n := strings.Count(last, "| Replica"); n != 2 || !strings.Contains(last, "| Leader") {
		t.Errorf("after the rejoin, ctl list should show one leader and two replicas:\n%s", last)
	}
	if n := strings.Count(last, "streaming"); n != 2 {
		t.Errorf("after the rejoin, both replicas should be streaming (found %d):\n%s", n, last)
	}
	// The killed primary is one of them, on a later timeline than 1.
	var killed string
	if _, err := fmt.Sscanf(text[strings.Index(text, "demo: killing "):], "demo: killing %s", &killed); err != nil {
		t.Fatalf("which member was killed: %v", err)
	}
	found := false
	for _, line := range strings.Split(last, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 6 || strings.TrimSpace(f[1]) != killed {
			continue
		}
		found = true
		if role, state, tl := strings.TrimSpace(f[3]), strings.TrimSpace(f[4]), strings.TrimSpace(f[5]); role != "Replica" || state != "streaming" || tl == "1" {
			t.Errorf("old primary %s after the rejoin: role %q state %q timeline %q, want a streaming replica on the new timeline", killed, role, state, tl)
		}
	}
	if !found {
		t.Errorf("old primary %s missing from the last ctl list:\n%s", killed, last)
	}
}

// logDemoNodes logs the end of each demo node's log, found through the
// directory the demo printed.
func logDemoNodes(t *testing.T, out string) {
	const marker = "demo: data and logs in "
	i := strings.Index(out, marker)
	if i < 0 {
		return
	}
	dir, _, _ := strings.Cut(out[i+len(marker):], "\n")
	logs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(dir), "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("==== %s (last 80 lines)\n%s", l, strings.Join(lines[max(0, len(lines)-80):], "\n"))
	}
}
