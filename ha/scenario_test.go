package ha_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha/internal/sim"
)

// TestScenarios runs the data-driven stories in testdata/scenarios (the
// main stories of spec/acceptance-scenarios.md, each file citing its
// section). Every command prints what the cluster did since the previous
// command: decision messages with their actions, promotions, key expiries.
// Regenerate with: go test ./ha -run TestScenarios -rewrite
//
// Commands:
//
//	cluster nodes=3 ttl=30s loop_wait=10s retry_timeout=10s sync=off tag=n2:nofailover=true
//	advance 10s
//	kill n1 | crash n1 (machine) | crash-pg n1 | shutdown n1 | restart n1
//	freeze n1 40s | partition n1 | heal n1 | slow n1
//	switchover from=n1 [to=n2] [in=20s] | failover to=n2
//	config key=value  (synchronous_mode=on, pause=true, primary_start_timeout=0, ...)
//	status
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		var w *sim.World
		seen := 0
		flush := func() string {
			var b strings.Builder
			for _, l := range w.Script[seen:] {
				b.WriteString(strings.TrimSpace(l) + "\n")
			}
			seen = len(w.Script)
			if len(w.Violations) > 0 {
				b.WriteString("VIOLATIONS: " + strings.Join(w.Violations, "; ") + "\n")
			}
			if b.Len() == 0 {
				return "ok\n"
			}
			return b.String()
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(i int) string {
				if i < len(d.CmdArgs) {
					return d.CmdArgs[i].String()
				}
				t.Fatalf("%s: missing argument %d", d.Pos, i)
				return ""
			}
			node := func() *sim.Node {
				n := w.Node(arg(0))
				if n == nil {
					t.Fatalf("%s: no node %s", d.Pos, arg(0))
				}
				return n
			}
			dur := func(s string) time.Duration {
				v, err := time.ParseDuration(s)
				if err != nil {
					t.Fatalf("%s: %v", d.Pos, err)
				}
				return v
			}
			switch d.Cmd {
			case "cluster":
				opt := sim.Options{Seed: 1, NoFaults: true, Nodes: 3, Tags: map[string]map[string]any{}}
				for _, a := range d.CmdArgs {
					v := ""
					if len(a.Vals) > 0 {
						v = a.Vals[0]
					}
					switch a.Key {
					case "nodes":
						opt.Nodes, _ = strconv.Atoi(v)
					case "ttl":
						opt.TTL = dur(v)
					case "loop_wait":
						opt.LoopWait = dur(v)
					case "retry_timeout":
						opt.RetryTimeout = dur(v)
					case "sync":
						opt.SyncMode = v
					case "tag":
						// tag=n2:nofailover=true
						name, kv, _ := strings.Cut(strings.Join(a.Vals, ","), ":")
						k, val, _ := strings.Cut(kv, "=")
						if opt.Tags[name] == nil {
							opt.Tags[name] = map[string]any{}
						}
						opt.Tags[name][k] = parseVal(val)
					}
				}
				w = sim.New(opt)
				return "ok\n"
			case "advance":
				w.Advance(dur(arg(0)))
			case "kill":
				w.Kill(node())
			case "crash":
				n := node()
				w.Kill(n)
				n.PG.Crash()
			case "crash-pg":
				node().PG.Crash()
			case "shutdown":
				w.Shutdown(node())
			case "restart":
				w.Restart(node())
			case "freeze":
				n := node()
				n.FrozenUntil = w.Clock.Now().Add(dur(arg(1)))
			case "partition":
				node().Store.Cut = true
			case "heal":
				n := node()
				n.Store.Cut, n.PeerCut, n.ReplCut = false, false, false
			case "slow":
				node().PG.Slow = true
			case "broken":
				node().PG.Broken = true
			case "switchover", "failover":
				f := &dcs.Failover{}
				for _, a := range d.CmdArgs {
					switch a.Key {
					case "from":
						f.Leader = a.Vals[0]
					case "to":
						f.Candidate = a.Vals[0]
					case "in":
						at := w.Clock.Now().Add(dur(a.Vals[0]))
						f.ScheduledAt = &at
					}
				}
				w.DCS.SetFailoverKey(f)
			case "config":
				for _, a := range d.CmdArgs {
					w.SetConfig(a.Key, parseVal(a.Vals[0]))
				}
			case "status":
				flush()
				return status(w)
			default:
				t.Fatalf("%s: unknown command %s", d.Pos, d.Cmd)
			}
			return flush()
		})
	})
}

func parseVal(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return s
}

func status(w *sim.World) string {
	var b strings.Builder
	fmt.Fprintf(&b, "leader=%s", orDash(w.DCS.Leader()))
	if s := w.DCS.Sync(); s != nil {
		fmt.Fprintf(&b, " sync=%s:%v quorum=%d", s.Leader, s.Standbys, s.Quorum)
	}
	b.WriteString("\n")
	for _, n := range w.Nodes {
		p := n.PG
		role := "stopped"
		switch {
		case p.Running && p.Primary:
			role = "primary"
		case p.Running:
			role = "replica(" + orDash(p.Upstream) + ")"
			if p.Streaming {
				role += " streaming"
			}
		}
		daemon := "up"
		if !n.Alive {
			daemon = "down"
		}
		fmt.Fprintf(&b, "%s: daemon=%s pg=%s tl=%d lsn=%s", n.Name, daemon, role, p.TL.Num, p.LSN)
		if len(p.SSN) > 0 || p.Placeholder {
			fmt.Fprintf(&b, " ssn=%v placeholder=%v", p.SSN, p.Placeholder)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
