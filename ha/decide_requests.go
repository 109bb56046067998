package ha

import (
	"time"
)

// raceBackoff is §3.1 primary_race_backoff: while the backoff window of the
// current leaderless period lasts, a replica whose WAL still advances (or
// that saw the key vanish less than one loop_wait ago) skips the race, so
// it receives the dying primary's last records before positions are
// compared.
func (x *cycle) raceBackoff() (Decision, bool) {
	b := x.s.PrimaryRaceBackoff
	f := x.c.Failover
	if x.s.Paused || x.s.StandbyCluster != nil || (f != nil && f.Candidate != "") || b <= 0 ||
		x.o.PrevLSN == 0 || x.o.UnlockedSince.IsZero() || x.pg.Primary {
		return Decision{}, false
	}
	elapsed := x.o.Now.Sub(x.o.UnlockedSince)
	left := b - elapsed
	if left <= 0 {
		return Decision{}, false
	}
	moved := x.pg.Streaming && x.pg.LSN > x.o.PrevLSN
	if !moved && elapsed >= x.s.LoopWait {
		return Decision{}, false
	}
	return Decision{
		Message: msg("My (%s) wal position moved since last heart beat loop, %d seconds until leader race", x.me, int(left.Seconds())),
		WakeAt:  x.o.Now.Add(min(left, x.s.LoopWait)),
	}, true
}

// pgChanging reports whether the decision already changes Postgres (a
// request must not run alongside).
func pgChanging(d Decision) (string, bool) {
	for _, a := range d.Actions {
		switch a.(type) {
		case Promote, Demote, StopPostgres, StartPostgres, Rewind, Reinit, Clone, Bootstrap, CrashRecovery, Exit, ProbePeers, ProbeFailsafe, ReleaseLeader, Restart, CopyLogicalSlots:
			return a.String(), true
		}
	}
	return "", false
}

// requests answers a manual request (§9.1, §9.3) or runs a due scheduled
// restart (§9.2) on top of the cycle's own decision.
func (x *cycle) requests(d Decision) Decision {
	if r := x.o.Request; r != nil {
		switch r.Kind {
		case RequestRestart:
			return x.restartRequest(d, r.Restart)
		case RequestReinitialize:
			return x.reinitRequest(d, r.Reinit)
		}
		return d
	}
	if x.o.ScheduledRestart != nil && !x.o.DCSError && x.o.Cluster != nil && !x.o.Op.Running && x.c.IsLocked() {
		return x.scheduledRestart(d, x.o.ScheduledRestart)
	}
	return d
}

func refuse(d Decision, err error) Decision {
	d.Actions = append(d.Actions, Refuse{Err: err})
	return d
}

// restartMatches checks a restart's conditions (§9.1): role equal to the
// current one, postgres_version greater than the running server,
// restart_pending only with a pending restart.
func (x *cycle) restartMatches(r RestartRequest, role string) bool {
	if r.Role != "" && r.Role != role {
		return false
	}
	if r.PostgresVersion > 0 && r.PostgresVersion <= x.pg.ServerVersion {
		return false
	}
	if r.RestartPending && !x.pg.PendingRestart {
		return false
	}
	return true
}

// restartAction builds the restart of §9.1, leaving synchronous duty first
// (§7.6). wait=true means the replica still waits for /sync to drop it.
func (x *cycle) restartAction(d *Decision, r RestartRequest) (wait bool) {
	if x.mustLeaveSync() {
		since := x.o.LeavingSyncSince
		if since.IsZero() {
			d.Actions = append(d.Actions, LeaveSync{})
			d.WakeAt = x.o.Now.Add(min(2*time.Second, x.s.LoopWait))
			return true
		}
		if x.inSync(x.me) && x.o.Now.Sub(since) < 2*x.s.LoopWait {
			d.WakeAt = x.o.Now.Add(min(2*time.Second, x.s.LoopWait))
			return true
		}
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = x.s.PrimaryStartTimeout
	}
	a := Restart{Primary: x.pg.Running && x.pg.Primary, Timeout: timeout}
	if !a.Primary {
		a.Upstream = x.followTarget()
	}
	d.Actions = append(d.Actions, a)
	return false
}

