package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// Issue 7 acceptance, "bad input": the built binary is run as a user runs
// it. Each case checks the message a user reads, a non-zero exit and that
// nothing was created or written.

// binResult is the outcome of one run of the daemon binary.
type binResult struct {
	code   int
	output string
}

// runBin runs the daemon binary with args and extra environment variables
// (KEY=VALUE, appended to a copy of this process's environment) and waits
// up to a minute.
func runBin(t *testing.T, env []string, args ...string) binResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.DaemonBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	res := binResult{output: string(out)}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v\n%s", args, err, out)
	}
	t.Logf("reference-daemon %s: exit %d\n%s", strings.Join(args, " "), res.code, out)
	return res
}

// nodeYAML is a complete, valid node configuration whose DCS section is
// dcsYAML. Its REST API and Postgres ports are free loopback ports and its
// data directory is dir/data (not created).
func nodeYAML(t *testing.T, dir, dcsYAML string) string {
	ports := testutil.FreePorts(t, 2)
	return fmt.Sprintf(`scope: batman
name: node0
restapi:
  listen: 127.0.0.1:%[1]d
  connect_address: 127.0.0.1:%[1]d
%[3]s
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
postgresql:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
  data_dir: %[4]s
  authentication:
    superuser: {username: postgres, password: x}
    replication: {username: replicator, password: y}
watchdog:
  mode: "off"
`, ports[0], ports[1], dcsYAML, filepath.Join(dir, "data"))
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// Missing file, bad YAML, impossible values and missing Kubernetes
// credentials end the daemon at once with exit code 1, a message naming
// the problem, and nothing created next to the configuration.
func TestDaemonRefusesBadConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	home := t.TempDir() // no ~/.kube/config
	noKube := []string{"HOME=" + home, "KUBECONFIG=" + filepath.Join(home, "no-such-kubeconfig"), "KUBERNETES_SERVICE_HOST="}
	tests := []struct {
		name string
		// file returns the configuration text; "" means no file.
		file func(t *testing.T, dir string) string
		env  []string
		want []string
	}{
		{
			name: "missing file",
			want: []string{"Error: config file ", "node.yml does not exist", "generate-config"},
		},
		{
			name: "bad YAML",
			file: func(t *testing.T, dir string) string {
				return "scope: batman\nname: node0\nrestapi:\n\tlisten: 127.0.0.1:8008\n"
			},
			want: []string{"Error: config: ", "node.yml: yaml: line 4: "},
		},
		{
			name: "impossible timing",
			file: func(t *testing.T, dir string) string {
				return strings.Replace(nodeYAML(t, dir, "etcd3: {host: '127.0.0.1:2379'}"), "ttl: 10", "ttl: 0", 1)
			},
			want: []string{"is invalid", "bootstrap.dcs.ttl", "must be an integer >= 3"},
		},
		{
			name: "kubernetes without credentials",
			file: func(t *testing.T, dir string) string {
				return nodeYAML(t, dir, "kubernetes:\n  labels: {application: pgwarden-test}\n")
			},
			env:  noKube,
			want: []string{"no API server credentials", "KUBERNETES_SERVICE_HOST is not set", "set KUBECONFIG"},
		},
		{
			name: "kubernetes in a pod without a service account token",
			file: func(t *testing.T, dir string) string {
				return nodeYAML(t, dir, "kubernetes:\n  labels: {application: pgwarden-test}\n")
			},
			env:  []string{"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=1"},
			want: []string{"KUBERNETES_SERVICE_HOST is set, so the pod's service account is used, but it is not usable", "serviceaccount/token"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node.yml")
			if tc.file != nil {
				require.NoError(t, os.WriteFile(path, []byte(tc.file(t, dir)), 0o600))
			}
			before := dirEntries(t, dir)
			res := runBin(t, tc.env, path)
			require.Equal(t, 1, res.code)
			for _, w := range tc.want {
				require.Contains(t, res.output, w)
			}
			// Only the daemon's lock file may appear (the kubernetes case
			// fails after taking it); no data directory.
			after := slices.DeleteFunc(dirEntries(t, dir), func(n string) bool { return n == "data.pgwarden.lock" })
			require.Equal(t, before, after, "nothing is created")
		})
	}
}

