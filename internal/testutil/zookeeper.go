package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
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

// ZooKeeperJar is the server jar of Debian's zookeeper package (installed by
// scripts/install-deps.sh). Its manifest Class-Path brings in the rest.
const ZooKeeperJar = "/usr/share/java/zookeeper.jar"

// zkInstallHint says how to get what StartZooKeeper needs.
const zkInstallHint = "install it with `apt-get install --no-install-recommends zookeeper` " +
	"(or run scripts/install-deps.sh); set PGWARDEN_ALLOW_SKIP=1 to skip on purpose"

// Timings of the test servers. tickTime 500 ms makes the server's session
// timeout bounds 1 s..10 s by default, so zoo.cfg widens the maximum to
// 60 s: the backend asks for ttl (up to Patroni's 30 s default).
const (
	zkTickTime       = 500 * time.Millisecond
	zkStartTimeout   = 60 * time.Second // JVM start on a loaded 2-core machine
	zkStopTimeout    = 10 * time.Second // SIGTERM, then SIGKILL
	zkProbeTimeout   = time.Second      // a 4lw probe during start-up can hang for good
	zkProbeInterval  = 100 * time.Millisecond
	zkEnsembleQuorum = 3
)

// ZooKeeperServer is one ZooKeeper server process in a temp directory,
// listening on a random loopback client port. It belongs to the test that
// started it and is stopped by t.Cleanup.
type ZooKeeperServer struct {
	// ID is the server's myid (1 for a standalone server).
	ID int
	// Dir holds zoo.cfg, the data directory and the server log (zk.log).
	Dir string
	// ClientPort is the loopback port clients connect to.
	ClientPort int

	t       testing.TB
	cfgPath string

	mu   sync.Mutex
	proc *process // nil when not started, or stopped
}

// Addr returns "127.0.0.1:<client port>".
func (s *ZooKeeperServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ClientPort))
}

// ZooKeeperEnsemble is a set of ZooKeeper servers forming one ensemble.
type ZooKeeperEnsemble struct {
	Servers []*ZooKeeperServer
}

// Hosts returns every server's client address.
func (e *ZooKeeperEnsemble) Hosts() []string {
	hosts := make([]string, len(e.Servers))
	for i, s := range e.Servers {
		hosts[i] = s.Addr()
	}
	return hosts
}

// Stop stops every server (SIGTERM, then SIGKILL) and waits for them.
func (e *ZooKeeperEnsemble) Stop() {
	var wg sync.WaitGroup
	for _, s := range e.Servers {
		wg.Go(s.Stop)
	}
	wg.Wait()
}

// Start starts every stopped server again and waits until the ensemble
// serves requests.
func (e *ZooKeeperEnsemble) Start() {
	for _, s := range e.Servers {
		s.launch()
	}
	for _, s := range e.Servers {
		s.waitServing()
	}
}

// RequireZooKeeper fails the test (or skips it with PGWARDEN_ALLOW_SKIP=1)
// when java or the ZooKeeper jar is missing.
func RequireZooKeeper(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("java"); err != nil {
		missing = append(missing, "java")
	}
	if _, err := os.Stat(ZooKeeperJar); err != nil {
		missing = append(missing, ZooKeeperJar)
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("ZooKeeper tests need %s: %s", strings.Join(missing, " and "), zkInstallHint)
	if AllowSkip() {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

// StartZooKeeper starts a standalone ZooKeeper server and waits until it
// serves requests. It is stopped when the test ends.
func StartZooKeeper(t testing.TB) *ZooKeeperServer {
	t.Helper()
	RequireZooKeeper(t)
	s := newZooKeeperServer(t, 1, t.TempDir())
	s.writeConfig(nil)
	s.launch()
	s.waitServing()
	return s
}

// StartZooKeeperEnsemble starts a three-server ensemble on loopback and waits
// until every server serves requests. Everything is stopped when the test
// ends.
func StartZooKeeperEnsemble(t testing.TB) *ZooKeeperEnsemble {
	t.Helper()
	RequireZooKeeper(t)
	e := &ZooKeeperEnsemble{}
	var peers []string
	root := t.TempDir()
	for id := 1; id <= zkEnsembleQuorum; id++ {
		s := newZooKeeperServer(t, id, filepath.Join(root, fmt.Sprintf("zk%d", id)))
		peers = append(peers, fmt.Sprintf("server.%d=127.0.0.1:%d:%d", id, FreePort(t), FreePort(t)))
		e.Servers = append(e.Servers, s)
	}
	for _, s := range e.Servers {
		s.writeConfig(peers)
	}
	e.Start()
	return e
}

func newZooKeeperServer(t testing.TB, id int, dir string) *ZooKeeperServer {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatalf("zookeeper: %v", err)
	}
	s := &ZooKeeperServer{ID: id, Dir: dir, ClientPort: FreePort(t), t: t,
		cfgPath: filepath.Join(dir, "zoo.cfg")}
	t.Cleanup(s.Stop)
	return s
}

// writeConfig writes zoo.cfg (and myid for an ensemble member).
func (s *ZooKeeperServer) writeConfig(peers []string) {
	s.t.Helper()
	data := filepath.Join(s.Dir, "data")
	cfg := []string{
		"tickTime=" + strconv.Itoa(int(zkTickTime/time.Millisecond)),
		"initLimit=10",
		"syncLimit=5",
		"dataDir=" + data,
		"clientPort=" + strconv.Itoa(s.ClientPort),
		"clientPortAddress=127.0.0.1",
		// The AdminServer would bind port 8080 and collide with other tests.
		"admin.enableServer=false",
		"4lw.commands.whitelist=ruok,srvr,stat,mntr",
		"minSessionTimeout=1000",
		"maxSessionTimeout=60000",
		// Many test clients share one server.
		"maxClientCnxns=0",
	}
	if len(peers) > 0 {
		cfg = append(cfg, peers...)
		if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(s.ID)+"\n"), 0o644); err != nil {
			s.t.Fatalf("zookeeper: write myid: %v", err)
		}
	}
	if err := os.WriteFile(s.cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		s.t.Fatalf("zookeeper: write zoo.cfg: %v", err)
	}
}

