package ha

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// Decide is the HA state machine: from one observation it returns the
// actions to run and the message to report. It is pure: no I/O, no clock,
// no goroutines, and it never modifies o or anything o points to.
//
// When the decision needs information the observation does not have yet
// (peer answers, the failsafe probe) it returns a single ProbePeers or
// ProbeFailsafe action; the Node gathers the answers and calls Decide again
// in the same cycle. When an acquire or renewal fails the Node calls
// Decide again with Observation.Failure set.
func Decide(o Observation) Decision {
	x := newCycle(&o)
	d := x.decide()
	d = x.requests(d)
	if d.Role == "" {
		d.Role = x.role()
	}
	if d.State == "" {
		d.State = x.state()
	}
	if x.s.Paused && d.Message != "" {
		d.Message = "PAUSE: " + d.Message
	}
	x.addSlots(&d)
	if x.s.Paused && x.o.WatchdogArmed {
		// §2 step 2, §13: no watchdog in maintenance mode.
		x.pre = append(x.pre, DisarmWatchdog{})
	}
	d.Actions = append(x.pre, d.Actions...)
	return d
}

// cycle holds the derived values of one Decide call. It is discarded when
// Decide returns.
type cycle struct {
	o   *Observation
	s   Settings
	c   *dcs.Cluster
	me  string
	pg  *PGState
	pre []Action // actions that must run before the decision's own
}

func newCycle(o *Observation) *cycle {
	x := &cycle{o: o, me: o.Config.Name, pg: &o.PG, c: o.Cluster}
	cfg := o.LastConfig
	if o.Cluster != nil && o.Cluster.Config.Valid() {
		cfg = o.Cluster.Config
	}
	x.s = effective(o.Config.withDefaultsPure(), cfg)
	if x.c == nil {
		x.c = &dcs.Cluster{}
	}
	x.injectFailsafeLeader()
	return x
}

// injectFailsafeLeader is §2 step 1 / §11: in failsafe mode a primary that
// sent POST /failsafe within ttl is the leader of an unlocked cluster, so
// replicas keep following it and do not race.
func (x *cycle) injectFailsafeLeader() {
	if x.o.Cluster == nil || x.o.DCSError {
		return
	}
	if fl := x.failsafeLeader(); fl != nil {
		x.c = withFailsafeLeader(x.c, fl)
	}
}

// failsafeLeader is the primary's failsafe heartbeat when it stands in for
// the DCS (§11): failsafe mode is on, the heartbeat came from another node
// less than ttl ago, and the cluster has no leader or cannot be read.
func (x *cycle) failsafeLeader() *FailsafeLeader {
	fl := x.o.FailsafeLeader
	if !x.s.FailsafeMode || fl == nil || fl.Name == x.me || !x.o.Now.Before(fl.Until) {
		return nil
	}
	if !x.o.DCSError && x.o.Cluster != nil && x.o.Cluster.IsLocked() {
		return nil
	}
	return fl
}

// withFailsafeLeader returns a copy of c led by the heartbeat's sender,
// whose slot positions replace /status.slots (§11), as Patroni's
// Failsafe.update_cluster does. c is not modified.
func withFailsafeLeader(c *dcs.Cluster, fl *FailsafeLeader) *dcs.Cluster {
	v := *c // shallow copy: the observation is never modified
	m := v.Member(fl.Name)
	if m == nil {
		m = &dcs.Member{Name: fl.Name, ConnURL: fl.ConnURL, APIURL: fl.APIURL, Role: "primary", State: "running"}
		v.Members = append(slices.Clone(v.Members), m)
	}
	v.Leader = &dcs.Leader{Name: fl.Name, Member: m}
	v.Status.Slots = fl.Slots
	return &v
}

// withDefaultsPure is withDefaults without touching the logger (Decide
// does not log).
func (c Config) withDefaultsPure() Config {
	l := c.Logger
	c.Logger = nil
	c = c.withDefaults()
	c.Logger = l
	return c
}

func (x *cycle) decide() Decision {
	if x.o.DCSError || x.o.Cluster == nil {
		return x.decideDCSError()
	}
	if x.o.Op.Running {
		return x.decideBusy()
	}
	if x.o.Bootstrapping {
		return x.decidePostBootstrap()
	}
	if x.pg.DataDir != DataPresent {
		return x.decideEmptyDataDir()
	}
	if d, done := x.decideSysID(); done {
		return d
	}
	if !x.pg.Running {
		return x.decideNotRunning()
	}
	if !x.c.IsLocked() {
		return x.decideLeaderRace()
	}
	if x.hasLock() {
		return x.decideLeader()
	}
	return x.decideFollower()
}

// ---- helpers ----

func (x *cycle) hasLock() bool { return x.c.IsLocked() && x.c.Leader.Name == x.me }

func (x *cycle) failed(a Action) bool {
	if x.o.Failure == nil {
		return false
	}
	return fmt.Sprintf("%T", x.o.Failure.Action) == fmt.Sprintf("%T", a)
}

func (x *cycle) self() *dcs.Member {
	if m := x.c.Member(x.me); m != nil {
		// the published tags may lag; local tags are authoritative
		return &dcs.Member{Name: x.me, Tags: x.s.Tags, APIURL: m.APIURL}
	}
	return x.s.member()
}

func (x *cycle) noFailover() bool { return x.s.member().NoFailover() }

func (x *cycle) syncActive() bool {
	return x.s.SyncMode != SyncOff && !x.c.Sync.IsEmpty()
}

// quorumSync reports whether /sync must be read with quorum semantics:
// quorum mode, or a /sync written by quorum mode with quorum > 0 (only
// quorum+1 of its members are known to hold every acknowledged write, even
// if the operator switched to synchronous_mode: on since).
func (x *cycle) quorumSync() bool {
	return x.syncActive() && (x.s.SyncMode == SyncQuorum || x.c.Sync.Quorum > 0)
}

func (x *cycle) inSync(name string) bool {
	s := x.c.Sync
	if s.IsEmpty() {
		return false
	}
	return strings.EqualFold(s.Leader, name) || s.Matches(name)
}

func (x *cycle) clusterTimeline() int {
	if x.c.History == nil {
		return 0
	}
	return x.c.History.Timeline()
}

