package testutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/internal/procfs"
)

// process is one server process a helper started (a daemon, ZooKeeper,
// Consul, etcd, kube-apiserver): its output goes to a log file, and done
// closes once it has exited and the log is closed. The owner keeps it
// under its own mutex and drops it after a stop, so that Start can launch
// a new one.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// errExited is returned by waitReady when the process exits first.
var errExited = errors.New("exited during start-up")

// startProcess starts cmd with stdout and stderr appended to logPath
// (created with perm if missing).
func startProcess(cmd *exec.Cmd, logPath string, perm os.FileMode) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, perm)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// running reports whether p was started and has not exited; p may be nil.
func (p *process) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process, or to its whole process group when it
// was started in a group of its own (SysProcAttr.Setpgid), so that what it
// forked gets the signal too.
func (p *process) signal(sig syscall.Signal) error {
	if a := p.cmd.SysProcAttr; a != nil && a.Setpgid {
		return syscall.Kill(-p.pid(), sig)
	}
	return p.cmd.Process.Signal(sig)
}

// waitStopped waits up to timeout until every thread of the process is
// stopped by a SIGSTOP sent before. kill(2) returns as soon as the signal
// is queued: the kernel wakes one thread, which then stops the others, and
// on a loaded machine the rest keep running (and answering requests) for
// milliseconds.
func (p *process) waitStopped(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running, err := runningThreads(p.pid())
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads of pid %d still not stopped after %s", running, p.pid(), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads counts the threads of pid not in the stopped state.
func runningThreads(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("list threads: %w", err)
	}
	running := 0
	for _, task := range tasks {
		st, err := procfs.ReadStat(filepath.Join(dir, task.Name(), "stat"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread exited
		}
		if err != nil {
			return 0, err
		}
		if st.State != 'T' && st.State != 't' {
			running++
		}
	}
	return running, nil
}

// wait waits up to timeout for the exit and reports whether it came.
func (p *process) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop sends sig, waits up to grace for the exit, then sends SIGKILL and
// waits for the exit.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	_ = p.signal(sig)
	if !p.wait(grace) {
		_ = p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// waitReady calls probe every interval until it returns nil. It returns
// errExited if the process exits first, and the last probe error once
// timeout has passed.
func (p *process) waitReady(timeout, interval time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if !p.running() {
			return errExited
		}
		err := probe()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		if p.wait(interval) {
			return errExited
		}
	}
}
