package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reference daemon end-to-end helpers: build examples/reference-daemon once
// per test binary, write Patroni-style YAML for each node (random ports,
// data under PGTempDir, an etcd3 section pointing at an embedded etcd of
// the test process), and run the daemons as processes that tests can kill.

var (
	daemonOnce sync.Once
	daemonBin  string
	daemonErr  error
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// DaemonBinary builds examples/reference-daemon once per test binary and
// returns the path of the executable. The build output is removed when the
// process exits only by the OS temp cleaner; it is small.
func DaemonBinary(t testing.TB) string {
	t.Helper()
	daemonOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgwarden-daemon-")
		if err != nil {
			daemonErr = err
			return
		}
		// The daemon runs Postgres as another user; it only needs to be
		// executable by root or the test user, but keep the dir readable.
		_ = os.Chmod(dir, 0o755)
		bin := filepath.Join(dir, "reference-daemon")
		cmd := exec.Command("go", "build", "-o", bin, "./examples/reference-daemon")
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			daemonErr = fmt.Errorf("go build ./examples/reference-daemon: %w\n%s", err, out)
			return
		}
		daemonBin = bin
	})
	if daemonErr != nil {
		t.Fatalf("testutil: %v", daemonErr)
	}
	return daemonBin
}

// DaemonNode is one reference-daemon process.
type DaemonNode struct {
	Name       string
	ConfigPath string
	DataDir    string
	PGPort     int
	APIPort    int
	// LogPath receives the daemon's stdout and stderr (appended across
	// restarts).
	LogPath string

	bin  string
	mu   sync.Mutex
	proc *process // nil when not started, or stopped
}

// APIURL returns the base URL of the node's REST API.
func (n *DaemonNode) APIURL() string { return "http://127.0.0.1:" + strconv.Itoa(n.APIPort) }

// Start launches the daemon process.
func (n *DaemonNode) Start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		t.Fatalf("testutil: daemon %s already running", n.Name)
	}
	cmd := exec.Command(n.bin, n.ConfigPath)
	cmd.Env = append(os.Environ(), "PGWARDEN_LOG_LEVEL=INFO")
	p, err := startProcess(cmd, n.LogPath, 0o644)
	if err != nil {
		t.Fatalf("testutil: start daemon %s: %v", n.Name, err)
	}
	n.proc = p
}

// Running reports whether the daemon process is running.
func (n *DaemonNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.running()
}

// PID returns the daemon process id (0 when not started by Start).
func (n *DaemonNode) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.pid()
}

