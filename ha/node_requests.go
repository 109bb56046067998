package ha

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// The methods below are what a REST API calls (POST /restart,
// /reinitialize, /failsafe, DELETE /restart). They are safe from any
// goroutine; the requests are carried out by the loop, so Decide sees them
// and every rule of the cycle (lease, sync, pause) applies.

// submit queues a request for the loop. It fails with a *BusyError when a
// background operation or another request is pending.
func (n *Node) submit(r Request) (chan error, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.op.Running && !(r.Kind == RequestReinitialize && r.Reinit.Force) {
		return nil, &BusyError{Op: n.op.Kind.String()}
	}
	if n.req != nil {
		what := "restart"
		if n.req.r.Kind == RequestReinitialize {
			what = "reinitialize"
		}
		return nil, &BusyError{Op: what}
	}
	reply := make(chan error, 1)
	n.req = &pendingRequest{r: r, reply: reply}
	return reply, nil
}

// takeRequest removes the pending request (of kind, or any when kind is 0)
// and returns its reply channel; nil when none. Loop goroutine.
func (n *Node) takeRequest(kind RequestKind) chan error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.req == nil || (kind != 0 && n.req.r.Kind != kind) {
		return nil
	}
	reply := n.req.reply
	n.req = nil
	return reply
}

// Restart restarts PostgreSQL now in its current role (spec/ha-loop.md
// §9.1) and waits until it runs again. The loop checks r's conditions
// (ErrRestartConditions), refuses while another operation runs
// (*BusyError), and on a synchronous replica first leaves sync duty
// (§7.6). When r.Timeout elapses first it returns ErrStillStarting; when
// ctx ends first the restart still goes on.
func (n *Node) Restart(ctx context.Context, r RestartRequest) error {
	reply, err := n.submit(Request{Kind: RequestRestart, Restart: r})
	if err != nil {
		return err
	}
	n.Wake()
	var timeout <-chan time.Time
	if r.Timeout > 0 {
		t := n.clk.NewTimer(r.Timeout)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case err := <-reply:
		if err != nil {
			return fmt.Errorf("restart %s: %w", n.cfg.Name, err)
		}
		return nil
	case <-timeout:
		return ErrStillStarting
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", n.cfg.Name, ctx.Err())
	}
}

