package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const sysid = "7000000000000000001"

func lsn(v dcs.LSN) *dcs.LSN { return &v }

func member(name, role string, l dcs.LSN, tags map[string]any) *dcs.Member {
	return &dcs.Member{Name: name, Role: role, State: "running", APIURL: "http://" + name, ConnURL: "postgres://" + name, XLogLocation: lsn(l), Tags: tags}
}

// world builds a three-node cluster snapshot with leader (or none) and an
// observation for me.
type world struct {
	o Observation
}

func newWorld(me, leader string) *world {
	c := &dcs.Cluster{
		Initialize: &dcs.Initialize{SystemID: sysid, Version: "1"},
		Config:     &dcs.ClusterConfig{Data: map[string]any{}, Version: "2"},
		History:    &dcs.TimelineHistory{},
		Status:     dcs.Status{LastLSN: 0x3000000},
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		role := "replica"
		if n == leader {
			role = "primary"
		}
		c.Members = append(c.Members, member(n, role, 0x3000000, nil))
	}
	if leader != "" {
		c.Leader = &dcs.Leader{Name: leader, Version: "3", Member: c.Member(leader)}
	}
	cfg := DefaultConfig()
	cfg.Name = me
	cfg.UsePgRewind = true
	pg := PGState{DataDir: DataPresent, SysID: sysid, Running: true, Timeline: 1, LSN: 0x3000000, CleanShutdown: true}
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != me {
			pg.Slots = append(pg.Slots, n)
		}
	}
	if me == leader {
		pg.Primary = true
	} else {
		pg.Upstream, pg.Streaming = leader, true
	}
	return &world{o: Observation{Now: t0, Config: cfg, Cluster: c, LastCluster: c, PG: pg}}
}

func (w *world) with(f func(o *Observation)) *world { f(&w.o); return w }

func peersAll(st PeerStatus, names ...string) map[string]PeerStatus {
	m := map[string]PeerStatus{}
	for _, n := range names {
		m[n] = st
	}
	return m
}

