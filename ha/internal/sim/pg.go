package sim

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// Branch is one timeline of one cluster history: Num is the timeline
// number, ID makes branches with equal numbers distinct.
type Branch struct{ Num, ID int }

// Fork records that a lineage left branch B at LSN.
type Fork struct {
	B   Branch
	LSN dcs.LSN
}

// Pos is a WAL position on a branch.
type Pos struct {
	B   Branch
	LSN dcs.LSN
}

// PG is a simulated PostgreSQL data directory and postmaster.
type PG struct {
	w    *World
	Name string

	Data        bool
	SysID       string
	Running     bool
	Primary     bool
	Clean       bool
	WasPrimary  bool
	TL          Branch
	Hist        []Fork
	LSN         dcs.LSN
	Upstream    string
	Streaming   bool
	SSN         []string
	SSNNum      int
	SSNQuorum   bool
	Placeholder bool
	SSNChanged  dcs.LSN
	Slots       []string
	Logical     []string
	SlotLSN     map[string]dcs.LSN
	// Restarts counts Restart calls, Clones CreateReplica and
	// CreateReplicaBasebackup calls, BasebackupClones only the latter.
	Restarts, Clones, BasebackupClones int
	// Pending reports a parameter change that needs a restart; Restart
	// clears it.
	Pending bool
	// Broken makes Start fail.
	Broken bool
	// Slow makes replication apply only a little WAL per tick.
	Slow bool
}

var _ ha.Postgres = (*PG)(nil)

var errNotRunning = errors.New("sim: postgres not running")

// contains reports whether the lineage of p includes position x.
func (p *PG) contains(x Pos) bool {
	if p.TL == x.B {
		return p.LSN >= x.LSN
	}
	for _, f := range p.Hist {
		if f.B == x.B {
			return f.LSN >= x.LSN
		}
	}
	return false
}

// compat reports whether p can stream from u: 0 ok, 1 wait (u behind on
// an older branch), 2 diverged.
func (p *PG) compat(u *PG) int {
	if p.SysID != u.SysID {
		return 2
	}
	if p.TL == u.TL {
		return 0
	}
	for _, f := range u.Hist {
		if f.B == p.TL {
			if p.LSN <= f.LSN {
				return 0
			}
			return 2
		}
	}
	for _, f := range p.Hist {
		if f.B == u.TL {
			if u.LSN <= f.LSN {
				return 1
			}
			return 2
		}
	}
	return 2
}

func (p *PG) State(ctx context.Context) (ha.PGState, error) {
	defer p.w.lock()()
	s := ha.PGState{DataDir: ha.DataEmpty}
	if !p.Data {
		s.Running = p.Running
		return s, nil
	}
	s = ha.PGState{
		DataDir: ha.DataPresent, SysID: p.SysID, Running: p.Running, Primary: p.Running && p.Primary,
		Timeline: p.TL.Num, LSN: p.LSN, Upstream: p.Upstream, Streaming: p.Running && p.Streaming,
		CleanShutdown: p.Clean, WasPrimary: p.WasPrimary, CanRewind: p.w.CanRewind,
		SyncStandbyNames: slices.Clone(p.SSN), SyncNum: p.SSNNum, SyncPlaceholder: p.Placeholder,
		SyncChangedLSN: p.SSNChanged, Slots: slices.Clone(p.Slots), LogicalSlots: slices.Clone(p.Logical),
		PendingRestart: p.Running && p.Pending, ServerVersion: 150004, SlotLSNs: maps.Clone(p.SlotLSN),
	}
	if s.PendingRestart {
		s.PendingRestartReason = map[string]dcs.PendingParam{"max_connections": {OldValue: "100", NewValue: "120"}}
	}
	if !p.Running {
		s.Timeline = 0
		s.Upstream = ""
	}
	if p.Running && p.Primary {
		chosen := p.w.syncChosen(p)
		for _, r := range p.w.pgsByName() {
			if r == p || !r.Running || r.Primary || r.Upstream != p.Name || !r.Streaming {
				continue
			}
			st := "async"
			switch {
			case slices.Contains(chosen, r.Name) && p.SSNQuorum:
				st = "quorum"
			case slices.Contains(chosen, r.Name):
				st = "sync"
			case slices.Contains(p.SSN, r.Name):
				st = "potential"
			}
			s.Replicas = append(s.Replicas, ha.ReplicaStat{Name: r.Name, Streaming: true, SyncState: st, LSN: r.LSN})
		}
	}
	return s, nil
}

