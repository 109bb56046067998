package callbacks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Event is one of the five Patroni callback events.
type Event int

// The callback events, in the order of spec/postgres.md §11.
const (
	OnStart Event = iota + 1
	OnStop
	OnRestart
	OnReload
	OnRoleChange
)

var eventNames = map[Event]string{
	OnStart:      "on_start",
	OnStop:       "on_stop",
	OnRestart:    "on_restart",
	OnReload:     "on_reload",
	OnRoleChange: "on_role_change",
}

// String returns the Patroni name of the event ("on_role_change"), which is
// also the ACTION argument passed to scripts.
func (e Event) String() string {
	if s, ok := eventNames[e]; ok {
		return s
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// ParseEvent returns the event with the given Patroni name.
func ParseEvent(s string) (Event, error) {
	for e, n := range eventNames {
		if n == s {
			return e, nil
		}
	}
	return 0, fmt.Errorf("callbacks: unknown event %q", s)
}

// Events lists every event in a stable order.
func Events() []Event { return []Event{OnStart, OnStop, OnRestart, OnReload, OnRoleChange} }

// Callback is user code run for an event. Run is called from an executor
// goroutine, never from the caller of Fire, and must return soon after ctx
// is cancelled (a newer callback or the timeout cancels it).
type Callback interface {
	Run(ctx context.Context, ev Event, role, scope string) error
}

// Func adapts a Go function to Callback.
type Func func(ctx context.Context, ev Event, role, scope string) error

// Run calls f.
func (f Func) Run(ctx context.Context, ev Event, role, scope string) error {
	return f(ctx, ev, role, scope)
}

// Script is an external program run without a shell as
// Argv... ACTION ROLE SCOPE (spec/postgres.md §11).
type Script struct {
	// Argv is the program and its leading arguments.
	Argv []string
	// Env is added to the inherited environment ("KEY=value").
	Env []string
	// SysProcAttr, when set, is used for the process (for example to run it
	// as another user); Setpgid is always forced so that the whole process
	// group can be killed.
	SysProcAttr *syscall.SysProcAttr
	// Output receives stdout and stderr; nil discards them.
	Output *os.File
}

// ParseScript splits a Patroni callback command line the way Python's
// shlex.split does and returns the Script.
func ParseScript(cmdline string) (*Script, error) {
	argv, err := Split(cmdline)
	if err != nil {
		return nil, fmt.Errorf("callbacks: parse command %q: %w", cmdline, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("callbacks: parse command %q: empty command", cmdline)
	}
	return &Script{Argv: argv}, nil
}

// waitDelay bounds how long a killed script's pipes may stay open.
const waitDelay = 2 * time.Second

// Run starts the script and waits for it. When ctx ends the whole process
// group gets SIGKILL, so children the script started die too.
func (s *Script) Run(ctx context.Context, ev Event, role, scope string) error {
	if len(s.Argv) == 0 {
		return errors.New("callbacks: script has no command")
	}
	args := append(append([]string{}, s.Argv[1:]...), ev.String(), role, scope)
	cmd := exec.CommandContext(ctx, s.Argv[0], args...)
	attr := &syscall.SysProcAttr{}
	if s.SysProcAttr != nil {
		a := *s.SysProcAttr
		attr = &a
	}
	attr.Setpgid = true
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	if s.Output != nil {
		cmd.Stdout, cmd.Stderr = s.Output, s.Output
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("callbacks: run %s %s: %w", s.Argv[0], ev, err)
	}
	return nil
}

// Split splits a command line into words like Python's shlex.split in
// POSIX mode: whitespace separates words, single quotes keep everything
// literally, double quotes allow backslash escapes of \ " $ `, and a
// backslash outside quotes escapes the next character.
func Split(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && r != '\\' && r != '"' && r != '$' && r != '`' && r != '\n' {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if escaped {
		return nil, errors.New("no escaped character")
	}
	if quote != 0 {
		return nil, errors.New("no closing quotation")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