var replicaPeer = PeerStatus{Reachable: true, InRecovery: true, LSN: 0x2000000, Timeline: 1, Priority: 1}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		w       *world
		msg     string
		actions []Action
		role    string
	}{
		{
			name: "leader renews", spec: "§4.1 step 2",
			w:       newWorld("n1", "n1"),
			msg:     "no action. I am (n1), the leader with the lock",
			actions: []Action{UpdateLeader{}}, role: "primary",
		},
		{
			name: "renewal failed: demote without releasing", spec: "§4.1 renew failed",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Failure = &Failure{Action: UpdateLeader{}}
			}),
			msg:     "demoted self because failed to update leader lock in DCS",
			actions: []Action{Demote{Mode: DemoteImmediateNoLock}}, role: "demoted",
		},
		{
			name: "renewal failed in pause: keep running", spec: "§4.1, §13",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Failure = &Failure{Action: UpdateLeader{}}
				o.Cluster.Config.Data["pause"] = true
			}),
			msg: "PAUSE: continue to run as primary after failing to update leader lock in DCS",
		},
		{
			name: "renewal failed on a replica holding the key", spec: "§4.1",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Failure = &Failure{Action: UpdateLeader{}}
				o.PG.Primary = false
			}),
			msg: "not promoting because failed to update leader lock in DCS",
		},
		{
			name: "key holder running as replica promotes", spec: "§4.2 step 4",
			w:       newWorld("n1", "n1").with(func(o *Observation) { o.PG.Primary = false }),
			msg:     "promoted self to leader because I had the session lock",
			actions: []Action{UpdateLeader{}, Promote{}}, role: "promoted",
		},
		{
			name: "replica follows the leader", spec: "§4.3",
			w:   newWorld("n2", "n1"),
			msg: "no action. I am (n2), a secondary, and following a leader (n1)",
		},
		{
			name: "replica repoints to a new leader", spec: "§4.3 step 7",
			w:       newWorld("n2", "n3").with(func(o *Observation) { o.PG.Upstream = "n1" }),
			msg:     "no action. I am (n2), a secondary, and following a leader (n3)",
			actions: []Action{Follow{Upstream: "n3"}},
		},
		{
			name: "replicatefrom cascades", spec: "§4.3 target",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.Config.Tags = map[string]any{"replicatefrom": "n3"}
			}),
			msg:     "no action. I am (n2), a secondary, and following a leader (n1)",
			actions: []Action{Follow{Upstream: "n3"}},
		},
		{
			name: "nostream follows nobody", spec: "§4.3 target",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.Config.Tags = map[string]any{"nostream": true}
			}),
			msg:     "no action. I am (n2), a secondary, and following a leader (n1)",
			actions: []Action{Follow{}},
		},
		{
			name: "primary without the key demotes", spec: "§4.3 step 2",
			w:       newWorld("n2", "n1").with(func(o *Observation) { o.PG.Primary = true }),
			msg:     "demoting self because I do not have the lock and I was a leader",
			actions: []Action{Demote{Mode: DemoteImmediateNoLock, Upstream: "n1"}}, role: "demoted",
		},
		{
			name: "diverged replica rewinds", spec: "§6.2",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.PG.Diverged, o.PG.CanRewind = new(true), true
			}),
			msg: "running pg_rewind from n1", actions: []Action{Rewind{Leader: "n1"}},
		},
		{
			name: "diverged replica without rewind reinitializes when allowed", spec: "§6.2",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.PG.Diverged = new(true)
				o.Config.RemoveDataDirectoryOnDivergedTimelines = true
			}),
			msg: "reinitializing due to diverged timelines", actions: []Action{Reinit{Leader: "n1"}},
		},
		{
			name: "unlocked: ask peers first", spec: "§3.2 step 11",
			w:       newWorld("n2", ""),
			msg:     "asking peers whether I am the healthiest node",
			actions: []Action{ProbePeers{}},
		},
		{
			name: "unlocked: healthiest takes the key and promotes", spec: "§3.3",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Peers = peersAll(replicaPeer, "n1", "n3")
			}),
			msg:     "promoted self to leader by acquiring session lock",
			actions: []Action{AcquireLeader{}, Promote{}}, role: "promoted",
		},
		{
			name: "unlocked: a peer ahead wins", spec: "§3.2 WAL comparison",
			w: newWorld("n2", "").with(func(o *Observation) {
				p := replicaPeer
				p.LSN = 0x3001000
				o.Peers = map[string]PeerStatus{"n1": {}, "n3": p}
			}),
			msg: "following a different leader because i am not the healthiest node: Wal position of n3 is ahead of my wal position",
		},
		{
			name: "unlocked: the old primary is still alive", spec: "§3.2 WAL comparison",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Peers = map[string]PeerStatus{"n1": {Reachable: true, LSN: 0x3000000, Timeline: 1}, "n3": replicaPeer}
			}),
			msg: "following a different leader because i am not the healthiest node: Primary (n1) is still alive",
		},
		{
			name: "unlocked: equal WAL, higher failover_priority wins", spec: "§3.2, acceptance §12.2",
			w: newWorld("n2", "").with(func(o *Observation) {
				p := replicaPeer
				p.LSN, p.Priority = 0x3000000, 2
				o.Peers = map[string]PeerStatus{"n1": {}, "n3": p}
			}),
			msg: "following a different leader because i am not the healthiest node: n3 has equally tolerable WAL position and priority 2, while this node has priority 1",
		},
		{
			// The simulation found a cluster left without a leader when the
			// most advanced node deferred on priority to a peer that
			// check_timeline keeps from winning (seed 107912).
			name: "unlocked: equal WAL, higher priority but older timeline: no deferring", spec: "§3.2 WAL comparison, check_timeline",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.PG.Timeline = 2
				p := replicaPeer
				p.LSN, p.Priority = 0x3000000, 2
				o.Peers = map[string]PeerStatus{"n1": {}, "n3": p}
			}),
			msg:     "promoted self to leader by acquiring session lock",
			actions: []Action{AcquireLeader{}, Promote{}}, role: "promoted",
		},
		{
			name: "unlocked: too far behind a live survivor", spec: "§3.2 lag check (live LSNs)",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.PG.LSN = 0x1000000
				p := replicaPeer
				p.LSN, p.NoFailover = 0x3000000, true
				o.Peers = map[string]PeerStatus{"n1": {}, "n3": p}
				o.Cluster.Members[2].Tags = map[string]any{"nofailover": true}
				o.Cluster.Status.LastLSN = 0
			}),
			msg: "following a different leader because i am not the healthiest node: my wal position 16777216 is too far behind 50331648",
		},
		{
			name: "unlocked: nofailover never promotes", spec: "§3.2 step 6, acceptance §12.1",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Config.Tags = map[string]any{"failover_priority": 0}
			}),
			msg: "following a different leader because I am not allowed to promote",
		},
		{
			name: "unlocked: behind the cluster timeline", spec: "§3.2 timeline check",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Cluster.History = &dcs.TimelineHistory{Lines: []dcs.HistoryLine{{Timeline: 1, LSN: 0x100, NewLeader: "n3"}}}
				o.Peers = peersAll(replicaPeer, "n1", "n3")
			}),
			msg: "following a different leader because i am not the healthiest node: my timeline is behind the cluster's",
		},
		{
			name: "unlocked: lost the race", spec: "§3.3",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Peers = peersAll(replicaPeer, "n1", "n3")
				o.Failure = &Failure{Action: AcquireLeader{}}
			}),
			msg: "following new leader after trying and failing to obtain lock",
		},
		{
			name: "unlocked in sync mode: not in /sync", spec: "§3.2 step 10",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Cluster.Config.Data["synchronous_mode"] = true
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n3"}, Version: "9"}
			}),
			msg: "following a different leader because i am not the healthiest node: I am not in /sync",
		},
		{
			name: "unlocked in pause: replicas never promote", spec: "§13",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Cluster.Config.Data["pause"] = true
			}),
			msg: "PAUSE: no action. I am (n2)",
		},
		{
			name: "switchover: leader demotes gracefully", spec: "§5.1",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "7"}
				o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}}
			}),
			msg:     "switchover: demoting myself",
			actions: []Action{UpdateLeader{}, Demote{Mode: DemoteGraceful}}, role: "demoted",
		},
		{
			name: "switchover to an unhealthy candidate is cleared", spec: "§5.1",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "7"}
				o.Peers = map[string]PeerStatus{"n2": {}}
			}),
			msg:     "no action. I am (n1), the leader with the lock",
			actions: []Action{UpdateLeader{}, ClearFailover{Version: "7"}}, role: "primary",
		},
		{
			name: "scheduled switchover waits", spec: "§5.1 scheduled",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				at := t0.Add(time.Hour)
				o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", ScheduledAt: &at, Version: "7"}
			}),
			msg: "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}}, role: "primary",
		},
		{
			name: "candidate takes over after the leader released", spec: "§5.3",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "7"}
			}),
			msg:     "promoted self to leader by acquiring session lock",
			actions: []Action{AcquireLeader{}, Promote{}, ClearFailover{Version: "7"}}, role: "promoted",
		},
		{
			name: "DCS unreachable: primary demotes offline", spec: "§12",
			w:       newWorld("n1", "n1").with(func(o *Observation) { o.Cluster, o.DCSError = nil, true }),
			msg:     "demoted self because DCS is not accessible and I was a leader",
			actions: []Action{Demote{Mode: DemoteOffline}}, role: "demoted",
		},
		{
			name: "DCS unreachable: failsafe probes members first", spec: "§11",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster, o.DCSError = nil, true
				o.Config.FailsafeMode = true
				o.LastCluster.Failsafe = dcs.Failsafe{"n1": "http://n1", "n2": "http://n2"}
			}),
			msg: "probing failsafe members", actions: []Action{ProbeFailsafe{}},
		},
		{
			name: "DCS unreachable: failsafe keeps the primary", spec: "§11",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster, o.DCSError = nil, true
				o.Config.FailsafeMode = true
				o.LastCluster.Failsafe = dcs.Failsafe{"n1": "http://n1", "n2": "http://n2"}
				o.FailsafeOK = new(true)
			}),
			msg: "continue to run as a leader because failsafe mode is enabled and all members are accessible",
		},
		{
			name: "DCS unreachable: replica keeps going", spec: "§12",
			w:   newWorld("n2", "n1").with(func(o *Observation) { o.Cluster, o.DCSError = nil, true }),
			msg: "DCS is not accessible",
		},
		{
			name: "background operation: leader keeps the lease", spec: "§2 step 5",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Op = Operation{Kind: OpRestart, Running: true}
			}),
			msg: "updated leader lock during restart", actions: []Action{UpdateLeader{}},
		},
		{
			name: "background operation: lost the key while primary", spec: "§2 step 5",
			w: newWorld("n1", "n2").with(func(o *Observation) {
				o.Op = Operation{Kind: OpRestart, Running: true}
				o.PG.Primary = true
			}),
			msg:     "lost leader lock during restart",
			actions: []Action{CancelOp{}, Demote{Mode: DemoteImmediateNoLock, Upstream: "n2"}}, role: "demoted",
		},
		{
			name: "primary still starting", spec: "§2 step 6",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Op = Operation{Kind: OpStart, Running: true, Started: t0.Add(-100 * time.Second)}
				o.PG.Running, o.PG.Primary, o.PG.WasPrimary = false, false, true
			}),
			msg: "PostgreSQL is still starting up, 200 seconds until timeout", actions: []Action{UpdateLeader{}},
		},
		{
			name: "primary start timed out: fail over", spec: "§2 step 6",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Op = Operation{Kind: OpStart, Running: true, Started: t0.Add(-301 * time.Second)}
				o.PG.Running, o.PG.Primary, o.PG.WasPrimary = false, false, true
				o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}}
			}),
			msg: "stopped PostgreSQL because of startup timeout", actions: []Action{CancelOp{}, Demote{Mode: DemoteImmediate}}, role: "demoted",
		},
		{
			name: "primary start timed out, nobody to fail over to", spec: "§2 step 6",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Op = Operation{Kind: OpStart, Running: true, Started: t0.Add(-301 * time.Second)}
				o.PG.Running, o.PG.Primary, o.PG.WasPrimary = false, false, true
				o.Peers = map[string]PeerStatus{}
			}),
			msg: "primary start has timed out, but continuing to wait because failover is not possible", actions: []Action{UpdateLeader{}},
		},
		{
			name: "empty data dir: bootstrap race", spec: "§8.1 step 1",
			w: newWorld("n1", "").with(func(o *Observation) {
				o.Cluster.Initialize, o.PG = nil, PGState{DataDir: DataEmpty}
			}),
			msg: "trying to bootstrap a new cluster", actions: []Action{RaceInitialize{}, Bootstrap{}}, role: "uninitialized",
		},
		{
			name: "empty data dir: lost the bootstrap race", spec: "§8.1 step 1",
			w: newWorld("n1", "").with(func(o *Observation) {
				o.Cluster.Initialize, o.PG = nil, PGState{DataDir: DataEmpty}
				o.Failure = &Failure{Action: RaceInitialize{}}
			}),
			msg: "failed to acquire initialize lock", role: "uninitialized",
		},
		{
			name: "empty data dir: clone from a clonefrom replica", spec: "§8.1 step 2",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.PG = PGState{DataDir: DataEmpty}
				o.Cluster.Members[2].Tags = map[string]any{"clonefrom": true}
			}),
			msg: "trying to bootstrap from replica 'n3'", actions: []Action{Clone{From: "n3"}}, role: "uninitialized",
		},
		{
			name: "empty data dir: clone from the leader", spec: "§8.1 step 2",
			w:   newWorld("n2", "n1").with(func(o *Observation) { o.PG = PGState{DataDir: DataEmpty} }),
			msg: "trying to bootstrap from leader 'n1'", actions: []Action{Clone{From: "n1"}}, role: "uninitialized",
		},
		{
			name: "empty data dir: wait for the bootstrapping node", spec: "§8.1 step 4",
			w: newWorld("n2", "").with(func(o *Observation) {
				o.PG = PGState{DataDir: DataEmpty}
				o.Cluster.Initialize = &dcs.Initialize{}
			}),
			msg: "waiting for leader to bootstrap", role: "uninitialized",
		},
		{
			name: "empty data dir on the key holder: release", spec: "§2 step 9",
			w:   newWorld("n1", "n1").with(func(o *Observation) { o.PG = PGState{DataDir: DataEmpty} }),
			msg: "released leader key voluntarily as data dir empty and currently leader", actions: []Action{ReleaseLeader{}}, role: "uninitialized",
		},
		{
			name: "bootstrap finished", spec: "§8.2",
			w: newWorld("n1", "").with(func(o *Observation) {
				o.Bootstrapping = true
				o.Cluster.Initialize = &dcs.Initialize{}
				o.PG.Primary = true
			}),
			msg: "initialized a new cluster", actions: []Action{WriteInitialize{SysID: sysid}, WriteConfig{}, TakeLeader{}}, role: "primary",
		},
		{
			name: "standby leader bootstrap: start after the clone", spec: "§8.1, acceptance §16.4",
			w: newWorld("n1", "").with(func(o *Observation) {
				standbyCluster(o)
				o.Bootstrapping = true
				o.Op = Operation{Kind: OpClone}
				o.PG.Running, o.PG.Primary = false, false
			}),
			msg: "starting the new standby leader following the remote primary", actions: []Action{StartPostgres{Upstream: "remote"}},
		},
		{
			name: "standby leader bootstrap: failed start gives up", spec: "§8.2",
			w: newWorld("n1", "").with(func(o *Observation) {
				standbyCluster(o)
				o.Bootstrapping = true
				o.Op = Operation{Kind: OpStart, Failed: true}
				o.PG.Running, o.PG.Primary = false, false
			}),
			msg:     "Failed to bootstrap cluster",
			actions: []Action{CancelInitialize{}, StopPostgres{Immediate: true}, Exit{Reason: "Failed to bootstrap cluster"}},
		},
		{
			name: "bootstrap failed", spec: "§8.2",
			w: newWorld("n1", "").with(func(o *Observation) {
				o.Bootstrapping = true
				o.PG.Running = false
			}),
			msg:     "Failed to bootstrap cluster",
			actions: []Action{CancelInitialize{}, StopPostgres{Immediate: true}, Exit{Reason: "Failed to bootstrap cluster"}},
		},
		{
			name: "system ID mismatch exits", spec: "§2 step 10",
			w:       newWorld("n2", "n1").with(func(o *Observation) { o.PG.SysID = "7999999999999999999" }),
			msg:     "system ID mismatch, node n2 belongs to a different cluster: 7000000000000000001 != 7999999999999999999",
			actions: []Action{Exit{Reason: "system ID mismatch, node n2 belongs to a different cluster: 7000000000000000001 != 7999999999999999999"}},
		},
		{
			name: "adopt an existing primary: write initialize", spec: "§2 step 10",
			w: newWorld("n1", "").with(func(o *Observation) {
				o.Cluster.Initialize, o.FirstCycle, o.PG.Primary = nil, true, true
				o.Peers = map[string]PeerStatus{}
			}),
			msg:     "acquired session lock as a leader",
			actions: []Action{WriteInitialize{SysID: sysid}, AcquireLeader{}}, role: "primary",
		},
		{
			name: "crashed primary with the key restarts in place", spec: "§6.3 step 2, acceptance §15.1",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Running, o.PG.Primary, o.PG.WasPrimary, o.PG.CleanShutdown = false, false, true, false
			}),
			msg: "starting primary after failure", actions: []Action{UpdateLeader{}, StartPostgres{Primary: true}}, role: "primary",
		},
		{
			name: "crash with primary_start_timeout 0 fails over", spec: "§6.3 step 1, acceptance §15.2",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Running, o.PG.Primary, o.PG.WasPrimary, o.PG.CleanShutdown = false, false, true, false
				o.Cluster.Config.Data["primary_start_timeout"] = 0
				o.Peers = map[string]PeerStatus{"n2": {Reachable: true, InRecovery: true, LSN: 0x3000000, Timeline: 1}}
			}),
			msg: "stopped PostgreSQL to fail over after a crash", actions: []Action{ReleaseLeader{}}, role: "demoted",
		},
		{
			name: "failed restart releases the key", spec: "§2 step 8, acceptance §15.3",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Running, o.RecoveryAttempt = false, true
			}),
			msg: "removed leader key after trying and failing to start postgres", actions: []Action{ReleaseLeader{}}, role: "demoted",
		},
		{
			name: "stopped replica starts following", spec: "§6.3 step 5",
			w:   newWorld("n2", "n1").with(func(o *Observation) { o.PG.Running = false }),
			msg: "starting as a secondary", actions: []Action{StartPostgres{Upstream: "n1"}},
		},
		{
			name: "unclean former primary runs crash recovery first", spec: "§6.3 step 4",
			w: newWorld("n2", "n1").with(func(o *Observation) {
				o.PG.Running, o.PG.WasPrimary, o.PG.CleanShutdown, o.PG.CanRewind = false, true, false, true
			}),
			msg: "doing crash recovery in a single user mode", actions: []Action{CrashRecovery{}},
		},
		{
			name: "pause: key holder not primary releases", spec: "§4.1 step 1, §13",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Primary = false
				o.Cluster.Config.Data["pause"] = true
			}),
			msg: "PAUSE: removed leader lock because postgres is not running as primary", actions: []Action{ReleaseLeader{}},
		},
		{
			name: "pause: stopped Postgres on the key holder", spec: "§2 step 11, §13",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Running = false
				o.Cluster.Config.Data["pause"] = true
			}),
			msg: "PAUSE: removed leader lock because postgres is not running", actions: []Action{ReleaseLeader{}},
		},
		{
			name: "watchdog required but unusable: no promotion", spec: "§4.2 step 1, §16",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.PG.Primary = false
				o.Config.Watchdog = WatchdogRequired
			}),
			msg: "Not promoting self because watchdog could not be activated", actions: []Action{UpdateLeader{}, ReleaseLeader{}},
		},
		{
			name: "watchdog armed before acting as primary", spec: "§4.2 step 1, §16",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Config.Watchdog, o.WatchdogUsable = WatchdogAutomatic, true
			}),
			msg: "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}, ArmWatchdog{Timeout: 25 * time.Second}}, role: "primary",
		},
		{
			name: "history written after promotion", spec: "§7.4",
			w:   newWorld("n1", "n1").with(func(o *Observation) { o.PG.Timeline = 2 }),
			msg: "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}, WriteHistory{}}, role: "primary",
		},
		{
			name: "slots: one per other member plus permanent slots", spec: "§10",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				o.Cluster.Config.Data["slots"] = map[string]any{"pm_1": map[string]any{"type": "physical"}, "Bad-Name": nil, "logi": map[string]any{"type": "logical"}}
				o.Cluster.Members = append(o.Cluster.Members, member("db-4.x", "replica", 0, nil), member("n5", "replica", 0, map[string]any{"nostream": true}))
			}),
			msg: "no action. I am (n1), the leader with the lock", actions: []Action{UpdateLeader{}, SyncSlots{Names: "db_4_x,n2,n3,pm_1"}}, role: "primary",
		},
		{
			name: "standby cluster: leader follows the remote primary", spec: "§14",
			w: newWorld("n1", "n1").with(func(o *Observation) {
				standbyCluster(o)
				o.PG.Primary = false
			}),
			msg: "promoted self to a standby leader because i had the session lock", actions: []Action{UpdateLeader{}, Follow{Upstream: "remote"}}, role: "standby_leader",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.w.o)
			require.Equal(t, tc.msg, d.Message, "spec/ha-loop.md %s", tc.spec)
			require.Equal(t, tc.actions, d.Actions, "spec/ha-loop.md %s", tc.spec)
			if tc.role != "" {
				require.Equal(t, tc.role, d.Role, "spec/ha-loop.md %s", tc.spec)
			}
		})
	}
}

