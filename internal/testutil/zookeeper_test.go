package testutil

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The servers here back dcs/zookeeper's tests (spec/dcs-layout.md §7); these
// tests only check that they start, serve, stop and restart.

func TestZooKeeperStandalone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ZooKeeper server")
	}
	s := StartZooKeeper(t)
	out, err := ZooKeeperCommand(s.Addr(), "srvr")
	require.NoError(t, err)
	require.Contains(t, out, "Mode: standalone")

	s.Stop()
	require.False(t, s.Running())
	_, err = ZooKeeperCommand(s.Addr(), "ruok")
	require.Error(t, err, "stopped server still answers")

	s.Start()
	out, err = ZooKeeperCommand(s.Addr(), "ruok")
	require.NoError(t, err)
	require.Equal(t, "imok", out)
}

func TestZooKeeperEnsemble(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three ZooKeeper servers")
	}
	e := StartZooKeeperEnsemble(t)
	require.Len(t, e.Hosts(), 3)
	modes := map[string]int{}
	for _, s := range e.Servers {
		out, err := ZooKeeperCommand(s.Addr(), "srvr")
		require.NoError(t, err)
		for _, line := range strings.Split(out, "\n") {
			if m, ok := strings.CutPrefix(line, "Mode: "); ok {
				modes[strings.TrimSpace(m)]++
			}
		}
	}
	require.Equal(t, map[string]int{"leader": 1, "follower": 2}, modes)

	// Two of three keep the quorum.
	e.Servers[0].Stop()
	for _, s := range e.Servers[1:] {
		s.waitServing()
	}
	e.Servers[0].Start()
}
