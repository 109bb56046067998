package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// consulInstallHint says how to get the consul binary StartConsul needs.
const consulInstallHint = "run scripts/install-deps.sh (it builds Consul v1.16.3, the last MPL-2.0 " +
	"release, into $PGWARDEN_CACHE/bin, default $HOME/.cache/pgwarden/bin)"

// Timings of the test agent.
const (
	consulStartTimeout = 30 * time.Second // dev agent leads in ~0.3 s; a loaded CI machine is slower
	consulStopTimeout  = 10 * time.Second // graceful leave takes ~2 s, then SIGKILL
	consulProbeTimeout = time.Second
	consulProbeEvery   = 50 * time.Millisecond
)

// ConsulSessionTTLMin is the session_ttl_min of test agents. Consul's
// default is 10 s, which would make every expiry test last at least 20 s;
// the agent accepts shorter sessions so tests can use a ttl of a few
// seconds.
const ConsulSessionTTLMin = time.Second

// ConsulBinary returns the path of the cached consul binary
// (${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin/consul), or "consul" from
// PATH when the cache has none.
func ConsulBinary() string {
	cache := os.Getenv("PGWARDEN_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "pgwarden")
		}
	}
	p := filepath.Join(cache, "bin", "consul")
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p
	}
	return "consul"
}

// ConsulAgent is one `consul agent -dev` process (a single in-memory server
// that leads at once) on random loopback ports, with its data and log in a
// temp dir. It belongs to the test that started it and is stopped by
// t.Cleanup. Stop and Start on the same agent restart it on the same ports,
// with empty state (dev mode keeps nothing).
type ConsulAgent struct {
	// Dir holds the data directory and the agent log (consul.log).
	Dir string
	// NodeName is the agent's node name.
	NodeName string
	// HTTPPort is the port of the HTTP API.
	HTTPPort int

	t     testing.TB
	bin   string
	args  []string
	token string // sent with probes

	mu     sync.Mutex
	proc   *process // nil when not started, or stopped
	paused bool
}

// Addr returns "127.0.0.1:<http port>", the address clients use.
func (a *ConsulAgent) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.HTTPPort))
}

// URL returns "http://127.0.0.1:<http port>".
func (a *ConsulAgent) URL() string { return "http://" + a.Addr() }

// StartConsul starts a dev agent and waits until it has a leader and its
// node is in the catalog (sessions need the node). It fails the test with a
// hint to run scripts/install-deps.sh when the binary is missing, or skips
// with PGWARDEN_ALLOW_SKIP=1.
func StartConsul(t testing.TB) *ConsulAgent {
	t.Helper()
	return StartConsulWith(t, ConsulOptions{})
}

// ConsulOptions adjusts a test agent.
type ConsulOptions struct {
	// HCL are extra agent configuration snippets, one -hcl flag each
	// (for example `acl { enabled = true ... }`).
	HCL []string
	// ManagementToken, when set, is sent with the readiness probes (needed
	// once ACLs default to deny).
	ManagementToken string
}

// StartConsulWith is StartConsul with options.
func StartConsulWith(t testing.TB, opts ConsulOptions) *ConsulAgent {
	t.Helper()
	bin := RequireBinary(t, ConsulBinary(), consulInstallHint)
	ports := FreePorts(t, 7)
	a := &ConsulAgent{
		Dir:      t.TempDir(),
		NodeName: "pgwarden-test",
		HTTPPort: ports[0],
		t:        t,
		bin:      bin,
	}
	a.args = []string{
		"agent", "-dev",
		"-node", a.NodeName,
		"-data-dir", filepath.Join(a.Dir, "data"),
		"-bind", "127.0.0.1", "-advertise", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]),
		"-dns-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]),
		"-serf-wan-port", strconv.Itoa(ports[3]),
		"-server-port", strconv.Itoa(ports[4]),
		"-grpc-port", strconv.Itoa(ports[5]),
		"-grpc-tls-port", strconv.Itoa(ports[6]),
		"-hcl", "disable_update_check = true",
		"-hcl", fmt.Sprintf("session_ttl_min = %q", ConsulSessionTTLMin.String()),
		"-log-level", "info",
	}
	for _, h := range opts.HCL {
		a.args = append(a.args, "-hcl", h)
	}
	a.token = opts.ManagementToken
	t.Cleanup(a.Stop)
	a.Start()
	return a
}