func (p *PG) Bootstrap(ctx context.Context) error {
	defer p.w.lock()()
	p.w.nextID++
	*p = PG{w: p.w, Name: p.Name, Data: true, SysID: "7000000000000000001", Running: true, Primary: true, WasPrimary: true,
		TL: Branch{1, p.w.nextID}, LSN: 0x1000000}
	return nil
}

func (p *PG) CreateReplica(ctx context.Context, from *dcs.Member) error {
	defer p.w.lock()()
	if from == nil {
		return errors.New("sim: no leader to clone from")
	}
	src := p.w.pg(from.Name)
	if src == nil || !src.Data || !src.Running {
		return errors.New("sim: clone source not running")
	}
	p.Clones++
	p.Data, p.SysID, p.Running, p.Primary, p.Clean, p.WasPrimary = true, src.SysID, false, false, true, false
	p.TL, p.Hist, p.LSN = src.TL, slices.Clone(src.Hist), src.LSN
	p.SSN, p.SSNNum, p.Placeholder, p.Upstream, p.Streaming = nil, 0, false, "", false
	return nil
}

// CreateReplicaBasebackup is ha.BasebackupCloner: a clone like
// CreateReplica, counted apart so tests see which path a reinitialize took.
func (p *PG) CreateReplicaBasebackup(ctx context.Context, from *dcs.Member) error {
	if err := p.CreateReplica(ctx, from); err != nil {
		return err
	}
	defer p.w.lock()()
	p.BasebackupClones++
	return nil
}

func (p *PG) Start(ctx context.Context, primary bool, upstream *dcs.Member) error {
	defer p.w.lock()()
	if !p.Data {
		return errors.New("sim: no data directory")
	}
	if p.Broken {
		p.Running = false
		return errors.New("sim: start failed")
	}
	p.Running = true
	p.Primary = primary && p.WasPrimary
	p.WasPrimary = p.Primary
	p.Clean = false
	p.Streaming = false
	p.Upstream = ""
	if !p.Primary && upstream != nil {
		p.Upstream = upstream.Name
	}
	return nil
}

func (p *PG) Stop(ctx context.Context, immediate bool) error {
	defer p.w.lock()()
	if !p.Running {
		return nil
	}
	if p.Primary && !immediate {
		// A fast shutdown sends all WAL to connected walsenders.
		for _, r := range p.w.pgsByName() {
			if r.Running && r.Upstream == p.Name && r.Streaming && r.TL == p.TL {
				r.LSN = p.LSN
			}
		}
	}
	p.Running = false
	p.Streaming = false
	p.WasPrimary = p.Primary
	p.Clean = !immediate || !p.Primary
	return nil
}

// Crash kills the postmaster.
func (p *PG) Crash() {
	defer p.w.lock()()
	if !p.Running {
		return
	}
	p.WasPrimary = p.Primary
	p.Running = false
	p.Streaming = false
	p.Clean = !p.Primary
}

func (p *PG) Promote(ctx context.Context) error {
	defer p.w.lock()()
	if !p.Running || p.Primary {
		return errNotRunning
	}
	p.w.onPromote(p)
	p.w.nextID++
	p.Hist = append(p.Hist, Fork{B: p.TL, LSN: p.LSN})
	p.TL = Branch{p.TL.Num + 1, p.w.nextID}
	p.Primary, p.WasPrimary, p.Upstream, p.Streaming = true, true, "", false
	return nil
}

func (p *PG) Follow(ctx context.Context, upstream *dcs.Member) error {
	defer p.w.lock()()
	if !p.Running {
		return errNotRunning
	}
	if p.Primary {
		return errors.New("sim: cannot follow while primary")
	}
	name := ""
	if upstream != nil {
		name = upstream.Name
	}
	if p.Upstream != name {
		p.Upstream = name
		p.Streaming = false
	}
	return nil
}

func (p *PG) Diverged(ctx context.Context, leader *dcs.Member) (bool, error) {
	defer p.w.lock()()
	l := p.w.pg(leader.Name)
	if l == nil || !l.Running || !l.Primary {
		return false, errors.New("sim: leader not a running primary")
	}
	return p.compat(l) == 2, nil
}

