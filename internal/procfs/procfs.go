// Package procfs reads the few fields of Linux's /proc/<pid>/stat that
// pgwarden needs: a process's (or thread's) state and its parent.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Stat holds fields of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat
// file.
type Stat struct {
	// State is the one-letter state: R running, S sleeping, D disk
	// sleep, Z zombie, T stopped by a signal, t stopped by a tracer, ...
	State byte
	// PPID is the parent's process id.
	PPID int
}

// ReadStat reads and parses the stat file at path. An exited process's
// file is gone: the error then wraps fs.ErrNotExist (or ESRCH).
func ReadStat(path string) (Stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	return parseStat(b)
}

// Path returns the stat file of process pid.
func Path(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/stat" }

// parseStat parses "pid (comm) state ppid ...". The command name may hold
// spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("procfs: malformed stat %q", b)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("procfs: malformed stat %q", b)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return Stat{}, fmt.Errorf("procfs: malformed stat %q: ppid: %w", b, err)
	}
	return Stat{State: f[0][0], PPID: ppid}, nil
}
