package api

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// spec/rest-api.md §1: accepted connections have TCP keep-alive (idle
// 10 s, probes 10 s apart, 3 probes). The options are set on the listener
// only, so this checks that the kernel hands them to accepted sockets.
func TestListenKeepAlive(t *testing.T) {
	ln, err := listenTCP(t.Context(), "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	raw, err := s.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	got := map[string]int{}
	var errs []error
	require.NoError(t, raw.Control(func(fd uintptr) {
		for name, o := range map[string][2]int{
			"SO_KEEPALIVE":  {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
			"TCP_KEEPIDLE":  {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
			"TCP_KEEPCNT":   {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		} {
			v, err := unix.GetsockoptInt(int(fd), o[0], o[1])
			errs = append(errs, err)
			got[name] = v
		}
	}))
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}, got)
}
