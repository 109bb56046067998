package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startShell starts sh -c script as a process logging to a temp file.
func startShell(t *testing.T, script string, group bool) (*process, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "proc.log")
	cmd := exec.Command("sh", "-c", script)
	if group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	p, err := startProcess(cmd, log, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() {
		if p.running() {
			p.stop(syscall.SIGKILL, time.Second)
		}
	})
	return p, log
}

func TestProcess(t *testing.T) {
	t.Run("ready, then stopped", func(t *testing.T) {
		p, log := startShell(t, "echo ready; exec sleep 60", false)
		require.True(t, p.running())
		require.NoError(t, p.waitReady(10*time.Second, 10*time.Millisecond, func() error {
			b, _ := os.ReadFile(log)
			if !strings.Contains(string(b), "ready") {
				return errors.New("not ready")
			}
			return nil
		}))
		p.stop(syscall.SIGTERM, 10*time.Second)
		require.False(t, p.running())
	})
	t.Run("exits during start-up", func(t *testing.T) {
		p, _ := startShell(t, "exit 3", false)
		err := p.waitReady(10*time.Second, 10*time.Millisecond, func() error { return errors.New("not ready") })
		require.ErrorIs(t, err, errExited)
	})
	t.Run("never ready", func(t *testing.T) {
		p, _ := startShell(t, "exec sleep 60", false)
		probe := errors.New("not ready")
		err := p.waitReady(100*time.Millisecond, 10*time.Millisecond, func() error { return probe })
		require.ErrorIs(t, err, probe)
		require.NotErrorIs(t, err, errExited)
		require.True(t, p.running())
	})
	t.Run("ignores SIGTERM: killed after the grace", func(t *testing.T) {
		p, log := startShell(t, `trap "" TERM; echo trapped; while :; do sleep 0.05; done`, true)
		require.NoError(t, p.waitReady(10*time.Second, 10*time.Millisecond, func() error {
			if b, _ := os.ReadFile(log); !strings.Contains(string(b), "trapped") {
				return errors.New("trap not set yet")
			}
			return nil
		}))
		start := time.Now()
		p.stop(syscall.SIGTERM, 200*time.Millisecond)
		require.False(t, p.running())
		require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "waited out the grace")
	})
	t.Run("a nil process is not running", func(t *testing.T) {
		var p *process
		require.False(t, p.running())
	})
}