// mustLeaveSync is §7.6: a replica in synchronous mode (not the lock
// holder, not nosync) that is about to stop first leaves /sync.
func (x *cycle) mustLeaveSync() bool {
	return x.s.SyncMode != SyncOff && !x.hasLock() && !x.self().NoSync() && x.inSync(x.me) && x.pg.Running && !x.pg.Primary
}

func (x *cycle) restartRequest(d Decision, r RestartRequest) Decision {
	switch {
	case x.o.DCSError || x.o.Cluster == nil:
		return refuse(d, ErrDCSUnavailable)
	case x.o.Op.Running:
		return refuse(d, &BusyError{Op: x.o.Op.Kind.String()})
	case x.pg.DataDir != DataPresent:
		return refuse(d, ErrRestartConditions)
	}
	if a, busy := pgChanging(d); busy {
		return refuse(d, &BusyError{Op: a})
	}
	role := d.Role
	if role == "" {
		role = x.role()
	}
	if !x.restartMatches(r, role) {
		return refuse(d, ErrRestartConditions)
	}
	x.restartAction(&d, r)
	return d
}

// reinitRequest is §9.3: refused without a leader or on the lock holder;
// force cancels a running operation; the clone source is a clonefrom
// member unless the request asks for the leader.
func (x *cycle) reinitRequest(d Decision, r ReinitializeRequest) Decision {
	switch {
	case x.o.DCSError || x.o.Cluster == nil:
		return refuse(d, ErrDCSUnavailable)
	case !x.c.IsLocked():
		return refuse(d, ErrNoLeader)
	case x.hasLock():
		return refuse(d, ErrIsLeader)
	case x.o.Op.Running && !r.Force:
		return refuse(d, &BusyError{Op: x.o.Op.Kind.String()})
	}
	src := x.leaderName()
	if c := x.cloneSource(); c != "" && !r.FromLeader {
		src = c
	}
	var acts []Action
	if x.o.Op.Running {
		acts = append(acts, CancelOp{})
	}
	acts = append(acts, Reinit{Leader: src, FromLeader: r.FromLeader})
	return Decision{Actions: acts, Message: msg("reinitializing from %s on request", src)}
}

// scheduledRestart is §9.2: cancelled when the postmaster restarted since
// it was scheduled, never run in pause, timed like a scheduled switchover
// (§5.1), removed once it ran or went stale.
func (x *cycle) scheduledRestart(d Decision, sr *ScheduledRestart) Decision {
	wake := func(t time.Time) {
		if d.WakeAt.IsZero() || t.Before(d.WakeAt) {
			d.WakeAt = t
		}
	}
	if !sr.PostmasterStart.IsZero() && !x.pg.PostmasterStart.IsZero() && !sr.PostmasterStart.Equal(x.pg.PostmasterStart) {
		d.Actions = append(d.Actions, ClearScheduledRestart{})
		return d
	}
	if x.s.Paused {
		return d
	}
	if sr.At.Sub(x.o.Now) > x.s.LoopWait {
		wake(sr.At)
		return d
	}
	if x.o.Now.Sub(sr.At) > time.Duration(1.5*float64(x.s.LoopWait)) && x.o.LeavingSyncSince.IsZero() {
		d.Actions = append(d.Actions, ClearScheduledRestart{})
		return d
	}
	if x.o.Now.Before(sr.At) {
		wake(sr.At)
		return d
	}
	if _, busy := pgChanging(d); busy {
		return d // retried next cycle while still within the window
	}
	role := d.Role
	if role == "" {
		role = x.role()
	}
	if !x.restartMatches(sr.Restart, role) || x.pg.DataDir != DataPresent {
		d.Actions = append(d.Actions, ClearScheduledRestart{})
		d.Message = "restart conditions are not satisfied"
		return d
	}
	if wait := x.restartAction(&d, sr.Restart); wait {
		return d
	}
	d.Actions = append(d.Actions, ClearScheduledRestart{})
	d.Message = "restart initiated"
	return d
}