func syncWorld(mode any, strict bool) *world {
	return newWorld("n1", "n1").with(func(o *Observation) {
		o.Cluster.Config.Data["synchronous_mode"] = mode
		o.Cluster.Config.Data["synchronous_mode_strict"] = strict
		o.PG.Replicas = []ReplicaStat{
			{Name: "n2", Streaming: true, SyncState: "async", LSN: 0x3000000},
			{Name: "n3", Streaming: true, SyncState: "async", LSN: 0x2000000},
		}
	})
}

func TestDecideSync(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		w       *world
		actions []Action
	}{
		{
			name: "enable writes /sync with no standbys", spec: "§7.1 step 1",
			w:       syncWorld(true, false),
			actions: []Action{UpdateLeader{}, SetSync{Leader: "n1"}},
		},
		{
			name: "ssn first: the best streaming replica", spec: "§7.1 step 7",
			w: syncWorld(true, false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Version: "5"}
			}),
			actions: []Action{UpdateLeader{}, SetSyncStandbyNames{Names: "n2", Num: 1}},
		},
		{
			name: "/sync grows only after Postgres confirms", spec: "§7.1 step 8",
			w: syncWorld(true, false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Version: "5"}
				o.PG.SyncStandbyNames, o.PG.SyncNum, o.PG.SyncChangedLSN = []string{"n2"}, 1, 0x3000000
				o.PG.Replicas[0].SyncState = "sync"
			}),
			actions: []Action{UpdateLeader{}, SetSync{Leader: "n1", Standbys: "n2", Prev: "5"}},
		},
		{
			name: "not confirmed before reaching the flush LSN of the ssn change", spec: "§7 confirmation",
			w: syncWorld(true, false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Version: "5"}
				o.PG.SyncStandbyNames, o.PG.SyncNum, o.PG.SyncChangedLSN = []string{"n2"}, 1, 0x3100000
				o.PG.Replicas[0].SyncState = "sync"
			}),
			actions: []Action{UpdateLeader{}},
		},
		{
			name: "removed from /sync before ssn drops it", spec: "§7.1 invariant",
			w: syncWorld(true, false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n2"}, Version: "5"}
				o.PG.SyncStandbyNames, o.PG.SyncNum = []string{"n2"}, 1
				o.PG.Replicas = o.PG.Replicas[1:] // n2 stopped streaming
			}),
			actions: []Action{UpdateLeader{}, SetSync{Leader: "n1", Prev: "5"}, SetSyncStandbyNames{Names: "n3", Num: 1}},
		},
		{
			name: "strict without candidates: placeholder", spec: "§7.1 strict",
			w: syncWorld(true, true).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Version: "5"}
				o.PG.Replicas = nil
			}),
			actions: []Action{UpdateLeader{}, SetSyncStandbyNames{Placeholder: true, Num: 1}},
		},
		{
			name: "strict keeps the last sync standby in ssn", spec: "§7.1 strict, acceptance §1.8",
			w: syncWorld(true, true).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n2"}, Version: "5"}
				o.PG.Replicas = nil
			}),
			actions: []Action{UpdateLeader{}, SetSyncStandbyNames{Names: "n2", Num: 1}},
		},
		{
			name: "sync mode off deletes /sync and clears ssn", spec: "§7.2 (off)",
			w: syncWorld(false, false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Standbys: []string{"n2"}, Version: "5"}
				o.PG.SyncStandbyNames, o.PG.SyncNum = []string{"n2"}, 1
			}),
			actions: []Action{UpdateLeader{}, DeleteSync{Prev: "5"}, SetSyncStandbyNames{}},
		},
		{
			name: "pre-promote in strict mode keeps the old leader synchronous", spec: "§7.2, acceptance §1.8",
			w: syncWorld(true, true).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n3", Standbys: []string{"n1"}, Version: "5"}
				o.PG.Primary, o.PG.Replicas = false, nil
			}),
			actions: []Action{UpdateLeader{}, SetSync{Leader: "n1", Standbys: "n3", Prev: "5"}, SetSyncStandbyNames{Names: "n3", Num: 1}, Promote{}},
		},
		{
			name: "quorum: first standby goes into ssn before /sync", spec: "§7.5 adding nodes",
			w: syncWorld("quorum", false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n1", Version: "5"}
			}),
			actions: []Action{UpdateLeader{}, SetSyncStandbyNames{Names: "n2", Num: 1, Quorum: true}},
		},
		{
			name: "quorum: leader change rewrites voters with the old leader", spec: "§7.5 leader change",
			w: syncWorld("quorum", false).with(func(o *Observation) {
				o.Cluster.Sync = &dcs.SyncState{Leader: "n3", Standbys: []string{"n1", "n2"}, Quorum: 1, Version: "5"}
			}),
			actions: []Action{UpdateLeader{}, SetSync{Leader: "n1", Standbys: "n2,n3", Quorum: 1, Prev: "5"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.actions, Decide(tc.w.o).Actions, "spec/ha-loop.md %s", tc.spec)
		})
	}
}