// launch starts the server process unless it runs already.
func (s *ZooKeeperServer) launch() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	// Without a logging binding on the classpath the server logs nothing
	// (SLF4J falls back to NOP) and starts about twice as fast; set
	// PGWARDEN_ZK_LOG=1 to get its log in zk.log.
	cp := ZooKeeperJar
	if os.Getenv("PGWARDEN_ZK_LOG") == "1" {
		cp += ":/usr/share/java/slf4j-simple.jar"
	}
	cmd := exec.Command("java",
		"-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.log.dir="+s.Dir,
		"-cp", cp,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", s.cfgPath)
	cmd.Dir = s.Dir
	p, err := startProcess(cmd, s.logPath(), 0o644)
	if err != nil {
		s.t.Fatalf("zookeeper: start java: %v (%s)", err, zkInstallHint)
	}
	s.proc = p
}

// Running reports whether the server process is running.
func (s *ZooKeeperServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc.running()
}

// Start starts a stopped server again (same data directory and ports) and
// waits until it serves requests, which for an ensemble member needs a
// quorum of running servers.
func (s *ZooKeeperServer) Start() {
	s.t.Helper()
	s.launch()
	s.waitServing()
}

// Stop stops the server with SIGTERM (SIGKILL after 10 s) and waits for the
// process to exit. Stopping a stopped server does nothing.
func (s *ZooKeeperServer) Stop() { s.stop(syscall.SIGTERM) }

// Kill stops the server with SIGKILL, like a crash.
func (s *ZooKeeperServer) Kill() { s.stop(syscall.SIGKILL) }

func (s *ZooKeeperServer) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.stop(sig, zkStopTimeout)
	s.proc = nil
}

// waitServing waits until the server answers "srvr" with a mode (standalone,
// leader or follower), which it does only once it serves client requests.
func (s *ZooKeeperServer) waitServing() {
	s.t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("zookeeper %d: not started", s.ID)
	}
	err := p.waitReady(zkStartTimeout, zkProbeInterval, func() error {
		out, err := ZooKeeperCommand(s.Addr(), "srvr")
		if err == nil && !strings.Contains(out, "Mode: ") {
			err = fmt.Errorf("not serving yet: %q", strings.TrimSpace(out))
		}
		return err
	})
	if errors.Is(err, errExited) {
		s.t.Fatalf("zookeeper %d exited during start-up; log:\n%s", s.ID, tail(s.logPath()))
	}
	if err != nil {
		s.t.Fatalf("zookeeper %d on %s: %v; log:\n%s", s.ID, s.Addr(), err, tail(s.logPath()))
	}
}

func (s *ZooKeeperServer) logPath() string { return filepath.Join(s.Dir, "zk.log") }

// ZooKeeperCommand sends a four-letter-word command ("ruok", "srvr", "mntr")
// and returns the answer. The whole exchange is bounded by one second: a
// probe that arrives while the server is still loading its database is never
// answered (ZooKeeper 3.8 bug).
func ZooKeeperCommand(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, zkProbeTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(zkProbeTimeout))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return buf.String(), err
	}
	return buf.String(), nil
}