// Start starts the agent if it is not running and waits until it serves.
func (a *ConsulAgent) Start() {
	a.t.Helper()
	a.mu.Lock()
	if a.proc == nil {
		if err := os.MkdirAll(filepath.Join(a.Dir, "data"), 0o755); err != nil {
			a.mu.Unlock()
			a.t.Fatalf("consul: %v", err)
		}
		cmd := exec.Command(a.bin, a.args...)
		cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
		// Signals go to the agent's process group (process.signal).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		p, err := startProcess(cmd, filepath.Join(a.Dir, "consul.log"), 0o644)
		if err != nil {
			a.mu.Unlock()
			a.t.Fatalf("consul: start %s: %v", a.bin, err)
		}
		a.proc, a.paused = p, false
	}
	p := a.proc
	a.mu.Unlock()
	a.waitServing(p)
}

// waitServing waits until the agent has a leader and its node is
// registered, or fails the test with the tail of the log.
func (a *ConsulAgent) waitServing(p *process) {
	a.t.Helper()
	err := p.waitReady(consulStartTimeout, consulProbeEvery, a.probe)
	if errors.Is(err, errExited) {
		a.t.Fatalf("consul: agent exited during start-up\n%s", a.logTail())
	}
	if err != nil {
		a.t.Fatalf("consul: agent not serving: %v\n%s", err, a.logTail())
	}
}

// probe checks leadership and the node's catalog entry.
func (a *ConsulAgent) probe() error {
	body, err := a.get("/v1/status/leader")
	if err != nil {
		return err
	}
	if strings.Trim(strings.TrimSpace(body), `"`) == "" {
		return errors.New("no leader yet")
	}
	body, err = a.get("/v1/catalog/node/" + a.NodeName)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) == "null" {
		return errors.New("node not in the catalog yet")
	}
	return nil
}

func (a *ConsulAgent) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), consulProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+path, nil)
	if err != nil {
		return "", err
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), nil
}

// Stop stops the agent: SIGINT (a graceful leave), then SIGKILL after a
// timeout, and waits for it to exit. A no-op when it is not running.
func (a *ConsulAgent) Stop() { a.stop(syscall.SIGINT) }

// Kill kills the agent with SIGKILL, as a crash would, and waits for it.
func (a *ConsulAgent) Kill() { a.stop(syscall.SIGKILL) }

func (a *ConsulAgent) stop(sig syscall.Signal) {
	a.mu.Lock()
	p, paused := a.proc, a.paused
	a.proc, a.paused = nil, false
	a.mu.Unlock()
	if p == nil {
		return
	}
	if paused {
		_ = p.signal(syscall.SIGCONT)
	}
	p.stop(sig, consulStopTimeout)
}

// Pause freezes the agent with SIGSTOP: connections stay open but nothing
// answers, like a hung server. It returns once every thread of the agent
// has stopped. Resume undoes it.
func (a *ConsulAgent) Pause() {
	a.signal(syscall.SIGSTOP, true)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.proc.waitStopped(10 * time.Second); err != nil {
		a.t.Fatalf("consul: pause: %v", err)
	}
}

// Resume continues an agent frozen by Pause.
func (a *ConsulAgent) Resume() { a.signal(syscall.SIGCONT, false) }

func (a *ConsulAgent) signal(sig syscall.Signal, paused bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		a.t.Fatalf("consul: agent is not running")
	}
	if err := a.proc.signal(sig); err != nil {
		a.t.Fatalf("consul: signal %v: %v", sig, err)
	}
	a.paused = paused
}

// logTail returns the end of the agent log for failure messages.
func (a *ConsulAgent) logTail() string {
	b, err := os.ReadFile(filepath.Join(a.Dir, "consul.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const tailBytes = 4000
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}
