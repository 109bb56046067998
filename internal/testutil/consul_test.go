package testutil

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ARCHITECTURE.md "Tests: tiers": a real Consul on random loopback ports,
// stopped and restarted on the same ports, with ACLs when asked.
func TestConsulAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	a := StartConsul(t)
	require.True(t, strings.HasPrefix(a.Addr(), "127.0.0.1:"))
	require.NoError(t, a.probe())

	a.Stop()
	require.Error(t, a.probe(), "stopped agent must not answer")
	a.Start()
	require.NoError(t, a.probe(), "restarted on the same port")

	a.Kill()
	require.Error(t, a.probe())
}

func TestConsulAgentACL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	const root = "0b8b7f43-0b8d-4a4a-8d2f-1f1a8c5d9e11"
	a := StartConsulWith(t, ConsulOptions{
		HCL:             []string{`acl { enabled = true, default_policy = "deny", tokens { initial_management = "` + root + `", agent = "` + root + `" } }`},
		ManagementToken: root,
	})
	_, err := a.get("/v1/agent/self")
	require.NoError(t, err, "the management token reads")
	a.token = ""
	_, err = a.get("/v1/agent/self")
	require.Error(t, err, "no token: denied")
}

func TestConsulBinaryPath(t *testing.T) {
	t.Setenv("PGWARDEN_CACHE", t.TempDir())
	require.Equal(t, "consul", ConsulBinary(), "falls back to PATH when the cache has none")
}
