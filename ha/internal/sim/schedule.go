package sim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// Result is the outcome of one run.
type Result struct {
	Seed       uint64
	Violations []string
	Script     []string
	Promotions int
}

// Failed reports whether an invariant broke.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// Report renders a failing run as a replayable script.
func (r Result) Report(opt Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (nodes=%d steps=%d ttl=%s loop_wait=%s retry_timeout=%s sync=%s) violated:\n", r.Seed, opt.Nodes, opt.Steps, opt.TTL, opt.LoopWait, opt.RetryTimeout, opt.SyncMode)
	for _, v := range r.Violations {
		b.WriteString("  " + v + "\n")
	}
	fmt.Fprintf(&b, "replay: go test ./ha -run TestSimulate -simulate.seed=%d -simulate.steps=%d -v\nscript:\n", r.Seed, opt.Steps)
	for _, s := range r.Script {
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// Run bootstraps the cluster, runs Steps random steps, heals every fault
// and checks convergence (invariant f).
func Run(opt Options) Result {
	w := New(opt)
	w.Advance(3 * w.lw)
	if !w.Opt.NoFaults {
		for range w.Opt.Steps {
			w.Advance(time.Duration(1+w.rng.IntN(30)) * tick)
			if w.rng.IntN(3) == 0 {
				w.fault()
			}
			if len(w.Violations) > 0 {
				break
			}
		}
	}
	if len(w.Violations) == 0 {
		w.HealAll()
		w.Converge()
	}
	return Result{Seed: opt.Seed, Violations: w.Violations, Script: w.Script, Promotions: len(w.Promotions)}
}

func (w *World) pick() *Node { return w.Nodes[w.rng.IntN(len(w.Nodes))] }

// Kill stops a node's daemon without stopping Postgres (SIGKILL).
func (w *World) Kill(n *Node) {
	n.Alive = false
	w.logf("kill %s", n.Name)
}

// Restart starts a fresh daemon on the node.
func (w *World) Restart(n *Node) {
	w.startNode(n)
	w.logf("restart %s", n.Name)
}

// Shutdown is a clean daemon stop (SIGTERM).
func (w *World) Shutdown(n *Node) {
	w.logf("shutdown %s", n.Name)
	_ = n.Node.Shutdown(context.Background())
	n.Alive = false
}

// fault injects one random fault.
func (w *World) fault() {
	n := w.pick()
	now := w.Clock.Now()
	leader := w.DCS.leader
	switch k := w.rng.IntN(23); k {
	case 0:
		if n.Alive {
			w.Kill(n)
		}
	case 1, 2:
		if !n.Alive {
			w.Restart(n)
		}
	case 3:
		if n.Alive {
			w.Shutdown(n)
		}
	case 4:
		w.logf("crash postgres on %s", n.Name)
		n.PG.Crash()
	case 5:
		if n.Alive {
			w.Kill(n)
			n.PG.Crash()
			w.logf("crash machine %s", n.Name)
		}
	case 6:
		n.Store.Cut = !n.Store.Cut
		w.logf("dcs partition %s = %v", n.Name, n.Store.Cut)
	case 7:
		n.PeerCut = !n.PeerCut
		w.logf("peer partition %s = %v", n.Name, n.PeerCut)
	case 8:
		n.Store.Cut, n.PeerCut, n.ReplCut = true, true, true
		w.logf("isolate %s", n.Name)
	case 9:
		n.Store.Cut, n.PeerCut, n.ReplCut, n.Store.Lossy = false, false, false, false
		w.logf("heal %s", n.Name)
	case 10:
		d := w.ttl + time.Duration(w.rng.Int64N(int64(w.ttl)))
		n.FrozenUntil = now.Add(d)
		w.logf("freeze %s for %s", n.Name, d)
	case 11:
		d := w.ttl/2 + time.Duration(w.rng.Int64N(int64(2*w.ttl)))
		w.DCS.outage, w.outageUntil = true, now.Add(d)
		w.logf("dcs outage for %s", d)
	case 12:
		if leader != "" {
			cand := w.pick().Name
			if cand == leader || w.rng.IntN(4) == 0 {
				cand = ""
			}
			f := &dcs.Failover{Leader: leader, Candidate: cand}
			if w.rng.IntN(4) == 0 {
				at := now.Add(time.Duration(w.rng.IntN(30)) * time.Second)
				f.ScheduledAt = &at
			}
			w.DCS.SetFailoverKey(f)
			w.logf("switchover from %s to %q scheduled=%v", leader, cand, f.ScheduledAt != nil)
		}
	case 13:
		w.DCS.SetFailoverKey(&dcs.Failover{Candidate: n.Name})
		w.logf("failover to %s", n.Name)
	case 14:
		w.paused = !w.paused
		w.writeConfig()
		w.logf("pause = %v", w.paused)
	case 15:
		modes := []string{"off", "on", "strict", "quorum"}
		w.syncMode = modes[w.rng.IntN(len(modes))]
		if w.syncMode == "off" {
			w.syncAcked = nil
		}
		w.writeConfig()
		w.logf("synchronous mode = %s", w.syncMode)
	case 16:
		timings := [][3]time.Duration{{30 * time.Second, 10 * time.Second, 10 * time.Second}, {5 * time.Second, time.Second, 2 * time.Second}, {10 * time.Second, 2 * time.Second, 3 * time.Second}}
		t := timings[w.rng.IntN(len(timings))]
		w.ttl, w.lw, w.rt = t[0], t[1], t[2]
		w.writeConfig()
		w.logf("ttl=%s loop_wait=%s retry_timeout=%s", w.ttl, w.lw, w.rt)
	case 17:
		n.PG.Slow = !n.PG.Slow
		w.logf("slow replication on %s = %v", n.Name, n.PG.Slow)
	case 18:
		n.PG.Broken = !n.PG.Broken
		w.logf("postgres on %s broken = %v", n.Name, n.PG.Broken)
	case 19:
		n.Store.Lossy = !n.Store.Lossy
		w.logf("lossy dcs replies for %s = %v", n.Name, n.Store.Lossy)
	case 20:
		// POST /restart: the request is queued for the loop (the
		// cancelled context only stops the caller from waiting).
		if n.Alive {
			err := n.Node.Restart(cancelled, ha.RestartRequest{})
			w.logf("restart request on %s: %v", n.Name, err)
		}
	case 21:
		if n.Alive {
			err := n.Node.Reinitialize(cancelled, ha.ReinitializeRequest{Force: w.rng.IntN(2) == 0})
			w.logf("reinitialize request on %s: %v", n.Name, err)
		}
	case 22:
		if n.Alive {
			at := now.Add(time.Duration(w.rng.IntN(20)) * time.Second)
			err := n.Node.ScheduleRestart(at, ha.RestartRequest{})
			w.logf("restart of %s scheduled at +%s: %v", n.Name, at.Sub(now), err)
		}
	}
}

var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// HealAll removes every fault and restarts dead daemons.
func (w *World) HealAll() {
	w.logf("heal all")
	w.DCS.outage = false
	if w.paused {
		w.paused = false
		w.writeConfig()
	}
	for _, n := range w.Nodes {
		n.Store.Cut, n.Store.Lossy, n.PeerCut, n.ReplCut = false, false, false, false
		n.PG.Broken, n.PG.Slow = false, false
		n.FrozenUntil = time.Time{}
		if !n.Alive {
			w.startNode(n)
		}
	}
}

// Converge runs until the cluster has one primary holding the key and
// every other node streams from it on its timeline, or reports (f).
func (w *World) Converge() {
	bound := 4*w.ttl + 10*w.lw + 30*time.Second
	deadline := w.Clock.Now().Add(bound)
	for w.Clock.Now().Before(deadline) {
		w.Advance(time.Second)
		if len(w.Violations) > 0 {
			return
		}
		if w.converged() == "" {
			return
		}
	}
	w.violate("(f) no convergence within %s: %s (sync=%+v failover=%+v)", bound, w.converged(), w.DCS.sync, w.DCS.failover)
}

func (w *World) converged() string {
	l := w.DCS.Leader()
	if l == "" {
		return "no leader"
	}
	lp := w.pg(l)
	if !lp.Running || !lp.Primary {
		return "leader " + l + " is not a running primary"
	}
	for _, n := range w.Nodes {
		if n.Name == l {
			continue
		}
		p := n.PG
		if !p.Running || p.Primary || !p.Streaming || p.TL != lp.TL || p.Upstream != l {
			return fmt.Sprintf("%s not streaming from %s (running=%v primary=%v streaming=%v up=%q tl=%d/%d last=%q)", n.Name, l, p.Running, p.Primary, p.Streaming, p.Upstream, p.TL.Num, lp.TL.Num, n.LastMsg)
		}
	}
	return ""
}

// Timing is one measured failover.
type Timing struct {
	// SinceFault is from the fault (crash, shutdown, switchover request)
	// to the promotion; SinceExpiry from the old leader key's expiry (crash
	// only) to the promotion. Negative when no promotion happened.
	SinceFault, SinceExpiry time.Duration
}

// Measure bootstraps a quiet cluster, injects one fault on the leader
// ("crash", "shutdown" or "switchover") after a random quiet period and
// measures the time to the next promotion.
func Measure(opt Options, fault string) Timing {
	opt.NoFaults = true
	w := New(opt)
	w.Advance(3*w.lw + time.Duration(w.rng.IntN(300))*tick)
	leader := w.node(w.DCS.Leader())
	if leader == nil {
		return Timing{-1, -1}
	}
	t0 := w.Clock.Now()
	before := len(w.Promotions)
	switch fault {
	case "crash":
		w.Kill(leader)
		leader.PG.Crash()
	case "shutdown":
		w.Shutdown(leader)
	case "switchover":
		var cand string
		for _, n := range w.Nodes {
			if n != leader {
				cand = n.Name
				break
			}
		}
		w.DCS.SetFailoverKey(&dcs.Failover{Leader: leader.Name, Candidate: cand})
	}
	for end := t0.Add(3*w.ttl + 10*w.lw); w.Clock.Now().Before(end) && len(w.Promotions) == before; {
		w.Clock.Step(tick)
		w.Tick()
	}
	if len(w.Promotions) == before {
		return Timing{-1, -1}
	}
	p := w.Promotions[before].At
	t := Timing{SinceFault: p.Sub(t0), SinceExpiry: -1}
	for _, e := range w.Expiries {
		if !e.Before(t0) {
			t.SinceExpiry = p.Sub(e)
			break
		}
	}
	return t
}
