package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/pgwarden/pgwarden/dcs/etcd"
)

// EtcdBinary is Debian's etcd 3.4 server (package etcd-server).
const EtcdBinary = "/usr/bin/etcd"

const etcdInstallHint = "apt-get install -y etcd-server etcd-client (or run scripts/install-deps.sh)"

// Timings of test etcd servers. Raft runs faster than etcd's defaults so a
// lost leader is replaced in about half a second; the minimum lease TTL is
// then 1.5 x election = 0.75 s.
const (
	etcdHeartbeat    = 50 * time.Millisecond
	etcdElection     = 500 * time.Millisecond
	etcdStartTimeout = 60 * time.Second
	etcdStopTimeout  = 10 * time.Second
)

// EtcdProcess is one etcd server process (Debian's /usr/bin/etcd) with a
// temp data dir on random loopback ports, stopped by t.Cleanup.
type EtcdProcess struct {
	Name       string
	Dir        string
	ClientPort int
	PeerPort   int

	mu   sync.Mutex
	proc *process // nil once stopped
}

// Endpoint returns the client URL.
func (p *EtcdProcess) Endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(p.ClientPort) }

// StartEtcdProcess starts a single-member etcd from EtcdBinary and waits
// until it is healthy. A missing binary fails the test with an install
// hint (skips with PGWARDEN_ALLOW_SKIP=1).
func StartEtcdProcess(t testing.TB) *EtcdProcess {
	t.Helper()
	bin := RequireBinary(t, EtcdBinary, etcdInstallHint)
	ports := FreePorts(t, 2)
	p := &EtcdProcess{Name: "etcd0", Dir: t.TempDir(), ClientPort: ports[0], PeerPort: ports[1]}
	peer := "http://127.0.0.1:" + strconv.Itoa(p.PeerPort)
	logPath := filepath.Join(p.Dir, "etcd.log")
	cmd := exec.Command(bin,
		"--name", p.Name, "--data-dir", filepath.Join(p.Dir, "data"),
		"--listen-client-urls", p.Endpoint(), "--advertise-client-urls", p.Endpoint(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", p.Name+"="+peer, "--initial-cluster-state", "new",
		"--initial-cluster-token", "pgwarden-test-"+strconv.Itoa(p.ClientPort),
		"--heartbeat-interval", strconv.Itoa(int(etcdHeartbeat/time.Millisecond)),
		"--election-timeout", strconv.Itoa(int(etcdElection/time.Millisecond)),
		"--logger=zap", "--log-outputs=stderr")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	proc, err := startProcess(cmd, logPath, 0o666)
	if err != nil {
		t.Fatalf("testutil: start etcd: %v", err)
	}
	p.proc = proc
	t.Cleanup(p.Stop)

	client := &http.Client{Timeout: time.Second}
	err = proc.waitReady(etcdStartTimeout, 50*time.Millisecond, func() error {
		resp, err := client.Get(p.Endpoint() + "/health")
		if err != nil {
			return err
		}
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(body.String(), `"true"`) {
			return fmt.Errorf("/health: %s: %s", resp.Status, strings.TrimSpace(body.String()))
		}
		return nil
	})
	if errors.Is(err, errExited) {
		t.Fatalf("testutil: etcd exited during start-up; log:\n%s", tail(logPath))
	}
	if err != nil {
		t.Fatalf("testutil: etcd not healthy: %v; log:\n%s", err, tail(logPath))
	}
	return p
}

// Stop terminates the process (SIGTERM, SIGKILL after a grace period) and
// waits for it. Safe to call more than once.
func (p *EtcdProcess) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return
	}
	p.proc.stop(syscall.SIGTERM, etcdStopTimeout)
	p.proc = nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// EmbeddedEtcd is one embedded etcd member (dcs/etcd.StartServer) on random
// loopback ports with a temp data dir, stopped by t.Cleanup.
type EmbeddedEtcd struct {
	Name      string
	Dir       string
	ClientURL string
	PeerURL   string

	t       testing.TB
	initial string
	state   string

	mu     sync.Mutex
	server *etcd.Server
}

// Endpoint returns the client URL.
func (e *EmbeddedEtcd) Endpoint() string { return e.ClientURL }

// Server returns the running server, or nil while stopped.
func (e *EmbeddedEtcd) Server() *etcd.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.server
}

// Stop stops the member, keeping its data dir. Safe to call more than once.
func (e *EmbeddedEtcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		_ = e.server.Close()
		e.server = nil
	}
}

