package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// RepoRoot finds the module root the daemon is built from.
func TestRepoRoot(t *testing.T) {
	_, err := os.Stat(filepath.Join(RepoRoot(), "go.mod"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(RepoRoot(), "examples", "reference-daemon"))
	require.NoError(t, err)
}

// PostmasterPID reads the first line of postmaster.pid; a missing file is 0.
func TestDaemonNodePostmasterPID(t *testing.T) {
	tests := []struct {
		name, content string
		want          int
	}{
		{name: "missing", want: 0},
		{name: "pid file", content: "4242\n/data\n1700000000\n5432\n", want: 4242},
		{name: "garbage", content: "x\n", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &DaemonNode{DataDir: t.TempDir()}
			if tc.content != "" {
				require.NoError(t, os.WriteFile(filepath.Join(n.DataDir, "postmaster.pid"), []byte(tc.content), 0o600))
			}
			require.Equal(t, tc.want, n.PostmasterPID())
		})
	}
}

// A node that was never started stops and reports not running without
// blocking.
func TestDaemonNodeNotStarted(t *testing.T) {
	n := &DaemonNode{}
	require.False(t, n.Running())
	n.Stop(0)
	n.Kill()
	n.KillPostmaster()
}