func (x *cycle) leaderName() string {
	if x.c.IsLocked() {
		return x.c.Leader.Name
	}
	return ""
}

func (x *cycle) role() string {
	switch {
	case x.pg.DataDir != DataPresent:
		return "uninitialized"
	case x.o.Op.Running && x.o.Op.Kind == OpPromote:
		return "promoted"
	case x.pg.Running && x.pg.Primary:
		return "primary"
	case x.s.StandbyCluster != nil && x.hasLock():
		return "standby_leader"
	}
	return "replica"
}

func (x *cycle) state() string {
	if x.o.Op.Running {
		switch x.o.Op.Kind {
		case OpBootstrap:
			return "initializing new cluster"
		case OpClone, OpReinit:
			return "creating replica"
		case OpRestart:
			return "restarting"
		case OpStart:
			return "starting"
		}
	}
	switch {
	case x.pg.Running && x.pg.Starting:
		return "starting"
	case x.pg.Running:
		return "running"
	case x.pg.DataDir == DataPresent && !x.pg.CleanShutdown:
		return "crashed"
	}
	return "stopped"
}

func msg(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// ---- §12 DCS unreachable, §11 failsafe ----

func (x *cycle) decideDCSError() Decision {
	if !x.pg.Running || !x.pg.Primary || x.s.Paused {
		return Decision{Message: "DCS is not accessible"}
	}
	last := x.o.LastCluster
	if x.s.FailsafeMode && last != nil {
		if _, ok := last.Failsafe[x.me]; ok {
			if x.o.FailsafeOK == nil {
				return Decision{Actions: []Action{ProbeFailsafe{}}, Message: "probing failsafe members"}
			}
			if *x.o.FailsafeOK {
				acts := x.watchdogKeepalive()
				if t := FailsafeSlotTargets(x.o.FailsafeLSNs, *x.pg); len(t) > 0 {
					acts = append(acts, AdvanceSlots{Physical: strings.Join(slices.Sorted(maps.Keys(t)), ","), Failsafe: true})
				}
				return Decision{
					Actions: acts,
					Message: "continue to run as a leader because failsafe mode is enabled and all members are accessible",
				}
			}
		}
	}
	return Decision{
		Actions: []Action{Demote{Mode: DemoteOffline}},
		Message: "demoted self because DCS is not accessible and I was a leader",
		Role:    "demoted",
	}
}

// watchdogKeepalive is §11/§16: the failsafe primary feeds the armed
// watchdog, or arms a usable one.
func (x *cycle) watchdogKeepalive() []Action {
	if x.s.Watchdog == WatchdogOff || x.s.Paused || !(x.o.WatchdogArmed || x.watchdogUsable()) {
		return nil
	}
	return []Action{x.arm()}
}

// watchdogUsable is §16: the device works and its timeout suits the
// current timing (watchdogTimeoutOK).
func (x *cycle) watchdogUsable() bool {
	return x.o.WatchdogUsable && x.s.watchdogTimeoutOK()
}

// arm activates the watchdog or feeds it. When the timeout for the current
// ttl is not usable (the dynamic configuration changed since activation)
// the armed device keeps its timeout and is fed, as Patroni's keepalive
// does when the new timeout cannot be set: starving it would reset a
// healthy primary.
func (x *cycle) arm() ArmWatchdog {
	if !x.s.watchdogTimeoutOK() {
		return ArmWatchdog{}
	}
	return ArmWatchdog{Timeout: x.s.WatchdogTimeout(x.s.TTL)}
}

// ---- §2 step 5: a background operation is running ----

func (x *cycle) decideBusy() Decision {
	op := x.o.Op.Kind
	if x.hasLock() && !x.failed(UpdateLeader{}) && (op == OpStart || op == OpCrashRecovery || op == OpRestart) && x.pg.WasPrimary && !x.s.Paused {
		// §2 steps 5-6: a primary that does not come back within
		// primary_start_timeout (or the restart request's timeout, §9.1)
		// is given up when a failover is possible.
		timeout := x.s.PrimaryStartTimeout
		if x.o.Op.Timeout > 0 {
			timeout = x.o.Op.Timeout
		}
		if elapsed := x.o.Now.Sub(x.o.Op.Started); elapsed > timeout {
			if x.o.Peers == nil {
				return Decision{Actions: []Action{ProbePeers{}}, Message: "asking peers before giving up the start"}
			}
			if x.failoverPossible(nil, x.c.Status.LastLSN) {
				m := "stopped PostgreSQL because of startup timeout"
				if op == OpCrashRecovery {
					m = "terminated crash recovery because of startup timeout"
				}
				return Decision{Actions: []Action{CancelOp{}, Demote{Mode: DemoteImmediate}}, Message: m, Role: "demoted"}
			}
			return Decision{
				Actions: []Action{UpdateLeader{Failsafe: x.s.FailsafeMode}},
				Message: "primary start has timed out, but continuing to wait because failover is not possible",
			}
		} else if op == OpStart {
			return Decision{
				Actions: []Action{UpdateLeader{Failsafe: x.s.FailsafeMode}},
				Message: msg("PostgreSQL is still starting up, %d seconds until timeout", int((timeout - elapsed).Seconds())),
			}
		}
	}
	if x.hasLock() && !x.failed(UpdateLeader{}) {
		return Decision{
			Actions: []Action{UpdateLeader{Failsafe: x.s.FailsafeMode}},
			Message: msg("updated leader lock during %s", op),
		}
	}
	if !x.o.Bootstrapping && !x.s.Paused {
		if op == OpPromote {
			return Decision{Actions: []Action{CancelOp{}}, Message: "lost leader before promote"}
		}
		if x.pg.Running && x.pg.Primary {
			return Decision{
				Actions: []Action{CancelOp{}, Demote{Mode: DemoteImmediateNoLock, Upstream: x.followTarget()}},
				Message: msg("lost leader lock during %s", op),
				Role:    "demoted",
			}
		}
	}
	return Decision{Message: msg("%s in progress", op)}
}

// ---- §8 bootstrap ----

func (x *cycle) decideEmptyDataDir() Decision {
	var acts []Action
	if x.pg.Running {
		acts = append(acts, StopPostgres{Immediate: true})
	}
	if x.s.Watchdog != WatchdogOff {
		acts = append(acts, DisarmWatchdog{})
	}
	what := "empty"
	if x.pg.DataDir == DataUnreadable {
		what = "not accessible"
	}
	if x.hasLock() {
		acts = append(acts, ReleaseLeader{})
		return Decision{Actions: acts, Message: msg("released leader key voluntarily as data dir %s and currently leader", what)}
	}
	if x.pg.DataDir == DataUnreadable {
		return Decision{Actions: acts, Message: "data directory is not accessible"}
	}
	if x.s.Paused {
		return Decision{Actions: acts, Message: "running with empty data directory"}
	}
	// §8.1
	if !x.c.IsLocked() && x.c.Initialize == nil && !x.noFailover() && x.s.Bootstrap {
		if x.failed(RaceInitialize{}) {
			return Decision{Actions: acts, Message: "failed to acquire initialize lock"}
		}
		if x.s.StandbyCluster != nil {
			acts = append(acts, RaceInitialize{}, Clone{From: remoteName})
			return Decision{Actions: acts, Message: "trying to bootstrap a new standby leader"}
		}
		acts = append(acts, RaceInitialize{}, Bootstrap{})
		return Decision{Actions: acts, Message: "trying to bootstrap a new cluster"}
	}
	if x.c.IsLocked() && x.leaderName() != x.me {
		if src := x.cloneSource(); src != "" {
			acts = append(acts, Clone{From: src})
			return Decision{Actions: acts, Message: msg("trying to bootstrap from replica '%s'", src)}
		}
		acts = append(acts, Clone{From: x.leaderName()})
		return Decision{Actions: acts, Message: msg("trying to bootstrap from leader '%s'", x.leaderName())}
	}
	if x.s.StandbyCluster != nil {
		return Decision{Actions: acts, Message: "waiting for standby_leader to bootstrap"}
	}
	return Decision{Actions: acts, Message: "waiting for leader to bootstrap"}
}

// remoteName is the upstream name used for a standby cluster's remote
// primary.
const remoteName = "remote"

// RemoteName is the name of the *dcs.Member that Postgres methods receive
// as upstream when a standby cluster's leader follows the remote primary
// (standby_cluster host and port in its conn_url).
const RemoteName = remoteName

// cloneSource picks a running member tagged clonefrom other than me and the
// leader (first by name, so the choice is deterministic).
func (x *cycle) cloneSource() string {
	for _, m := range x.c.Members {
		if m.Name != x.me && m.Name != x.leaderName() && m.CloneFrom() && m.IsRunning() {
			return m.Name
		}
	}
	return ""
}

// §8.2
func (x *cycle) decidePostBootstrap() Decision {
	// §8.1: a standby leader's bootstrap is a clone of the remote primary,
	// which leaves Postgres stopped; start it following the remote, then
	// finish below once it runs.
	if x.s.StandbyCluster != nil && x.o.Op.Kind == OpClone && !x.o.Op.Failed && !x.pg.Running && x.pg.DataDir == DataPresent {
		return Decision{Actions: []Action{StartPostgres{Upstream: remoteName}}, Message: "starting the new standby leader following the remote primary"}
	}
	if x.o.Op.Failed || !x.pg.Running {
		return Decision{
			Actions: []Action{CancelInitialize{}, StopPostgres{Immediate: true}, Exit{Reason: "Failed to bootstrap cluster"}},
			Message: "Failed to bootstrap cluster",
		}
	}
	if x.s.StandbyCluster == nil && !x.pg.Primary {
		return Decision{Message: "waiting for end of recovery after bootstrap"}
	}
	acts := []Action{}
	if x.s.Watchdog != WatchdogOff && x.watchdogUsable() {
		acts = append(acts, x.arm())
	}
	acts = append(acts, WriteInitialize{SysID: x.pg.SysID}, WriteConfig{}, TakeLeader{})
	if x.s.SyncMode != SyncOff && x.s.SyncStrict {
		acts = append(acts, SetSyncStandbyNames{Placeholder: true, Quorum: x.s.SyncMode == SyncQuorum, Num: 1})
	}
	role := "primary"
	if x.s.StandbyCluster != nil {
		role = "standby_leader"
	}
	return Decision{Actions: acts, Message: "initialized a new cluster", Role: role}
}

// ---- §2 step 10: system identifier ----

func (x *cycle) decideSysID() (Decision, bool) {
	if !validSysID(x.pg.SysID) {
		return Decision{Message: "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize"}, true
	}
	ini := x.c.Initialize
	if ini.Valid() && ini.SystemID != x.pg.SysID {
		if x.s.Paused {
			if x.hasLock() {
				return Decision{Actions: []Action{ReleaseLeader{}}, Message: "released leader key voluntarily due to the system ID mismatch"}, true
			}
			return Decision{Message: msg("system ID mismatch, node %s belongs to a different cluster: %s != %s", x.me, ini.SystemID, x.pg.SysID)}, true
		}
		reason := msg("system ID mismatch, node %s belongs to a different cluster: %s != %s", x.me, ini.SystemID, x.pg.SysID)
		return Decision{Actions: []Action{Exit{Reason: reason}}, Message: reason}, true
	}
	if !ini.Valid() && !x.c.IsLocked() && !x.s.Paused && x.o.FirstCycle {
		if x.pg.Running && !x.pg.Primary {
			r := "No initialize key in DCS and PostgreSQL is running as replica, aborting start"
			return Decision{Actions: []Action{Exit{Reason: r}}, Message: r}, true
		}
		x.pre = append(x.pre, WriteInitialize{SysID: x.pg.SysID})
	}
	return Decision{}, false
}

func validSysID(s string) bool {
	return (&dcs.Initialize{SystemID: s}).Valid()
}

// ---- §2 steps 8, 11 and §6.3: Postgres is not running ----

func (x *cycle) decideNotRunning() Decision {
	lock := x.hasLock()
	if x.o.RecoveryAttempt {
		acts := []Action{}
		if x.s.Watchdog != WatchdogOff {
			acts = append(acts, DisarmWatchdog{})
		}
		if lock {
			acts = append(acts, ReleaseLeader{})
			return Decision{Actions: acts, Message: "removed leader key after trying and failing to start postgres", Role: "demoted"}
		}
		return Decision{Actions: acts, Message: "failed to start postgres"}
	}
	if x.s.Paused {
		if lock {
			return Decision{Actions: []Action{ReleaseLeader{}}, Message: "removed leader lock because postgres is not running"}
		}
		return Decision{Message: "postgres is not running"}
	}
	crashed := !x.pg.CleanShutdown
	if lock {
		if x.failed(UpdateLeader{}) {
			lock = false
		} else {
			// §6.3 step 1: fail over at once after a crash when allowed.
			if x.s.PrimaryStartTimeout == 0 && x.pg.WasPrimary && crashed {
				if x.o.Peers == nil {
					return Decision{Actions: []Action{ProbePeers{}}, Message: "asking peers before failing over after a crash"}
				}
				if x.failoverPossible(nil, x.c.Status.LastLSN) {
					acts := []Action{}
					if x.s.Watchdog != WatchdogOff {
						acts = append(acts, DisarmWatchdog{})
					}
					acts = append(acts, ReleaseLeader{})
					return Decision{Actions: acts, Message: "stopped PostgreSQL to fail over after a crash", Role: "demoted"}
				}
			}
			// §6.3 step 2: restart the crashed primary in place.
			if x.pg.WasPrimary && crashed && x.s.StandbyCluster == nil {
				return Decision{
					Actions: []Action{UpdateLeader{Failsafe: x.s.FailsafeMode}, StartPostgres{Primary: true}},
					Message: "starting primary after failure",
					Role:    "primary",
				}
			}
		}
	}
	var acts []Action
	if x.s.Watchdog != WatchdogOff {
		acts = append(acts, DisarmWatchdog{})
	}
	// §6.3 step 4: unclean primary shutdown needs crash recovery first.
	if x.pg.WasPrimary && crashed && !x.pg.BackupLabel && (!x.c.IsLocked() || x.pg.CanRewind) {
		acts = append(acts, CrashRecovery{})
		return Decision{Actions: acts, Message: "doing crash recovery in a single user mode"}
	}
	if len(x.pg.SyncStandbyNames) > 0 || x.pg.SyncPlaceholder {
		acts = append(acts, SetSyncStandbyNames{})
	}
	if lock && x.s.StandbyCluster == nil {
		acts = append([]Action{UpdateLeader{Failsafe: x.s.FailsafeMode}}, acts...)
		acts = append(acts, StartPostgres{})
		return Decision{Actions: acts, Message: "starting as readonly because i had the session lock"}
	}
	if d, ok := x.rewindOrReinit(acts); ok {
		return d
	}
	target := x.followTarget()
	acts = append(acts, StartPostgres{Upstream: target})
	switch {
	case x.s.StandbyCluster != nil && lock:
		return Decision{Actions: acts, Message: "starting as a standby leader because i had the session lock"}
	case x.s.StandbyCluster != nil && !x.c.IsLocked():
		return Decision{Actions: acts, Message: "trying to follow a remote member because standby cluster is unhealthy"}
	}
	return Decision{Actions: acts, Message: "starting as a secondary"}
}

// rewindOrReinit is §6.2: when the last check found the timeline diverged
// from the leader's, rewind if possible, else reinitialize if allowed.
func (x *cycle) rewindOrReinit(acts []Action) (Decision, bool) {
	leader := x.leaderName()
	if leader == "" || leader == x.me || x.pg.Diverged == nil || !*x.pg.Diverged {
		return Decision{}, false
	}
	if x.pg.CanRewind {
		if lm := x.c.Member(leader); lm != nil && lm.CheckpointAfterPromote != nil && !*lm.CheckpointAfterPromote {
			return Decision{Actions: acts, Message: msg("Waiting for checkpoint on %s before rewind", leader)}, true
		}
		return Decision{Actions: append(acts, Rewind{Leader: leader}), Message: msg("running pg_rewind from %s", leader)}, true
	}
	if x.s.RemoveDataDirectoryOnDivergedTimelines && x.s.StandbyCluster == nil {
		return Decision{Actions: append(acts, Reinit{Leader: leader}), Message: "reinitializing due to diverged timelines"}, true
	}
	return Decision{}, false
}

// ---- §4.3 following ----

// followTarget is the node to follow (§4.3).
func (x *cycle) followTarget() string {
	self := x.self()
	if self.NoStream() {
		return ""
	}
	if x.s.StandbyCluster != nil && (x.hasLock() || (!x.c.IsLocked() && !x.s.Paused)) {
		return remoteName
	}
	if rf := self.ReplicateFrom(); rf != "" && rf != x.me && x.c.Member(rf) != nil {
		return rf
	}
	if l := x.leaderName(); l != x.me {
		return l
	}
	return ""
}

func (x *cycle) decideFollower() Decision {
	demoteMsg := "demoting self because I do not have the lock and I was a leader"
	if x.s.StandbyCluster != nil {
		demoteMsg = "cannot be a real primary in a standby cluster"
	}
	followMsg := msg("no action. I am (%s), a secondary, and following a leader (%s)", x.me, x.leaderName())
	if x.s.StandbyCluster != nil {
		followMsg = msg("no action. I am (%s), a secondary, and following a standby leader (%s)", x.me, x.leaderName())
	}
	return x.follow(demoteMsg, followMsg)
}

func (x *cycle) follow(demoteMsg, followMsg string) Decision {
	target := x.followTarget()
	if x.s.Paused {
		if x.pg.Primary {
			return Decision{Message: "continue to run as primary without lock"}
		}
		if target == "" {
			return Decision{Message: msg("no action. I am (%s)", x.me)}
		}
		if x.pg.Upstream != target {
			return Decision{Actions: []Action{Follow{Upstream: target}}, Message: followMsg}
		}
		return Decision{Message: followMsg}
	}
	if x.pg.Primary {
		if x.s.StandbyCluster != nil {
			return Decision{Actions: []Action{Demote{Mode: DemoteCluster, Upstream: target}}, Message: "demoting to a standby cluster", Role: "demoted"}
		}
		return Decision{Actions: []Action{Demote{Mode: DemoteImmediateNoLock, Upstream: target}}, Message: demoteMsg, Role: "demoted"}
	}
	if d, ok := x.rewindOrReinit(nil); ok {
		return d
	}
	if x.pg.Upstream != target {
		return Decision{Actions: []Action{Follow{Upstream: target}}, Message: followMsg}
	}
	return Decision{Message: followMsg}
}

// ---- §4.1 I hold the lock ----

func (x *cycle) decideLeader() Decision {
	f := x.c.Failover
	if x.s.Paused && !x.pg.Primary {
		if f != nil && f.Candidate == x.me {
			return Decision{Message: "waiting to become primary after promote..."}
		}
		if x.s.StandbyCluster == nil {
			return Decision{Actions: []Action{ReleaseLeader{}}, Message: "removed leader lock because postgres is not running as primary"}
		}
	}
	if x.failed(UpdateLeader{}) {
		if x.pg.Primary {
			if x.s.Paused {
				return Decision{Message: "continue to run as primary after failing to update leader lock in DCS"}
			}
			if x.o.Failure.Unavailable && x.s.FailsafeMode {
				return x.decideDCSError()
			}
			return Decision{
				Actions: []Action{Demote{Mode: DemoteImmediateNoLock}},
				Message: "demoted self because failed to update leader lock in DCS",
				Role:    "demoted",
			}
		}
		return Decision{Message: "not promoting because failed to update leader lock in DCS"}
	}
	renew := UpdateLeader{Failsafe: x.s.FailsafeMode}
	if d, ok := x.manualFailoverFromLeader(); ok {
		d.Actions = append([]Action{renew}, d.Actions...)
		return d
	}
	var d Decision
	if x.s.StandbyCluster != nil {
		d = x.enforceStandbyLeader(
			msg("no action. I am (%s), the standby leader with the lock", x.me),
			"promoted self to a standby leader because i had the session lock")
	} else {
		d = x.enforcePrimary(
			msg("no action. I am (%s), the leader with the lock", x.me),
			"promoted self to leader because I had the session lock")
	}
	d.Actions = append([]Action{renew}, d.Actions...)
	return d
}

func (x *cycle) enforceStandbyLeader(noAction, promoted string) Decision {
	if x.pg.Primary {
		return Decision{Actions: []Action{Demote{Mode: DemoteCluster, Upstream: remoteName}}, Message: "cannot be a real primary in standby cluster", Role: "demoted"}
	}
	if x.pg.Upstream != remoteName {
		return Decision{Actions: []Action{Follow{Upstream: remoteName}}, Message: promoted, Role: "standby_leader"}
	}
	return Decision{Message: noAction, Role: "standby_leader"}
}

// enforcePrimary is §4.2.
func (x *cycle) enforcePrimary(noAction, promoted string) Decision {
	var acts []Action
	if !x.s.Paused && x.s.Watchdog != WatchdogOff {
		// §16: an armed watchdog is fed (Patroni activates only when it is
		// not running); an unusable one stops a required primary.
		switch {
		case x.o.WatchdogArmed || x.watchdogUsable():
			acts = append(acts, x.arm())
		case x.s.Watchdog == WatchdogRequired:
			if x.pg.Primary {
				return Decision{Actions: []Action{Demote{Mode: DemoteImmediate}}, Message: "Demoting self because watchdog could not be activated", Role: "demoted"}
			}
			return Decision{Actions: []Action{ReleaseLeader{}}, Message: "Not promoting self because watchdog could not be activated"}
		}
	}
	if x.pg.Primary {
		if x.o.CheckpointNeeded {
			acts = append(acts, Checkpoint{})
		}
		acts = append(acts, x.manageSync()...)
		acts = append(acts, x.historyUpdate()...)
		return Decision{Actions: acts, Message: noAction, Role: "primary"}
	}
	// The key may have been taken under other rules (a lost reply to an
	// acquire, a mode change since): never promote outside /sync.
	if x.syncActive() && !x.quorumSync() && !x.inSync(x.me) {
		return Decision{Actions: append(acts, ReleaseLeader{}), Message: "Not promoting self because I am not in the synchronous standby set"}
	}
	// Nor beyond the lag limit, unless the operator named me.
	if x.hasLock() {
		f := x.c.Failover
		named := f != nil && f.Candidate == x.me
		if st := x.c.Status.LastLSN; !named && st > x.pg.LSN && uint64(st-x.pg.LSN) > x.s.MaximumLagOnFailover {
			return Decision{Actions: append(acts, ReleaseLeader{}), Message: "Not promoting self because my WAL position is too far behind the last leader position"}
		}
	}
	pre, ok := x.prePromoteSync()
	if !ok {
		return Decision{Actions: acts, Message: "Postponing promotion because synchronous replication state was updated by somebody else"}
	}
	acts = append(acts, pre...)
	acts = append(acts, Promote{})
	return Decision{Actions: acts, Message: promoted, Role: "promoted"}
}

// historyUpdate is §7.4.
func (x *cycle) historyUpdate() []Action {
	tl := x.pg.Timeline
	h := x.c.History
	if tl <= 1 {
		if h != nil && len(h.Lines) > 0 {
			return []Action{WriteHistory{}}
		}
		return nil
	}
	if h == nil || len(h.Lines) == 0 || h.Lines[len(h.Lines)-1].Timeline != tl-1 || h.Lines[len(h.Lines)-1].NewLeader == "" {
		return []Action{WriteHistory{}}
	}
	return nil
}

// ---- §5.1 manual switchover/failover on the lock holder ----

func (x *cycle) manualFailoverFromLeader() (Decision, bool) {
	f := x.c.Failover
	if f.IsEmpty() || (x.s.Paused && !x.pg.Primary) {
		return Decision{}, false
	}
	action := "failover"
	if f.Leader != "" {
		action = "switchover"
	}
	clear := ClearFailover{Version: f.Version}
	if f.ScheduledAt != nil {
		if x.s.Paused {
			return Decision{}, false
		}
		at := *f.ScheduledAt
		if at.Sub(x.o.Now) > x.s.LoopWait {
			d := x.normalLeader()
			d.WakeAt = at
			return d, true
		}
		if x.o.Now.Sub(at) > time.Duration(1.5*float64(x.s.LoopWait)) {
			d := x.normalLeader()
			d.Actions = append([]Action{clear}, d.Actions...)
			return d, true
		}
		if x.o.Now.Before(at) {
			d := x.normalLeader()
			d.WakeAt = at
			return d, true
		}
	}
	if f.Leader == "" || f.Leader == x.me {
		if f.Candidate != x.me {
			if f.Candidate == "" && x.s.Paused {
				d := x.normalLeader()
				d.Actions = append([]Action{clear}, d.Actions...)
				return d, true
			}
			if x.o.Peers == nil {
				return Decision{Actions: []Action{ProbePeers{}}, Message: msg("%s: checking candidates", action)}, true
			}
			if x.failoverPossible(f, x.pg.LSN) {
				return Decision{
					Actions: []Action{Demote{Mode: DemoteGraceful}},
					Message: msg("%s: demoting myself", action),
					Role:    "demoted",
				}, true
			}
		}
	}
	d := x.normalLeader()
	d.Actions = append([]Action{clear}, d.Actions...)
	return d, true
}

func (x *cycle) normalLeader() Decision {
	if x.s.StandbyCluster != nil {
		return x.enforceStandbyLeader(
			msg("no action. I am (%s), the standby leader with the lock", x.me),
			"promoted self to a standby leader because i had the session lock")
	}
	return x.enforcePrimary(
		msg("no action. I am (%s), the leader with the lock", x.me),
		"promoted self to leader because I had the session lock")
}

// failoverPossible is §5.4. ref is the position candidates must be close
// to (the leader's current or last known LSN).
func (x *cycle) failoverPossible(f *dcs.Failover, ref dcs.LSN) bool {
	manualNoLeader := f != nil && f.Leader == ""
	good := 0
	named := f != nil && f.Candidate != ""
	for _, m := range x.c.Members {
		if m.Name == x.me || m.APIURL == "" || m.NoFailover() {
			continue
		}
		if named && m.Name != f.Candidate {
			continue
		}
		if x.syncActive() && !manualNoLeader && !x.inSync(m.Name) {
			continue
		}
		if p, ok := x.o.Peers[m.Name]; ok && x.canTakeOver(p, ref) {
			good++
		}
	}
	if x.quorumSync() && !named {
		return good >= x.c.Sync.Quorum+1 && good >= 1
	}
	return good >= 1
}

// olderTimeline reports a peer on an older timeline than mine: its WAL
// beyond the switch point is on an abandoned branch, so a larger LSN does
// not make it "ahead" (Patroni compares LSNs only).
func (x *cycle) olderTimeline(p PeerStatus) bool {
	return p.Timeline != 0 && x.pg.Timeline != 0 && p.Timeline < x.pg.Timeline
}

// canTakeOver is the per-candidate test of §5.4: no failover limitation,
// within maximum_lag_on_failover of ref, and (check_timeline) on a known
// timeline not older than the cluster's.
func (x *cycle) canTakeOver(p PeerStatus, ref dcs.LSN) bool {
	if p.limited() {
		return false
	}
	if ref > p.LSN && uint64(ref-p.LSN) > x.s.MaximumLagOnFailover {
		return false
	}
	if x.s.CheckTimeline && (p.Timeline == 0 || p.Timeline < x.clusterTimeline()) {
		return false
	}
	return true
}

// ---- §3 leader race ----

func (x *cycle) decideLeaderRace() Decision {
	notHealthyMsg := [2]string{"demoting self because i am not the healthiest node", "following a different leader because i am not the healthiest node"}
	if x.failed(AcquireLeader{}) {
		return x.follow("demoted self after trying and failing to obtain lock", "following new leader after trying and failing to obtain lock")
	}
	if d, wait := x.awaitShutdownCheckpoint(); wait {
		return d
	}
	if d, wait := x.raceBackoff(); wait {
		return d
	}
	v := x.healthiest()
	if v.needPeers {
		return Decision{Actions: []Action{ProbePeers{}}, Message: "asking peers whether I am the healthiest node"}
	}
	if !v.yes {
		if v.notAllowed {
			return x.follow("demoting self because I am not allowed to become primary", "following a different leader because I am not allowed to promote")
		}
		d := x.follow(notHealthyMsg[0], notHealthyMsg[1])
		if v.reason != "" && strings.HasPrefix(d.Message, "following") {
			d.Message += ": " + v.reason
		}
		return d
	}
	var failover []Action
	if f := x.c.Failover; f != nil {
		if x.s.Paused && f.Leader != "" && f.Candidate != "" {
			failover = append(failover, RewriteFailover{Candidate: f.Candidate, Version: f.Version})
		} else {
			failover = append(failover, ClearFailover{Version: f.Version})
		}
	}
	var d Decision
	if x.s.StandbyCluster != nil {
		d = x.enforceStandbyLeader("promoted self to a standby leader by acquiring session lock", "promoted self to a standby leader by acquiring session lock")
	} else {
		d = x.enforcePrimary("acquired session lock as a leader", "promoted self to leader by acquiring session lock")
	}
	// The promotion starts before the failover key is cleared (Patroni
	// clears it first): Promote only starts the operation, so the DCS
	// write runs while Postgres promotes instead of delaying it by a round
	// trip in every switchover. The key is the lock holder's to clear
	// either way, and a key left behind by a crash in between names a
	// leader that no longer holds the lock, which the next leader clears.
	acts := []Action{AcquireLeader{}}
	if n := len(d.Actions); n > 0 && d.Actions[n-1] == (Promote{}) {
		acts = append(append(acts, d.Actions...), failover...)
	} else {
		acts = append(append(acts, failover...), d.Actions...)
	}
	d.Actions = acts
	return d
}

// shutdownCatchUp bounds how long a replica waits to replay the old
// primary's shutdown checkpoint during a switchover; after it the usual
// lag rules decide (a candidate that is not streaming never gets it).
const shutdownCatchUp = 2 * time.Second

// catchUpPoll is how often a waiting replica looks again.
const catchUpPoll = 20 * time.Millisecond

// awaitShutdownCheckpoint: in a switchover the old primary releases the
// key with its shutdown checkpoint location as soon as that checkpoint is
// written, while its WAL senders may still be sending it. A streaming
// replica does not race for the key before it has replayed past that
// location (replay ends past the checkpoint record only once the whole
// record arrived), so every write the old primary acknowledged is kept.
func (x *cycle) awaitShutdownCheckpoint() (Decision, bool) {
	f, last := x.c.Failover, x.c.Status.LastLSN
	if f.IsEmpty() || f.Leader == "" || f.Leader == x.me || last == 0 ||
		x.pg.Primary || x.pg.ReplayLSN == 0 || x.pg.ReplayLSN > last {
		return Decision{}, false
	}
	if !x.o.UnlockedSince.IsZero() && x.o.Now.Sub(x.o.UnlockedSince) > shutdownCatchUp {
		return Decision{}, false
	}
	return Decision{
		Message: msg("waiting to replay the shutdown checkpoint %s of %s", last, f.Leader),
		WakeAt:  x.o.Now.Add(catchUpPoll),
	}, true
}

type verdict struct {
	yes, needPeers, notAllowed bool
	reason                     string
}

var (
	vYes  = verdict{yes: true}
	vNo   = verdict{}
	vPeer = verdict{needPeers: true}
)

func vNoBecause(r string) verdict { return verdict{reason: r} }

// healthiest is §3.2 "Am I the healthiest node?".
func (x *cycle) healthiest() verdict {
	f := x.c.Failover
	if x.s.Paused && !x.noFailover() && f != nil && !f.IsEmpty() && f.ScheduledAt == nil {
		if v, decided := x.manualFailoverNoLeader(f); decided {
			return v
		}
	}
	if x.pg.Starting {
		return vNo
	}
	if x.pg.Primary {
		// Patroni lets a paused running primary take the lock without
		// the timeline check; a stale primary that resumes in pause
		// would then take over a cluster that moved on. We check the
		// timeline in both cases.
		if x.pg.Timeline < x.clusterTimeline() {
			return vNoBecause("my timeline is behind the cluster's")
		}
		if x.s.Paused {
			ini := x.c.Initialize
			if ini == nil || ini.SystemID == "" || ini.SystemID == x.pg.SysID {
				return vYes
			}
			return vNo
		}
		return vYes
	}
	if x.s.Paused {
		return vNo
	}
	if x.noFailover() {
		return verdict{notAllowed: true}
	}
	if f != nil && !f.IsEmpty() {
		if f.Leader != "" && x.syncActive() && !x.inSync(x.me) {
			return vNo
		}
		if v, decided := x.manualFailoverNoLeader(f); decided {
			return v
		}
	}
	if x.s.watchdogFailed(x.o.WatchdogUsable) {
		return vNoBecause("Watchdog device is not usable")
	}
	pool := x.pool()
	if pool == nil {
		return vNo
	}
	if x.syncActive() {
		if !x.quorumSync() && !x.inSync(x.me) {
			return vNoBecause("I am not in /sync")
		}
		pool = slices.DeleteFunc(pool, func(m *dcs.Member) bool { return !x.inSync(m.Name) })
	}
	former := ""
	if x.o.LastCluster != nil && x.o.LastCluster.Leader != nil {
		former = x.o.LastCluster.Leader.Name
	}
	return x.walComparison(pool, true, former)
}

// pool is step 9 of §3.2; nil means "no" (failsafe excludes me).
func (x *cycle) pool() []*dcs.Member {
	seen := map[string]bool{}
	var pool []*dcs.Member
	add := func(m *dcs.Member) {
		if !seen[m.Name] {
			seen[m.Name] = true
			pool = append(pool, m)
		}
	}
	for _, m := range x.c.Members {
		add(m)
	}
	if x.o.LastCluster != nil {
		for _, m := range x.o.LastCluster.Members {
			add(m)
		}
	}
	if x.s.FailsafeMode {
		fs := x.c.Failsafe
		if len(fs) > 0 {
			if _, ok := fs[x.me]; !ok {
				return nil
			}
			for name, url := range fs {
				add(&dcs.Member{Name: name, APIURL: url})
			}
		}
	}
	if pool == nil {
		pool = []*dcs.Member{}
	}
	return pool
}

// walComparison is _is_healthiest_node.
func (x *cycle) walComparison(pool []*dcs.Member, checkLag bool, former string) verdict {
	return x.walCompare(pool, checkLag, former, false)
}

// walCompare is walComparison; named skips the failover_priority rule (the
// operator named this node).
func (x *cycle) walCompare(pool []*dcs.Member, checkLag bool, former string, named bool) verdict {
	myLSN := x.pg.LSN
	if !x.s.CheckTimeline {
		// nothing
	} else if x.s.StandbyCluster == nil {
		if x.pg.Timeline == 0 {
			return vNoBecause("my timeline is unknown")
		}
		if x.pg.Timeline < x.clusterTimeline() {
			return vNoBecause("my timeline is behind the cluster's")
		}
	}
	var peers []*dcs.Member
	quorumMode := x.quorumSync()
	voters := map[string]bool{}
	quorum := 0
	if quorumMode {
		quorum = x.c.Sync.Quorum
		voters[strings.ToLower(x.c.Sync.Leader)] = true
		for _, s := range x.c.Sync.Standbys {
			voters[strings.ToLower(s)] = true
		}
	}
	for _, m := range pool {
		if m.Name == x.me || m.APIURL == "" {
			continue
		}
		if m.NoFailover() && !voters[strings.ToLower(m.Name)] {
			continue
		}
		peers = append(peers, m)
	}
	if len(peers) > 0 && x.o.Peers == nil {
		return vPeer
	}
	if checkLag {
		// Lag against the leader's last published position and the live
		// positions of every surviving replica (including ineligible
		// ones): a node far behind the best survivor must not win.
		ref := x.c.Status.LastLSN
		for _, m := range peers {
			if p, ok := x.o.Peers[m.Name]; ok && p.Reachable && p.InRecovery && p.LSN > ref && !x.olderTimeline(p) {
				ref = p.LSN
			}
		}
		for _, m := range pool {
			if m.Name == x.me {
				continue
			}
			if p, ok := x.o.Peers[m.Name]; ok && p.Reachable && p.InRecovery && p.LSN > ref && !x.olderTimeline(p) {
				ref = p.LSN
			}
		}
		if ref > myLSN && uint64(ref-myLSN) > x.s.MaximumLagOnFailover {
			return vNoBecause(msg("my wal position %d is too far behind %d", myLSN, ref))
		}
	}
	votes := -1
	if voters[strings.ToLower(x.me)] {
		votes = 0
	}
	ahead := 0
	formerName := former
	if x.syncActive() {
		formerName = x.c.Sync.Leader
	}
	myPrio := x.s.member().FailoverPriority()
	for _, m := range peers {
		p, ok := x.o.Peers[m.Name]
		// A reachable voter votes even with nofailover: its vote only
		// says it is not ahead of me (Patroni skips it, which can leave a
		// quorum cluster without any electable node).
		if !ok || (p.limited() && !(p.Reachable && !p.WatchdogFailed && voters[strings.ToLower(m.Name)])) {
			continue
		}
		if !p.InRecovery {
			return vNoBecause(msg("Primary (%s) is still alive", m.Name))
		}
		if p.LSN > myLSN && !x.olderTimeline(p) {
			ahead++
			if !(x.syncActive() && strings.EqualFold(m.Name, x.c.Sync.Leader)) {
				return vNoBecause(msg("Wal position of %s is ahead of my wal position", m.Name))
			}
			continue
		}
		if p.LSN > 0 {
			voter := voters[strings.ToLower(m.Name)]
			// The quorum leader never defers on priority: with a large
			// quorum only it may be able to win (ahead == 0 rule below).
			syncLeader := quorumMode && strings.EqualFold(x.c.Sync.Leader, x.me)
			// A peer on an older timeline than the cluster's cannot win
			// (check_timeline), so deferring to it would leave the
			// cluster without a leader: the simulation found that
			// deadlock (seed 107912), which Patroni's rule has as well.
			if !named && !syncLeader && p.LSN == myLSN && myPrio < p.Priority && m.Name != formerName && !x.olderTimeline(p) {
				if !quorumMode || voter {
					return vNoBecause(msg("%s has equally tolerable WAL position and priority %d, while this node has priority %d", m.Name, p.Priority, myPrio))
				}
			}
			if voter {
				votes++
			}
		}
	}
	if !quorumMode {
		return vYes
	}
	if votes >= quorum || (ahead == 0 && strings.EqualFold(x.c.Sync.Leader, x.me)) {
		return vYes
	}
	return vNoBecause("not enough quorum votes")
}

// manualFailoverNoLeader is §5.3; decided=false means "treat as no
// request".
func (x *cycle) manualFailoverNoLeader(f *dcs.Failover) (verdict, bool) {
	if f.Candidate != "" {
		if f.Candidate == x.me {
			// Patroni trusts the REST API to have checked a named
			// candidate against /sync; we check again here, so a node
			// outside the sync set is never promoted.
			if x.syncActive() && !x.quorumSync() && !x.inSync(x.me) {
				return vNoBecause("I am not in /sync"), true
			}
			// A named candidate on an old timeline would fork a second
			// timeline with the same number as the cluster's.
			if x.s.CheckTimeline && x.pg.Timeline < x.clusterTimeline() {
				return vNoBecause("my timeline is behind the cluster's"), true
			}
			if x.quorumSync() {
				// In quorum mode one voter need not have every
				// acknowledged write: the named candidate still needs
				// the quorum's votes (Patroni does not check this).
				return x.walCompare(x.c.Members, false, f.Leader, true), true
			}
			return vYes, true
		}
		if x.s.Paused {
			return vNo, true
		}
		// Patroni answers "no" here whenever synchronous_mode is
		// configured and I am not in /sync, even with /sync empty and the
		// candidate gone, which leaves the cluster leaderless until the
		// key is removed. The fallback below filters by /sync when it is
		// active, which keeps the safety without the deadlock.
		// A candidate that may not be promoted (nofailover, or outside
		// /sync in sync mode) counts as unhealthy.
		if cm := x.c.Member(f.Candidate); cm != nil && !cm.NoFailover() && cm.APIURL != "" && (!x.syncActive() || x.inSync(cm.Name)) {
			if x.o.Peers == nil {
				return vPeer, true
			}
			// In quorum mode a candidate behind me cannot gather the votes
			// it needs; do not wait for it.
			if p, ok := x.o.Peers[f.Candidate]; ok && !p.limited() && (!x.quorumSync() || p.LSN >= x.pg.LSN) &&
				!(x.s.CheckTimeline && p.Timeline < x.clusterTimeline()) {
				return vNo, true
			}
		}
		// unhealthy or missing candidate: as if none was named
	} else if x.s.Paused {
		return vNo, true
	}
	if f.Leader != "" && f.Leader == x.me {
		if x.o.Peers == nil {
			return vPeer, true
		}
		good := 0
		for _, m := range x.c.Members {
			if m.Name == x.me || m.Name == f.Candidate || m.NoFailover() {
				continue
			}
			// Only members that could win count: in sync mode, /sync
			// members (else nobody takes over and the cluster stays
			// leaderless).
			if x.syncActive() && !x.inSync(m.Name) {
				continue
			}
			if p, ok := x.o.Peers[m.Name]; ok && x.canTakeOver(p, max(x.c.Status.LastLSN, x.pg.LSN)) {
				good++
			}
		}
		// In quorum mode another node wins only with quorum votes: it
		// needs quorum+1 good members (§5.4 counting).
		if good > 0 && (!x.quorumSync() || good >= x.c.Sync.Quorum+1) {
			return vNo, true
		}
		// Patroni answers yes here unconditionally; the old leader may be
		// a lagging replica by now, so the lag limit still applies.
		if st := x.c.Status.LastLSN; st > x.pg.LSN && uint64(st-x.pg.LSN) > x.s.MaximumLagOnFailover {
			return vNoBecause(msg("my wal position %d is too far behind %d", x.pg.LSN, st)), true
		}
		return vYes, true
	}
	var pool []*dcs.Member
	for _, m := range x.c.Members {
		if m.Name == f.Leader {
			continue
		}
		if x.syncActive() && !x.inSync(m.Name) {
			continue
		}
		pool = append(pool, m)
	}
	if x.syncActive() && !x.quorumSync() && !x.inSync(x.me) {
		return vNo, true
	}
	// Patroni skips the lag check for every manual request. We skip it
	// only when the operator named no candidate; when the named candidate
	// is unhealthy the fallback keeps the automatic lag limit.
	return x.walComparison(pool, f.Candidate != "", f.Leader), true
}