func (p *PG) Rewind(ctx context.Context, leader *dcs.Member) error {
	defer p.w.lock()()
	l := p.w.pg(leader.Name)
	if l == nil || !l.Running || p.Running {
		return errors.New("sim: cannot rewind")
	}
	// Move back to the last common position and onto the leader's branch.
	common := dcs.LSN(0)
	lin := append(slices.Clone(l.Hist), Fork{B: l.TL, LSN: l.LSN})
	mine := append(slices.Clone(p.Hist), Fork{B: p.TL, LSN: p.LSN})
	for i := 0; i < len(lin) && i < len(mine); i++ {
		if lin[i].B != mine[i].B {
			break
		}
		common = min(lin[i].LSN, mine[i].LSN)
	}
	p.TL, p.Hist, p.LSN = l.TL, slices.Clone(l.Hist), min(common, l.LSN)
	p.Clean, p.WasPrimary, p.Primary = true, false, false
	return nil
}

func (p *PG) CrashRecovery(ctx context.Context) error {
	defer p.w.lock()()
	if p.Running {
		return errors.New("sim: running")
	}
	p.Clean = true
	return nil
}

func (p *PG) SetSyncStandbyNames(ctx context.Context, s ha.SetSyncStandbyNames) error {
	defer p.w.lock()()
	var names []string
	if s.Names != "" {
		names = strings.Split(s.Names, ",")
	}
	if !slices.Equal(names, p.SSN) || s.Num != p.SSNNum || s.Placeholder != p.Placeholder || s.Quorum != p.SSNQuorum {
		p.SSNChanged = p.LSN
		p.w.logf("%s ssn = %s", p.Name, s)
	}
	p.SSN, p.SSNNum, p.SSNQuorum, p.Placeholder = names, s.Num, s.Quorum, s.Placeholder
	if s.Placeholder {
		p.SSN = nil
	}
	return nil
}

func (p *PG) TimelineHistory(ctx context.Context) ([]dcs.HistoryLine, error) {
	defer p.w.lock()()
	var out []dcs.HistoryLine
	for _, f := range p.Hist {
		out = append(out, dcs.HistoryLine{Timeline: f.B.Num, LSN: f.LSN, Reason: "no recovery target specified", NewLeader: p.Name})
	}
	return out, nil
}

func (p *PG) SyncSlots(ctx context.Context, names []string, logical []ha.LogicalSlot) error {
	defer p.w.lock()()
	if !p.Running {
		return errNotRunning
	}
	p.Slots = slices.Clone(names)
	p.Logical = nil
	for _, l := range logical {
		p.Logical = append(p.Logical, l.Name)
	}
	return nil
}

// Restart is a fast stop and a start in the same role (spec §9.1).
func (p *PG) Restart(ctx context.Context, primary bool, upstream *dcs.Member) error {
	if err := p.Stop(ctx, false); err != nil {
		return err
	}
	unlock := p.w.lock()
	p.Restarts++
	p.Pending = false
	unlock()
	return p.Start(ctx, primary, upstream)
}

// CopyLogicalSlots copies logical slots that exist on the leader.
func (p *PG) CopyLogicalSlots(ctx context.Context, leader *dcs.Member, names []string) error {
	defer p.w.lock()()
	l := p.w.pg(leader.Name)
	if l == nil || !l.Running {
		return errors.New("sim: leader not running")
	}
	for _, n := range names {
		if slices.Contains(l.Logical, n) && !slices.Contains(p.Logical, n) {
			p.Logical = append(p.Logical, n)
		}
	}
	slices.Sort(p.Logical)
	return nil
}

// Checkpoint is a no-op: the simulation has no pg_control.
func (p *PG) Checkpoint(ctx context.Context) error {
	defer p.w.lock()()
	if !p.Running {
		return errNotRunning
	}
	return nil
}

// AdvanceSlots records the slots' new positions (never past this node's
// own position, as Postgres clamps them).
func (p *PG) AdvanceSlots(ctx context.Context, to map[string]dcs.LSN) error {
	defer p.w.lock()()
	if !p.Running {
		return errNotRunning
	}
	if p.SlotLSN == nil {
		p.SlotLSN = map[string]dcs.LSN{}
	}
	for n, l := range to {
		if slices.Contains(p.Slots, n) || slices.Contains(p.Logical, n) {
			p.SlotLSN[n] = max(p.SlotLSN[n], min(l, p.LSN))
		}
	}
	return nil
}