// An unreachable DCS at startup is reported once per attempt with its
// address and the reason; nothing is started meanwhile, and SIGTERM ends
// the wait with exit code 0.
func TestDaemonWaitsForDCSUntilSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	dir := t.TempDir()
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	path := filepath.Join(dir, "node.yml")
	require.NoError(t, os.WriteFile(path, []byte(nodeYAML(t, dir, "etcd3:\n  hosts: "+dead+"\n")), 0o600))
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer func() { _ = logFile.Close() }()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	cmd := exec.Command(testutil.DaemonBinary(t), path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	})

	want := "waiting for DCS etcd3 at " + dead + ": "
	testutil.SucceedsSoon(t, func() error {
		if n := strings.Count(readLog(), want); n < 2 {
			return fmt.Errorf("%d progress lines %q so far", n, want)
		}
		return nil
	})
	_, err = os.Stat(filepath.Join(dir, "data"))
	require.ErrorIs(t, err, os.ErrNotExist, "Postgres is not initialised while the DCS is down")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		exited = true
		require.NoError(t, err, "exit code 0 after SIGTERM")
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not exit within 20 s of SIGTERM:\n%s", readLog())
	}
	out := readLog()
	t.Logf("daemon output:\n%s", out)
	require.Contains(t, out, "(retry in 1s)")
	_, err = os.Stat(filepath.Join(dir, "data"))
	require.ErrorIs(t, err, os.ErrNotExist, "Postgres was not initialised while the DCS was down")
}

// spec/patronictl.md §3.3/3.4 and issue 7: switchover or failover to a
// member that does not exist or is tagged nofailover names the member and
// the reason, exits 1, and writes nothing to the DCS (no failover key; the
// etcd revision is unchanged).
func TestCtlSwitchoverRefusesBadCandidate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	e := testutil.StartEmbeddedEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer func() { _ = cli.Close() }()
	ctx := t.Context()
	// Nothing listens on the members' REST ports: a command that got past
	// the checks would fall back to writing the failover key, which the
	// test would see.
	api := testutil.FreePorts(t, 3)
	member := func(i int, role, tags string) string {
		return fmt.Sprintf(`{"conn_url":"postgres://127.0.0.1:%d/postgres","api_url":"http://127.0.0.1:%d/patroni","state":"running","role":"%s","timeline":1%s}`,
			5432+i, api[i], role, tags)
	}
	for k, v := range map[string]string{
		"initialize":          "7277694203142172922",
		"config":              `{"ttl":30,"loop_wait":10,"retry_timeout":10}`,
		"leader":              "postgresql0",
		"members/postgresql0": member(0, "primary", ""),
		"members/postgresql1": member(1, "replica", ""),
		"members/postgresql2": member(2, "replica", `,"tags":{"nofailover":true}`),
	} {
		_, err := cli.Put(ctx, "/service/batman/"+k, v)
		require.NoError(t, err)
	}
	before, err := cli.Get(ctx, "/service/batman/", clientv3.WithPrefix())
	require.NoError(t, err)

	dcsURL := "etcd3://" + strings.TrimPrefix(e.Endpoint(), "http://")
	env := []string{"HOME=" + t.TempDir(), "PATRONICTL_CONFIG_FILE="}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"switchover to unknown member", []string{"switchover", "batman", "--candidate", "nobody", "--force"},
			"Error: Member nobody does not exist in cluster batman or is tagged as nofailover: no member named nobody is registered (members: postgresql0, postgresql1, postgresql2); candidates: postgresql1"},
		{"switchover to nofailover member", []string{"switchover", "batman", "--candidate", "postgresql2", "--force"},
			"Error: Member postgresql2 does not exist in cluster batman or is tagged as nofailover: postgresql2 is tagged nofailover (or failover_priority 0), so it never becomes the leader; candidates: postgresql1"},
		{"failover to nofailover member", []string{"failover", "batman", "--candidate", "postgresql2", "--force"},
			"Error: Member postgresql2 does not exist in cluster batman or is tagged as nofailover: postgresql2 is tagged nofailover"},
		{"scheduled switchover to unknown member", []string{"switchover", "batman", "--candidate", "nobody", "--scheduled", "2099-01-01T00:00", "--force"},
			"Error: Member nobody does not exist in cluster batman"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runBin(t, env, append([]string{"ctl", "-d", dcsURL}, tc.args...)...)
			require.Equal(t, 1, res.code)
			require.Contains(t, res.output, tc.want)
			fo, err := cli.Get(ctx, "/service/batman/failover")
			require.NoError(t, err)
			require.Zero(t, fo.Count, "no failover key was written")
			require.Equal(t, before.Header.Revision, fo.Header.Revision, "nothing at all was written to the DCS")
		})
	}
}