// Restart starts a stopped member again on its data dir and ports.
func (e *EmbeddedEtcd) Restart(t testing.TB) {
	t.Helper()
	e.Stop()
	e.start(t)
}

func (e *EmbeddedEtcd) start(t testing.TB) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		s, err := etcd.StartServer(t.Context(), etcd.ServerConfig{
			Name:              e.Name,
			DataDir:           e.Dir,
			ClientURLs:        []string{e.ClientURL},
			PeerURLs:          []string{e.PeerURL},
			InitialCluster:    e.initial,
			ClusterState:      e.state,
			ClusterToken:      "pgwarden-test",
			HeartbeatInterval: etcdHeartbeat,
			ElectionTimeout:   etcdElection,
			ReadyTimeout:      etcdStartTimeout,
			Logger:            quietLogger(t).With("etcd", e.Name),
		})
		if err == nil {
			e.mu.Lock()
			e.server = s
			e.mu.Unlock()
			return
		}
		lastErr = err
		// Two transient causes are worth another try: a port released just
		// before can be briefly in use again, and a member joining right
		// after MemberAdd may ask a peer that has not applied the change
		// yet (a just-restarted one), which fails the peer validation
		// with "member count is unequal".
		msg := err.Error()
		if !strings.Contains(msg, "address already in use") &&
			!strings.Contains(msg, "member count is unequal") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("testutil: start embedded etcd %s: %v", e.Name, lastErr)
}

func newEmbedded(t testing.TB, name string) *EmbeddedEtcd {
	ports := FreePorts(t, 2)
	e := &EmbeddedEtcd{
		Name:      name,
		Dir:       filepath.Join(t.TempDir(), name),
		ClientURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		PeerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		t:         t,
		state:     etcd.StateNew,
	}
	t.Cleanup(e.Stop)
	return e
}

// StartEmbeddedEtcd starts a single embedded etcd member.
func StartEmbeddedEtcd(t testing.TB) *EmbeddedEtcd {
	t.Helper()
	e := newEmbedded(t, "e0")
	e.initial = e.Name + "=" + e.PeerURL
	e.start(t)
	return e
}

// EtcdCluster is a set of embedded members forming one etcd cluster.
type EtcdCluster struct {
	Members []*EmbeddedEtcd
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// StartEmbeddedEtcdCluster starts n embedded members forming one cluster
// and waits until all of them are ready.
func StartEmbeddedEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		m := newEmbedded(t, "e"+strconv.Itoa(i))
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i, m := range c.Members {
		m.initial = strings.Join(initial, ",")
		wg.Go(func() {
			// Start in goroutines: each member waits for a quorum.
			st := &recordingTB{TB: t}
			defer func() {
				if r := recover(); r != nil && r != errRecordedFatal {
					panic(r)
				}
				errs[i] = st.msg
			}()
			m.start(st)
		})
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Fatalf("testutil: member %d: %s", i, e)
		}
	}
	return c
}

// AddMember adds a new member to the running cluster (etcd MemberAdd
// through the existing members, then a start with state "existing").
func (c *EtcdCluster) AddMember(t testing.TB) *EmbeddedEtcd {
	t.Helper()
	m := newEmbedded(t, "e"+strconv.Itoa(len(c.Members)))
	client, err := etcd.NewClient(t.Context(), etcd.Config{Endpoints: c.Endpoints(), Logger: Logger(t)})
	if err != nil {
		t.Fatalf("testutil: etcd client: %v", err)
	}
	defer client.Close()
	// etcd refuses a reconfiguration until every member has been connected
	// for 5 s ("unhealthy cluster"), for example right after a restart.
	var initial string
	SucceedsWithin(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var err error
		initial, err = etcd.AddMember(ctx, client, m.Name, []string{m.PeerURL})
		if err != nil {
			return fmt.Errorf("add etcd member %s: %w", m.Name, err)
		}
		return nil
	})
	m.initial, m.state = initial, etcd.StateExisting
	m.start(t)
	c.Members = append(c.Members, m)
	return m
}

// recordingTB turns Fatalf into a recorded message plus a panic, so a
// helper can run in a goroutine other than the test's.
type recordingTB struct {
	testing.TB
	msg string
}

var errRecordedFatal = fmt.Errorf("testutil: recorded fatal")

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(errRecordedFatal)
}

func (r *recordingTB) Helper() {}

// quietLogger is Logger(t) with Warn records and above only: etcd logs a lot
// (mapped to Debug) would drown a failing test's output.
func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(minLevel{Handler: Logger(t).Handler(), min: slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h minLevel) WithGroup(g string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(g), min: h.min}
}