// Kill sends SIGKILL to the daemon and waits for it to exit. Postgres,
// which the daemon started, keeps running (see KillPostmaster).
func (n *DaemonNode) Kill() { n.signal(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM (the daemon's clean shutdown) and waits up to
// timeout, then kills it.
func (n *DaemonNode) Stop(timeout time.Duration) {
	if !n.signal(syscall.SIGTERM, timeout) {
		n.signal(syscall.SIGKILL, 10*time.Second)
	}
}

// signal sends sig and waits up to wait for the exit; it reports whether
// the process exited (or was not running).
func (n *DaemonNode) signal(sig syscall.Signal, wait time.Duration) bool {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return true
	}
	_ = p.signal(sig)
	if !p.wait(wait) {
		return false
	}
	n.mu.Lock()
	n.proc = nil
	n.mu.Unlock()
	return true
}

// PostmasterPID reads the postmaster's pid from postmaster.pid (0 when
// absent).
func (n *DaemonNode) PostmasterPID() int {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// KillPostmaster sends SIGKILL to the node's postmaster, if one runs.
func (n *DaemonNode) KillPostmaster() {
	if pid := n.PostmasterPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Log returns what the daemon logged so far.
func (n *DaemonNode) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Patroni returns the node's GET /patroni document (any status code).
func (n *DaemonNode) Patroni(ctx context.Context) (map[string]any, error) {
	code, body, err := n.Get(ctx, "/patroni")
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("GET /patroni on %s: status %d: %w", n.Name, code, err)
	}
	return doc, nil
}

// Get sends GET path to the node's REST API with a 2 s timeout.
func (n *DaemonNode) Get(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// DaemonClusterOptions configure StartDaemonCluster.
type DaemonClusterOptions struct {
	// Scope is the cluster name; default "e2e".
	Scope string
	// Nodes is the number of daemons; default 3.
	Nodes int
	// TTL, LoopWait and RetryTimeout go to bootstrap.dcs; defaults 20/1/3
	// (Patroni's documented minimums; smaller values are accepted with a
	// warning as long as ttl >= loop_wait + 2 x retry_timeout).
	TTL, LoopWait, RetryTimeout int
	// DCSYAML replaces the etcd3 section pointing at an embedded etcd of
	// the test process (for example a raft section).
	DCSYAML func(i int) string
	// BootstrapDCSYAML is appended under bootstrap.dcs (indented 4).
	BootstrapDCSYAML string
	// TagsYAML returns extra tags for node i (lines "key: value").
	TagsYAML func(i int) string
	// EtcdEndpoint, when set, is the client URL of an etcd the nodes use
	// (Debian's etcd from StartEtcdProcess, or the embedded etcd of
	// another cluster) instead of a new embedded etcd.
	EtcdEndpoint string
	// NoStart writes the configurations without starting the daemons, so
	// the test can start them in the order it needs (DaemonNode.Start).
	NoStart bool
}

// DaemonCluster is a set of reference daemons forming one cluster.
type DaemonCluster struct {
	Scope string
	Nodes []*DaemonNode
	// Etcd is the embedded etcd the nodes use (nil with DCSYAML or
	// EtcdEndpoint).
	Etcd *EmbeddedEtcd
	// EtcdEndpoint is the client URL of the etcd the nodes use ("" with
	// DCSYAML).
	EtcdEndpoint string
	Bin          string
}

// StartDaemonCluster writes the configurations and starts every node. At
// cleanup it stops the daemons (SIGTERM, then SIGKILL), kills leftover
// postmasters and, when the test failed, prints every daemon log and the
// DCS keys.
func StartDaemonCluster(t testing.TB, o DaemonClusterOptions) *DaemonCluster {
	t.Helper()
	if o.Scope == "" {
		o.Scope = "e2e"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.TTL == 0 {
		o.TTL, o.LoopWait, o.RetryTimeout = 20, 1, 3
	}
	bin := DaemonBinary(t)
	binDir := PGBinDir(t)
	c := &DaemonCluster{Scope: o.Scope, Bin: bin, EtcdEndpoint: o.EtcdEndpoint}
	if o.DCSYAML == nil && o.EtcdEndpoint == "" {
		c.Etcd = StartEmbeddedEtcd(t)
		c.EtcdEndpoint = c.Etcd.Endpoint()
	}
	for i := 0; i < o.Nodes; i++ {
		dir := PGTempDir(t)
		ports := FreePorts(t, 2)
		n := &DaemonNode{
			Name:       fmt.Sprintf("node%d", i),
			ConfigPath: filepath.Join(dir, "node.yml"),
			DataDir:    filepath.Join(dir, "data"),
			PGPort:     ports[0],
			APIPort:    ports[1],
			LogPath:    filepath.Join(dir, "daemon.log"),
			bin:        bin,
		}
		dcsYAML := fmt.Sprintf("etcd3:\n  hosts: %s\n", strings.TrimPrefix(c.endpoint(), "http://"))
		if o.DCSYAML != nil {
			dcsYAML = o.DCSYAML(i)
		}
		tags := ""
		if o.TagsYAML != nil {
			for _, l := range strings.Split(strings.TrimSpace(o.TagsYAML(i)), "\n") {
				if l != "" {
					tags += "  " + l + "\n"
				}
			}
		}
		if tags == "" {
			tags = "  clonefrom: false\n"
		}
		extra := ""
		for _, l := range strings.Split(o.BootstrapDCSYAML, "\n") {
			if strings.TrimSpace(l) != "" {
				extra += "    " + l + "\n"
			}
		}
		yml := fmt.Sprintf(`scope: %[1]s
name: %[2]s
restapi:
  listen: 127.0.0.1:%[3]d
  connect_address: 127.0.0.1:%[3]d
%[4]s
bootstrap:
  dcs:
    ttl: %[5]d
    loop_wait: %[6]d
    retry_timeout: %[7]d
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
%[12]s  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host replication %[9]s 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:%[8]d
  connect_address: 127.0.0.1:%[8]d
  data_dir: %[10]s
  bin_dir: %[11]s
  pgpass: %[13]s
  authentication:
    superuser:
      username: %[14]s
      password: %[15]s
    replication:
      username: %[9]s
      password: %[16]s
  parameters:
    unix_socket_directories: '%[17]s'
    shared_buffers: 16MB
    fsync: "off"
watchdog:
  mode: "off"
tags:
%[18]s`, o.Scope, n.Name, n.APIPort, dcsYAML, o.TTL, o.LoopWait, o.RetryTimeout, n.PGPort,
			PGReplicator, n.DataDir, binDir, extra, filepath.Join(dir, "pgpass"), PGSuperuser, PGSuperPassword,
			PGReplPassword, dir, tags)
		if err := os.WriteFile(n.ConfigPath, []byte(yml), 0o644); err != nil {
			t.Fatalf("testutil: write %s: %v", n.ConfigPath, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(func() { c.cleanup(t) })
	if !o.NoStart {
		for _, n := range c.Nodes {
			n.Start(t)
		}
	}
	return c
}

func (c *DaemonCluster) endpoint() string { return c.EtcdEndpoint }

func (c *DaemonCluster) cleanup(t testing.TB) {
	if t.Failed() {
		c.Dump(t)
	}
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(func() { n.Stop(30 * time.Second) })
	}
	wg.Wait()
	for _, n := range c.Nodes {
		n.KillPostmaster()
	}
}

// Dump logs every daemon's log and the cluster's DCS keys.
func (c *DaemonCluster) Dump(t testing.TB) {
	for _, n := range c.Nodes {
		t.Logf("==== log of %s (%s)\n%s", n.Name, n.LogPath, tailString(n.Log(), 60000))
	}
	if c.EtcdEndpoint == "" {
		return
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdEndpoint}, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Logf("==== DCS keys: %v", err)
		return
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/service/"+c.Scope+"/", clientv3.WithPrefix())
	if err != nil {
		t.Logf("==== DCS keys: %v", err)
		return
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		fmt.Fprintf(&b, "%s (lease %x) = %s\n", kv.Key, kv.Lease, kv.Value)
	}
	t.Logf("==== DCS keys\n%s", b.String())
}

// Ctl runs "reference-daemon ctl -c <node0 config> args..." and returns its
// combined output.
func (c *DaemonCluster) Ctl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, append([]string{"ctl", "-c", c.Nodes[0].ConfigPath}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Roles returns each running node's role from GET /patroni ("" when it
// does not answer).
func (c *DaemonCluster) Roles(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, n := range c.Nodes {
		if doc, err := n.Patroni(ctx); err == nil {
			out[n.Name], _ = doc["role"].(string)
		}
	}
	return out
}
