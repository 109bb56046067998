package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// demoNode is one daemon process of the demo.
type demoNode struct {
	name, config, dataDir string
	api                   string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

// runDemo starts a three-node cluster from the sample configurations on
// the embedded DCS, shows `ctl list`, kills the primary (daemon and
// postmaster), shows the failover and the old primary rejoining, then keeps
// the cluster up until Ctrl-C (or exits with DEMO_EXIT=1).
func runDemo(args []string) int {
	dir := "examples/reference-daemon"
	if len(args) > 0 {
		dir = args[0]
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	base, err := os.MkdirTemp("", "pgwarden-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	if err := demoPrepareDir(base); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	fmt.Printf("demo: data and logs in %s\n", base)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var nodes []*demoNode
	for i := 0; i < 3; i++ {
		n, err := demoConfig(dir, base, i)
		if err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			return 1
		}
		nodes = append(nodes, n)
	}
	defer func() {
		fmt.Println("demo: stopping the cluster")
		for _, n := range nodes {
			n.stop(30 * time.Second)
		}
	}()
	for _, n := range nodes {
		if err := n.start(self, base); err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			return 1
		}
	}
	ctl := func() {
		c := exec.Command(self, "ctl", "-c", nodes[0].config, "list")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		_ = c.Run()
	}
	fmt.Println("demo: waiting for the cluster to bootstrap")
	primary, err := demoWait(ctx, 3*time.Minute, func() (int, bool) { return demoHealthy(nodes, "/replica") })
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error: cluster did not bootstrap:", err)
		demoExplain(base, nodes)
		return 1
	}
	ctl()

	old := nodes[primary]
	fmt.Printf("demo: killing %s (daemon and postmaster, kill -9)\n", old.name)
	killed := time.Now()
	old.kill()
	if pid := postmasterPID(old.dataDir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := demoWait(ctx, 3*time.Minute, func() (int, bool) {
		for i, n := range nodes {
			if i != primary && httpStatus(n.api+"/primary") == 200 {
				return i, true
			}
		}
		return -1, false
	}); err != nil {
		fmt.Fprintln(os.Stderr, "Error: no failover:", err)
		demoExplain(base, nodes)
		return 1
	}
	fmt.Printf("demo: new primary after %.1f s\n", time.Since(killed).Seconds())
	ctl()

	fmt.Printf("demo: starting %s again; it rejoins as a replica\n", old.name)
	if err := old.start(self, base); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	// Rejoined means streaming, for the other replica too: after a new
	// timeline a replica's WAL receiver may wait wal_retrieve_retry_interval
	// (5 s) before it connects to the new primary.
	if _, err := demoWait(ctx, 3*time.Minute, func() (int, bool) { return demoHealthy(nodes, "/replica?replication_state=streaming") }); err != nil {
		fmt.Fprintln(os.Stderr, "Error: old primary did not rejoin:", err)
		demoExplain(base, nodes)
		return 1
	}
	ctl()
	if os.Getenv("DEMO_EXIT") == "1" {
		return 0
	}
	fmt.Printf("demo: cluster is up (ctl: %s ctl -c %s list); Ctrl-C stops it\n", self, nodes[0].config)
	<-ctx.Done()
	return 0
}

// demoPrepareDir lets the postgres user use base when we run as root.
func demoPrepareDir(base string) error {
	if err := os.Chmod(base, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", base, err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs an OS user postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(base, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", base, err)
	}
	return nil
}

var (
	reDataDir = regexp.MustCompile(`(?m)^(\s*data_dir:\s*)data/(\S+)$`)
	rePgpass  = regexp.MustCompile(`(?m)^(\s*pgpass:\s*)\S+$`)
	reSocket  = regexp.MustCompile(`(?m)^(\s*unix_socket_directories:\s*)\S+$`)
	reTiming  = strings.NewReplacer("ttl: 30\n", "ttl: 20\n", "loop_wait: 10\n", "loop_wait: 1\n", "retry_timeout: 10\n", "retry_timeout: 3\n")
)

// demoConfig writes node i's sample configuration with data under base and
// faster timing (ttl 20, loop_wait 1, retry_timeout 3) so the failover is
// quick to watch.
func demoConfig(dir, base string, i int) (*demoNode, error) {
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("postgres%d.yml", i)))
	if err != nil {
		return nil, fmt.Errorf("sample configuration: %w", err)
	}
	s := reDataDir.ReplaceAllString(string(b), "${1}"+base+"/${2}")
	s = rePgpass.ReplaceAllString(s, "${1}"+filepath.Join(base, fmt.Sprintf("pgpass%d", i)))
	s = reSocket.ReplaceAllString(s, "${1}'"+base+"'")
	s = reTiming.Replace(s)
	path := filepath.Join(base, fmt.Sprintf("postgres%d.yml", i))
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	c, warns, err := loadConfig(path)
	newWarnLog(slog.Default()).warn("config", warns)
	if err != nil {
		return nil, err
	}
	return &demoNode{name: c.Name, config: path, dataDir: c.PostgreSQL.DataDir, api: "http://" + c.RestAPI.ConnectAddress}, nil
}

func (n *demoNode) start(self, base string) error {
	f, err := os.OpenFile(filepath.Join(base, n.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(self, n.config)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	return nil
}

func (n *demoNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.done
	n.cmd = nil
}

func (n *demoNode) stop(wait time.Duration) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		n.cmd = nil
	case <-time.After(wait):
		n.kill()
	}
}

func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// demoExplain prints, after a step of the demo failed, what each node's
// REST API answers and the end of its log, so the reason shows without
// digging in the data directory.
func demoExplain(base string, nodes []*demoNode) {
	for _, n := range nodes {
		fmt.Fprintf(os.Stderr, "\n==== %s: GET /primary %d, GET /replica %d; last lines of %s\n",
			n.name, httpStatus(n.api+"/primary"), httpStatus(n.api+"/replica"), filepath.Join(base, n.name+".log"))
		b, _ := os.ReadFile(filepath.Join(base, n.name+".log"))
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintln(os.Stderr, strings.Join(lines[max(0, len(lines)-25):], "\n"))
	}
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// demoHealthy reports the primary's index once one node answers
// GET /primary and every other node the replica check (GET /replica, or
// with ?replication_state=streaming once replicas must stream).
func demoHealthy(nodes []*demoNode, replicaCheck string) (int, bool) {
	primary := -1
	for i, n := range nodes {
		switch {
		case httpStatus(n.api+"/primary") == 200:
			primary = i
		case httpStatus(n.api+replicaCheck) == 200:
		default:
			return -1, false
		}
	}
	return primary, primary >= 0
}

func demoWait(ctx context.Context, d time.Duration, f func() (int, bool)) (int, error) {
	deadline := time.Now().Add(d)
	for {
		if i, ok := f(); ok {
			return i, nil
		}
		if time.Now().After(deadline) {
			return -1, errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