func TestSlotName(t *testing.T) {
	// spec/ha-loop.md §10 slot names.
	require.Equal(t, "postgres_1", SlotName("Postgres-1"))
	require.Equal(t, "a_b", SlotName("a.b"))
	require.Equal(t, "nu0246de", SlotName("nöde"))
	require.Len(t, SlotName(strings.Repeat("x", 80)), 63)
}

func TestQuorumSafe(t *testing.T) {
	// spec/ha-loop.md §7.5 safety invariant.
	tests := []struct {
		name   string
		voters []string
		quorum int
		ssn    []string
		num    int
		want   bool
	}{
		{"no voters", nil, 0, []string{"a", "b"}, 1, true},
		{"equal sets", []string{"a", "b"}, 1, []string{"a", "b"}, 1, true},
		{"too few acks for the quorum", []string{"a", "b"}, 0, []string{"a", "b"}, 1, false},
		{"disjoint", []string{"a"}, 1, []string{"b"}, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, quorumSafe(tc.voters, tc.quorum, tc.ssn, tc.num))
		})
	}
}

// TestDecideDoesNotMutate checks STYLE.md §1: Decide leaves its input
// alone, over every case of TestDecide's shape.
func TestDecideDoesNotMutate(t *testing.T) {
	build := func() Observation {
		return syncWorld(true, true).with(func(o *Observation) {
			o.Cluster.Sync = &dcs.SyncState{Leader: "n3", Standbys: []string{"n2", "n1"}, Version: "5"}
			o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "7"}
			o.Peers = peersAll(replicaPeer, "n2", "n3")
			o.PG.SyncStandbyNames = []string{"n3", "n2"}
		}).o
	}
	for _, mut := range []func(o *Observation){
		func(o *Observation) {},
		func(o *Observation) { o.Cluster.Leader = nil },
		func(o *Observation) { o.PG.Primary = false },
		func(o *Observation) { o.Cluster.Config.Data["synchronous_mode"] = "quorum" },
	} {
		a, b := build(), build()
		mut(&a)
		mut(&b)
		Decide(a)
		require.Equal(t, b, a)
	}
}
