package zookeeper

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// errAbandoned is what the dialer of an abandoned session returns, so that
// the client stops reconnecting.
var errAbandoned = errors.New("zookeeper: session abandoned")

// session is one go-zookeeper connection and the ZooKeeper session(s) it
// holds. go-zookeeper opens a new session by itself when the server reports
// the old one expired; the session id then changes, and every ephemeral
// znode of the old id is gone.
type session struct {
	conn  *zk.Conn
	hosts *hostList
	ttl   time.Duration

	// abandoned makes the dialer refuse, so that Close can leave the
	// session to expire on the server instead of closing it (which would
	// delete the ephemeral znodes at once).
	abandoned atomic.Bool

	mu      sync.Mutex
	netConn net.Conn // the connection to the current server, or nil
	// ephemeralsOf is the session id that created an ephemeral znode
	// through this Store, 0 when none: the liveness check only ends
	// sessions that own something.
	ephemeralsOf int64
}

// dialer returns the go-zookeeper Dialer of this session.
func (ss *session) dialer(cfg *Config, tlsCfg *tls.Config) zk.Dialer {
	timeout := max(time.Second, cfg.RetryTimeout/2)
	return func(network, address string, _ time.Duration) (net.Conn, error) {
		if ss.abandoned.Load() {
			return nil, errAbandoned
		}
		var (
			c   net.Conn
			err error
		)
		switch {
		case cfg.Dial != nil:
			c, err = cfg.Dial(network, address, timeout)
		case tlsCfg != nil:
			tc := tlsCfg.Clone()
			if tc.ServerName == "" {
				if host, _, err := net.SplitHostPort(address); err == nil {
					tc.ServerName = host
				}
			}
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, network, address, tc)
		default:
			c, err = net.DialTimeout(network, address, timeout)
		}
		if err != nil {
			return nil, err
		}
		c = &handshakeConn{Conn: c, limit: timeout}
		ss.mu.Lock()
		ss.netConn = c
		ss.mu.Unlock()
		if ss.abandoned.Load() {
			c.Close()
			return nil, errAbandoned
		}
		return c, nil
	}
}

// handshakeConn bounds the wait for the server's answer to the session
// handshake by the connect timeout. go-zookeeper waits ten read timeouts
// (6.7 ttl) for it, and a ZooKeeper 3.8 server that is still loading its
// database accepts connections and never answers them, so a client that
// reconnects at that moment would be stuck for about 27 s with ttl 4 s
// (minutes with ttl 30 s).
type handshakeConn struct {
	net.Conn
	limit time.Duration
	done  atomic.Bool // the first answer started arriving
}

func (c *handshakeConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		// go-zookeeper clears the deadline once the handshake answer's
		// length arrived; from then on its own timeouts apply.
		c.done.Store(true)
	} else if !c.done.Load() {
		if limit := time.Now().Add(c.limit); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// dropConnection closes the connection to the current server; the client
// reconnects (to the next host) and keeps its session.
func (ss *session) dropConnection() {
	ss.mu.Lock()
	c := ss.netConn
	ss.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// abandon stops the client without closing the session: the server expires
// it (and its ephemeral znodes) after the session timeout, as if this
// process had died.
func (ss *session) abandon() {
	ss.abandoned.Store(true)
	ss.dropConnection()
	go ss.conn.Close() // its closeSession request finds no connection
}

// close ends the session: the server deletes its ephemeral znodes at once.
// It waits for the client at most until ctx is done.
func (ss *session) close(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		ss.conn.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// hostList is a zk.HostProvider over a list of "host:port" that can be
// replaced while connected (Exhibitor). It hands out hosts round robin;
// retryStart is true once every host was tried since the last success, and
// go-zookeeper then pauses one second before the next attempt.
type hostList struct {
	mu    sync.Mutex
	hosts []string
	curr  int
	last  int
}

func newHostList(hosts []string) *hostList {
	return &hostList{hosts: slices.Clone(hosts), curr: -1, last: -1}
}

// Init is called by zk.Connect with the (shuffled) hosts; the list given
// to newHostList stays authoritative.
func (h *hostList) Init([]string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.hosts) == 0 {
		return errors.New("zookeeper: no hosts")
	}
	return nil
}

func (h *hostList) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.hosts)
}

func (h *hostList) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.curr = (h.curr + 1) % len(h.hosts)
	retryStart := h.curr == h.last
	if h.last == -1 {
		h.last = 0
	}
	return h.hosts[h.curr], retryStart
}

func (h *hostList) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = h.curr
}

// set replaces the list; it reports whether it changed.
func (h *hostList) set(hosts []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(hosts) == 0 || slices.Equal(h.hosts, hosts) {
		return false
	}
	h.hosts = slices.Clone(hosts)
	h.curr, h.last = -1, -1
	return true
}

func (h *hostList) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.hosts)
}

// zkLogger sends go-zookeeper's log lines to slog at Debug: it logs every
// reconnect attempt, which is noise at Info.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Debug(fmt.Sprintf(format, args...))
}

// isConnErr reports whether err means "no answer from ZooKeeper" (the
// outcome of a write is then unknown).
func isConnErr(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) ||
		errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, errAbandoned)
}