// Reinitialize re-creates this replica from the leader or a clonefrom
// member (spec/ha-loop.md §9.3). It returns once the loop started the
// operation: ErrNoLeader, ErrIsLeader, a *BusyError (unless r.Force), or
// ErrDCSUnavailable otherwise.
func (n *Node) Reinitialize(ctx context.Context, r ReinitializeRequest) error {
	reply, err := n.submit(Request{Kind: RequestReinitialize, Reinit: r})
	if err != nil {
		return err
	}
	n.Wake()
	select {
	case err := <-reply:
		if err != nil {
			return fmt.Errorf("reinitialize %s: %w", n.cfg.Name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reinitialize %s: %w", n.cfg.Name, ctx.Err())
	}
}

// ScheduleRestart schedules a restart at `at` (spec/ha-loop.md §9.2). The
// schedule lives in memory, is published in the member key as
// scheduled_restart and is carried out by the loop at its time;
// ErrRestartScheduled when one exists, ErrPaused in maintenance mode.
func (n *Node) ScheduleRestart(at time.Time, r RestartRequest) error {
	if n.Status().Paused {
		return ErrPaused
	}
	n.mu.Lock()
	if n.scheduled != nil {
		n.mu.Unlock()
		return ErrRestartScheduled
	}
	n.scheduled = &ScheduledRestart{At: at, Restart: r, PostmasterStart: n.pgStart}
	n.mu.Unlock()
	n.Wake() // publish it
	return nil
}

// CancelScheduledRestart removes the scheduled restart and reports whether
// there was one.
func (n *Node) CancelScheduledRestart() bool {
	n.mu.Lock()
	had := n.scheduled != nil
	n.scheduled = nil
	n.mu.Unlock()
	if had {
		n.Wake()
	}
	return had
}

// ScheduledRestart returns the scheduled restart as published in the
// member key, nil when none.
func (n *Node) ScheduledRestart() *dcs.ScheduledRestart {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.scheduled == nil {
		return nil
	}
	return publishedRestart(n.scheduled)
}

// Failsafe records a failsafe heartbeat from the primary (spec/ha-loop.md
// §11): for ttl this node treats hb.Name as the leader of an unlocked
// cluster. It answers this node's WAL position (nil when unknown), or
// ErrRunningAsLeader when this node runs as primary.
func (n *Node) Failsafe(ctx context.Context, hb FailsafeHeartbeat) (*dcs.LSN, error) {
	st := n.Status()
	if st.Role == "primary" && st.State == "running" {
		return nil, ErrRunningAsLeader
	}
	until := n.clk.Now().Add(time.Duration(n.ttl.Load()))
	n.mu.Lock()
	n.failsafe = &FailsafeLeader{Name: hb.Name, ConnURL: hb.ConnURL, APIURL: hb.APIURL, Slots: maps.Clone(hb.Slots), Until: until}
	n.mu.Unlock()
	if st.LSN == 0 {
		return nil, nil
	}
	l := st.LSN
	return &l, nil
}

const pgTimeFormat = "2006-01-02 15:04:05.999999-07:00"

// publishedRestart renders a scheduled restart as the member key's
// scheduled_restart (spec/dcs-layout.md).
func publishedRestart(sr *ScheduledRestart) *dcs.ScheduledRestart {
	out := &dcs.ScheduledRestart{
		Schedule: sr.At.Format(time.RFC3339), Role: sr.Restart.Role,
		PostgresVersion: sr.Restart.PostgresVersionText, RestartPending: sr.Restart.RestartPending,
	}
	if !sr.PostmasterStart.IsZero() {
		out.PostmasterStartTime = sr.PostmasterStart.Format(pgTimeFormat)
	}
	if sr.Restart.Timeout > 0 {
		out.Timeout = strconv.FormatFloat(sr.Restart.Timeout.Seconds(), 'f', -1, 64)
	}
	return out
}

// leavingSyncTags are the tags published while leaving sync duty (§7.6).
func leavingSyncTags(tags map[string]any) map[string]any {
	out := maps.Clone(tags)
	if out == nil {
		out = map[string]any{}
	}
	out["nosync"] = true
	out["sync_priority"] = 0
	return out
}

// heartbeat is the body this primary POSTs to /failsafe (spec/ha-loop.md
// §11): its name and URLs, and its slot positions as /status.slots
// carries them, so replicas can move their slots while the DCS is down.
func (n *Node) heartbeat(pg PGState) FailsafeHeartbeat {
	return FailsafeHeartbeat{Name: n.cfg.Name, ConnURL: n.opts.ConnURL, APIURL: n.opts.APIURL, Slots: leaderSlots(n.cfg.Name, pg)}
}

// leaderSlots is /status.slots: the positions of the leader's slots plus
// an entry named after the leader with its own position (§10).
func leaderSlots(me string, pg PGState) map[string]dcs.LSN {
	out := maps.Clone(pg.SlotLSNs)
	if out == nil {
		out = map[string]dcs.LSN{}
	}
	out[SlotName(me)] = pg.LSN
	return out
}

// trackSlots keeps, while this node holds the lock, when each member's slot
// was last seen, and derives retain_slots: members seen within
// member_slots_ttl (spec/dcs-layout.md §2.5). Loop goroutine.
func (n *Node) trackSlots(cl *dcs.Cluster, s Settings, now time.Time) {
	ttl := s.memberSlotsTTL()
	if !cl.IsLocked() || cl.Leader.Name != n.cfg.Name || ttl <= 0 {
		n.slotSeen, n.retain = nil, nil
		return
	}
	if n.slotSeen == nil {
		n.slotSeen = map[string]time.Time{}
		for _, name := range cl.Status.RetainSlots {
			n.slotSeen[name] = now
		}
	}
	me := SlotName(n.cfg.Name)
	for _, m := range cl.Members {
		if name := SlotName(m.Name); name != me && !m.NoStream() {
			n.slotSeen[name] = now
		}
	}
	var keep []string
	for name, seen := range n.slotSeen {
		if now.Sub(seen) < ttl {
			keep = append(keep, name)
		} else {
			delete(n.slotSeen, name)
		}
	}
	slices.Sort(keep)
	n.retain = keep
}

// slotsAcquired restarts the member_slots_ttl clock of every retained slot
// when this node takes the lock (spec/dcs-layout.md §2.5).
func (n *Node) slotsAcquired(cl *dcs.Cluster, now time.Time) {
	if cl == nil {
		return
	}
	n.slotSeen = map[string]time.Time{}
	for _, name := range cl.Status.RetainSlots {
		n.slotSeen[name] = now
	}
}