// Issue 7: a daemon started while its DCS is down prints progress and does
// not initialise Postgres; once the DCS is up it bootstraps. A second
// daemon on the same data directory is then refused with the first one's
// pid, and the first keeps running unharmed (same postmaster, still
// primary).
func TestDaemonWaitsForDCSThenStartsAndRefusesSecond(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	e := testutil.StartEmbeddedEtcd(t)
	e.Stop()
	hostport := strings.TrimPrefix(e.Endpoint(), "http://")
	c := testutil.StartDaemonCluster(t, testutil.DaemonClusterOptions{
		Nodes: 1, TTL: 10, LoopWait: 1, RetryTimeout: 4,
		DCSYAML: func(int) string { return "etcd3:\n  hosts: " + hostport + "\n" },
	})
	c.Etcd = e // dump its keys on failure
	n := c.Nodes[0]
	ctx := t.Context()

	want := "waiting for DCS etcd3 at " + hostport + ": "
	testutil.SucceedsSoon(t, func() error {
		if k := strings.Count(n.Log(), want); k < 2 {
			return fmt.Errorf("%d progress lines %q so far", k, want)
		}
		return nil
	})
	_, err := os.Stat(n.DataDir)
	require.ErrorIs(t, err, os.ErrNotExist, "no initdb while the DCS is down")
	_, _, err = n.Get(ctx, "/patroni")
	require.Error(t, err, "the REST API is not up before the DCS answers")

	e.Restart(t)
	waitRunningPrimary(ctx, t, n, 2*time.Minute)
	pm := n.PostmasterPID()
	require.NotZero(t, pm)

	res := runBin(t, nil, n.ConfigPath)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.output, fmt.Sprintf("data directory %s is in use by another daemon (pid %d)", n.DataDir, n.PID()))
	require.Contains(t, res.output, "stop that daemon first, or give this node its own postgresql.data_dir")

	require.True(t, n.Running(), "the first daemon keeps running")
	require.Equal(t, pm, n.PostmasterPID(), "its postmaster was not touched")
	doc, err := n.Patroni(ctx)
	require.NoError(t, err)
	require.Equal(t, "primary", doc["role"])
	out, err := c.Ctl(ctx, "list")
	require.NoError(t, err, out)
	require.Regexp(t, `\| node0 +\| [0-9.:]+ +\| Leader +\| running `, out)
}

// spec/patronictl.md §1 and issue 7: ctl with a missing or unparsable
// configuration file, or an unreachable DCS, prints "Error: ..." naming the
// problem and exits 1.
func TestCtlRefusesBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary and real servers")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("scope: batman\nname: node0\nrestapi:\n\tlisten: x\n"), 0o600))
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := []string{"HOME=" + t.TempDir(), "PATRONICTL_CONFIG_FILE="}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"missing config file", []string{"ctl", "-c", filepath.Join(dir, "none.yml"), "list"},
			[]string{"Error: Provided config file " + filepath.Join(dir, "none.yml") + " not existing or no read rights. Check the -c/--config-file parameter"}},
		{"bad YAML", []string{"ctl", "-c", bad, "list"}, []string{"Error: config: ", "bad.yml: yaml: line 4: "}},
		{"unreachable DCS", []string{"ctl", "-d", "etcd3://" + dead, "list", "batman"},
			[]string{"Error: open etcd [http://" + dead + "]", "connection refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := dirEntries(t, dir)
			res := runBin(t, env, tc.args...)
			require.Equal(t, 1, res.code)
			for _, w := range tc.want {
				require.Contains(t, res.output, w)
			}
			require.Equal(t, before, dirEntries(t, dir))
		})
	}
}
