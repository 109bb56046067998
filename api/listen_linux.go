package api

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listenConfig sets TCP keep-alive once, on the listening socket: Linux
// copies the socket options of a listener to every connection it accepts.
// Go would otherwise make four setsockopt calls on each accepted
// connection, a tenth of the server's CPU time per health check that opens
// a connection for one request (api/BENCHMARKS.md).
func listenConfig() net.ListenConfig {
	return net.ListenConfig{
		KeepAlive: -1, // no per-connection setup: inherited from the listener
		Control: func(_, address string, c syscall.RawConn) error {
			var errs []error
			err := c.Control(func(fd uintptr) {
				for _, o := range []struct {
					name       string
					level, opt int
					value      int
				}{
					{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
					{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
					{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
					{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
				} {
					if err := unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); err != nil {
						errs = append(errs, fmt.Errorf("api: listen %s: set %s: %w", address, o.name, err))
					}
				}
			})
			return errors.Join(err, errors.Join(errs...))
		},
	}
}
