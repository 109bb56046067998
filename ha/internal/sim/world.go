package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// Options describe one simulated run.
type Options struct {
	Seed  uint64
	Nodes int
	// Steps is the number of random schedule steps (each advances the
	// clock 0.1-3 s and may inject a fault).
	Steps        int
	TTL          time.Duration
	LoopWait     time.Duration
	RetryTimeout time.Duration
	// SyncMode is "off", "on", "strict" or "quorum".
	SyncMode string
	// Tags per node name (nofailover, failover_priority, ...).
	Tags map[string]map[string]any
	// NoFaults runs the bootstrap and a quiet period only.
	NoFaults bool
	// Watchdog gives every node a simulated watchdog device in this mode
	// (off: none).
	Watchdog ha.WatchdogMode
}

const (
	tick       = 100 * time.Millisecond
	writeRate  = 16 << 10 // bytes per tick on the primary
	slowRate   = 4 << 10  // bytes per tick on a slow replica
	maxLag     = 1 << 20
	settleRuns = 3
)

// Node is one simulated member.
type Node struct {
	Name  string
	PG    *PG
	Store *Store
	Node  *ha.Node
	Tags  map[string]any

	Alive       bool
	FrozenUntil time.Time
	NextRun     time.Time
	BusyUntil   time.Time
	PeerCut     bool
	ReplCut     bool
	LastMsg     string
	// Watchdog is the node's device (nil without Options.Watchdog).
	Watchdog *Watchdog
}

// Watchdog is a simulated watchdog device: once armed it fires when no
// keepalive came within its timeout. Firing is only counted.
type Watchdog struct {
	w          *World
	Armed      bool
	Timeout    time.Duration
	Last       time.Time
	Keepalives int
	Fired      int
}

var _ ha.Watchdog = (*Watchdog)(nil)

// Arm activates the device or feeds it; timeout 0 keeps the timeout and
// does not activate (ha.Watchdog).
func (d *Watchdog) Arm(timeout time.Duration) error {
	if timeout <= 0 && !d.Armed {
		return nil
	}
	if timeout > 0 {
		d.Timeout = timeout
	}
	d.Armed, d.Last = true, d.w.Clock.Now()
	d.Keepalives++
	return nil
}

func (d *Watchdog) Disarm() error { d.Armed = false; return nil }
func (d *Watchdog) Usable() bool  { return true }

// check counts a firing: armed and not fed within the timeout.
func (d *Watchdog) check(now time.Time) {
	if d.Armed && now.Sub(d.Last) > d.Timeout {
		d.Fired++
		d.Last = now
	}
}

// World is one simulated cluster.
type World struct {
	Opt       Options
	rng       *rand.Rand
	Clock     *testingclock.FakeClock
	DCS       *DCS
	Nodes     []*Node
	nextID    int
	CanRewind bool
	start     time.Time

	Script     []string
	Violations []string

	syncMode    string
	paused      bool
	ttl, lw, rt time.Duration
	syncAcked   *Pos
	foreignSync *dcs.SyncState
	outageUntil time.Time
	extra       map[string]any

	// Events records promotions, for timing measurements.
	Promotions []Promotion
	Expiries   []time.Time
	// Heartbeats is the last failsafe heartbeat each member received.
	Heartbeats map[string]ha.FailsafeHeartbeat
	logger     *slog.Logger

	// concurrent is set when nodes run their own goroutines (Node.Run over
	// another Store); mu then serialises the simulated Postgres.
	concurrent bool
	mu         sync.Mutex
}

func (w *World) lock() func() {
	if !w.concurrent {
		return func() {}
	}
	w.mu.Lock()
	return w.mu.Unlock
}

// Promotion is one promote call.
type Promotion struct {
	At   time.Time
	Name string
}

// New builds a world with every node started on an empty data directory.
func New(opt Options) *World {
	if opt.Nodes == 0 {
		opt.Nodes = 3
	}
	if opt.TTL == 0 {
		opt.TTL, opt.LoopWait, opt.RetryTimeout = 30*time.Second, 10*time.Second, 10*time.Second
	}
	if opt.SyncMode == "" {
		opt.SyncMode = "off"
	}
	w := &World{
		Opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15)),
		Clock: testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), CanRewind: true,
		ttl: opt.TTL, lw: opt.LoopWait, rt: opt.RetryTimeout, syncMode: opt.SyncMode,
		logger: slog.New(slog.DiscardHandler),
	}
	w.start = w.Clock.Now()
	w.DCS = NewDCS(w.Clock.Now)
	w.DCS.onSync = func(old, new *dcs.SyncState) {
		if new == nil {
			w.logf("/sync deleted")
		} else {
			w.logf("/sync = %s:%v q=%d", new.Leader, new.Standbys, new.Quorum)
		}
	}
	w.writeConfig()
	for i := range opt.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		n := &Node{Name: name, Tags: opt.Tags[name], Alive: true}
		n.PG = &PG{w: w, Name: name}
		n.Store = w.DCS.Client(name, w.ttl)
		w.Nodes = append(w.Nodes, n)
		w.startNode(n)
	}
	return w
}

func (w *World) writeConfig() {
	data := map[string]any{
		"ttl": w.ttl.Seconds(), "loop_wait": w.lw.Seconds(), "retry_timeout": w.rt.Seconds(),
		"maximum_lag_on_failover": maxLag, "pause": w.paused,
	}
	for k, v := range w.extra {
		data[k] = v
	}
	switch w.syncMode {
	case "on":
		data["synchronous_mode"] = true
	case "strict":
		data["synchronous_mode"] = true
		data["synchronous_mode_strict"] = true
	case "quorum":
		data["synchronous_mode"] = "quorum"
	}
	w.DCS.SetConfigData(data)
}

func (w *World) syncOn() bool { return w.syncMode != "off" }

// SetConfig changes one dynamic configuration key (as PATCH /config
// would); "synchronous_mode" takes off/on/strict/quorum, "pause" a bool.
func (w *World) SetConfig(key string, v any) {
	switch key {
	case "synchronous_mode":
		w.syncMode = v.(string)
		if w.syncMode == "off" {
			w.syncAcked = nil
		}
	case "pause":
		w.paused = v.(bool)
	default:
		if w.extra == nil {
			w.extra = map[string]any{}
		}
		w.extra[key] = v
	}
	w.writeConfig()
	w.logf("config %s = %v", key, v)
}

// Node returns the node with the given name, or nil.
func (w *World) Node(name string) *Node { return w.node(name) }

func (w *World) startNode(n *Node) {
	opts := ha.Options{
		Config: w.config(n),
		Store:  n.Store, Postgres: n.PG, Peers: &peers{w: w, self: n}, Clock: w.Clock,
		APIURL: "sim://" + n.Name, ConnURL: "postgres://" + n.Name, Inline: true,
	}
	if w.Opt.Watchdog != ha.WatchdogOff {
		if n.Watchdog == nil {
			n.Watchdog = &Watchdog{w: w}
		}
		opts.Watchdog = n.Watchdog
	}
	node, err := ha.New(opts)
	if err != nil {
		panic(err)
	}
	n.Node, n.Alive, n.NextRun, n.BusyUntil, n.FrozenUntil = node, true, w.Clock.Now(), time.Time{}, time.Time{}
}

func (w *World) config(n *Node) ha.Config {
	c := ha.DefaultConfig()
	c.Name, c.Tags, c.TTL, c.LoopWait, c.RetryTimeout = n.Name, n.Tags, w.ttl, w.lw, w.rt
	c.Watchdog = w.Opt.Watchdog
	c.UsePgRewind, c.Logger, c.DecisionLogSize = true, w.logger, 20
	return c
}

func (w *World) pg(name string) *PG {
	for _, n := range w.Nodes {
		if n.Name == name {
			return n.PG
		}
	}
	return nil
}

func (w *World) node(name string) *Node {
	for _, n := range w.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (w *World) pgsByName() []*PG {
	out := make([]*PG, len(w.Nodes))
	for i, n := range w.Nodes {
		out[i] = n.PG
	}
	return out
}

// syncChosen returns the standbys Postgres treats as synchronous on p.
func (w *World) syncChosen(p *PG) []string {
	if len(p.SSN) == 0 {
		return nil
	}
	var chosen []string
	for _, name := range p.SSN {
		r := w.pg(name)
		if r == nil || !r.Running || r.Primary || r.Upstream != p.Name || !r.Streaming {
			continue
		}
		chosen = append(chosen, name)
		if !p.SSNQuorum && len(chosen) == p.SSNNum {
			break
		}
	}
	return chosen
}

func (w *World) logf(format string, a ...any) {
	w.Script = append(w.Script, fmt.Sprintf("%7.1fs ", w.Clock.Since(w.start).Seconds())+fmt.Sprintf(format, a...))
}

func (w *World) violate(format string, a ...any) {
	v := fmt.Sprintf("%.1fs: ", w.Clock.Since(w.start).Seconds()) + fmt.Sprintf(format, a...)
	w.Violations = append(w.Violations, v)
	w.Script = append(w.Script, "VIOLATION "+v)
}

// onPromote checks invariants (b)-(e) at the moment Postgres is promoted.
func (w *World) onPromote(p *PG) {
	now := w.Clock.Now()
	if w.concurrent {
		now = time.Now() // nodes run on the real (synctest) clock
	}
	n := w.node(p.Name)
	w.Promotions = append(w.Promotions, Promotion{At: now, Name: p.Name})
	if w.concurrent {
		return // the invariant checks below read the model DCS
	}
	w.logf("promote %s lsn=%s tl=%d", p.Name, p.LSN, p.TL.Num)
	if w.DCS.Leader() != p.Name {
		w.violate("(b) %s promoted without holding the leader key (holder %q)", p.Name, w.DCS.leader)
	}
	if !n.Node.CanAcceptWrites(now) {
		w.violate("(b) %s promoted with an expired lease", p.Name)
	}
	m := &dcs.Member{Name: p.Name, Tags: n.Tags}
	if m.NoFailover() {
		w.violate("(d) nofailover node %s promoted", p.Name)
	}
	f := w.DCS.failover
	if f == nil && w.DCS.clearedAt.Equal(now) {
		f = w.DCS.clearedFailover
	}
	w.DCS.clearedFailover = nil
	manual := f != nil && (f.Candidate == p.Name || f.Candidate == "")
	if st := w.DCS.status.LastLSN; !manual && st > p.LSN && uint64(st-p.LSN) > maxLag {
		w.violate("(e) %s promoted %d bytes behind the last leader position %s", p.Name, st-p.LSN, st)
	}
	if w.syncOn() {
		if w.syncAcked != nil && !p.contains(*w.syncAcked) {
			w.violate("(c) %s promoted without the write acknowledged under sync at %s on tl %d", p.Name, w.syncAcked.LSN, w.syncAcked.B.Num)
		}
		// In quorum mode a node outside the voters may win with enough
		// votes (spec §7.5); the lineage check above still applies.
		if s := w.foreignSync; w.syncMode != "quorum" && s != nil && s.Quorum == 0 && !s.IsEmpty() && !strings.EqualFold(s.Leader, p.Name) && !s.Matches(p.Name) {
			w.violate("(c) %s promoted but was not in the sync set %s:%v", p.Name, s.Leader, s.Standbys)
		}
	}
}

// peers answers REST probes from the simulated nodes.
type peers struct {
	w    *World
	self *Node
}

func (p *peers) Probe(ctx context.Context, members []*dcs.Member) map[string]ha.PeerStatus {
	defer p.w.lock()()
	out := map[string]ha.PeerStatus{}
	now := p.w.Clock.Now()
	for _, m := range members {
		t := p.w.node(m.Name)
		if t == nil || !t.Alive || now.Before(t.FrozenUntil) || t.PeerCut || p.self.PeerCut {
			out[m.Name] = ha.PeerStatus{}
			continue
		}
		pg := t.PG
		st := ha.PeerStatus{Reachable: true, InRecovery: !(pg.Running && pg.Primary), Priority: 1}
		tm := &dcs.Member{Name: t.Name, Tags: t.Tags}
		st.NoFailover = tm.NoFailover()
		st.Priority = tm.FailoverPriority()
		if pg.Running {
			st.LSN, st.Timeline = pg.LSN, pg.TL.Num
		}
		out[m.Name] = st
	}
	return out
}

// Failsafe delivers the heartbeat to the ha.Node of every other listed
// member that is reachable (spec/ha-loop.md §11) and collects the WAL
// positions they answer.
func (p *peers) Failsafe(ctx context.Context, fs dcs.Failsafe, hb ha.FailsafeHeartbeat) (map[string]dcs.LSN, bool) {
	defer p.w.lock()()
	if _, ok := fs[hb.Name]; !ok {
		return nil, false
	}
	now := p.w.Clock.Now()
	out := map[string]dcs.LSN{}
	for name := range fs {
		if name == hb.Name {
			continue
		}
		t := p.w.node(name)
		if t == nil || !t.Alive || t.Node == nil || now.Before(t.FrozenUntil) || t.PeerCut || p.self.PeerCut {
			return nil, false
		}
		l, err := t.Node.Failsafe(ctx, hb)
		if p.w.Heartbeats == nil {
			p.w.Heartbeats = map[string]ha.FailsafeHeartbeat{}
		}
		p.w.Heartbeats[name] = hb
		if err != nil {
			return nil, false
		}
		if l != nil {
			out[name] = *l
		}
	}
	return out, true
}

// ---- time ----

// Advance runs the world for d in ticks.
func (w *World) Advance(d time.Duration) {
	for end := w.Clock.Now().Add(d); w.Clock.Now().Before(end); {
		w.Clock.Step(tick)
		w.Tick()
	}
}

// Tick runs one tick at the current time: expiry, replication, writes,
// node cycles woken by time or watch, invariant (a).
func (w *World) Tick() {
	now := w.Clock.Now()
	if w.DCS.outage && !now.Before(w.outageUntil) {
		w.DCS.outage = false
		w.logf("dcs outage ends")
	}
	old := w.DCS.leader
	if w.DCS.Expire() {
		w.Expiries = append(w.Expiries, now)
		w.logf("leader key of %s expired", old)
	}
	w.replicate()
	for _, n := range w.Nodes {
		if n.Watchdog != nil {
			n.Watchdog.check(now)
		}
	}
	for range settleRuns {
		stepped := false
		for _, n := range w.Nodes {
			if !n.Alive || now.Before(n.FrozenUntil) || now.Before(n.BusyUntil) {
				continue
			}
			woke := !now.Before(n.NextRun)
			select {
			case <-n.Store.changes:
				woke = true
			default:
			}
			if !woke {
				continue
			}
			stepped = true
			n.Store.Timeouts = 0
			w.foreignSync = w.DCS.sync // /sync as the node finds it
			d := n.Node.Step(context.Background())
			if ds := d.String(); ds != n.LastMsg {
				n.LastMsg = ds
				w.logf("%s: %s", n.Name, ds)
			}
			n.NextRun = now.Add(w.lw)
			if !d.WakeAt.IsZero() && d.WakeAt.Before(n.NextRun) {
				n.NextRun = d.WakeAt
			}
			if n.Store.Timeouts > 0 {
				n.BusyUntil = now.Add(time.Duration(n.Store.Timeouts) * w.rt)
				n.NextRun = n.BusyUntil
			}
			w.checkWritable()
		}
		if !stepped {
			break
		}
	}
	w.write()
	w.checkWritable()
}

func (w *World) replicate() {
	for _, n := range w.Nodes {
		r := n.PG
		if !r.Running || r.Primary || r.Upstream == "" {
			r.Streaming = false
			continue
		}
		u := w.node(r.Upstream)
		if u == nil || !u.PG.Running || n.ReplCut || u.ReplCut || u.PG.SysID != r.SysID {
			r.Streaming = false
			continue
		}
		switch r.compat(u.PG) {
		case 0:
			if r.TL != u.PG.TL {
				r.TL, r.Hist = u.PG.TL, slices.Clone(u.PG.Hist)
			}
			r.Streaming = true
			if r.Slow {
				r.LSN = max(r.LSN, min(u.PG.LSN, r.LSN+slowRate))
			} else {
				r.LSN = max(r.LSN, u.PG.LSN)
			}
		default:
			r.Streaming = false
		}
	}
}

// writable reports the nodes that accept writes: Postgres running as
// primary and the node's own lease valid by its own clock. A dead node's
// Postgres is fenced (watchdog), so it does not count.
func (w *World) writable() []*Node {
	var out []*Node
	now := w.Clock.Now()
	for _, n := range w.Nodes {
		if n.Alive && n.PG.Running && n.PG.Primary && n.Node.CanAcceptWrites(now) {
			out = append(out, n)
		}
	}
	return out
}

// checkWritable is invariant (a).
func (w *World) checkWritable() {
	ws := w.writable()
	if len(ws) > 1 {
		w.violate("(a) %d writable nodes with a valid lease: %s and %s", len(ws), ws[0].Name, ws[1].Name)
	}
	for _, n := range ws {
		if w.DCS.leader != n.Name {
			w.violate("(a) %s believes its lease is valid but the leader key is held by %q", n.Name, w.DCS.leader)
		}
	}
}

func (w *World) write() {
	ws := w.writable()
	if len(ws) != 1 {
		return
	}
	p := ws[0].PG
	p.LSN += writeRate
	if !w.syncOn() || p.Placeholder || len(p.SSN) == 0 {
		return
	}
	chosen := w.syncChosen(p)
	var lsns []dcs.LSN
	for _, c := range chosen {
		lsns = append(lsns, w.pg(c).LSN)
	}
	if len(lsns) < p.SSNNum || p.SSNNum == 0 {
		return
	}
	slices.Sort(lsns)
	var ack dcs.LSN
	if p.SSNQuorum {
		ack = lsns[len(lsns)-p.SSNNum]
	} else {
		ack = lsns[0]
	}
	ack = min(ack, p.LSN)
	if w.syncAcked == nil || w.syncAcked.B != p.TL || ack > w.syncAcked.LSN {
		if w.syncAcked == nil || p.contains(*w.syncAcked) {
			w.syncAcked = &Pos{B: p.TL, LSN: ack}
		}
	}
}

// Concurrent prepares the world for nodes that run Node.Run in their own
// goroutines over another dcs.Store: the simulated Postgres instances are
// serialised and the model-DCS invariant checks are off. It returns the
// Postgres and Peers of each node; the caller builds the ha.Nodes.
func (w *World) Concurrent() {
	w.concurrent = true
}

// Peers returns the simulated REST prober of node n.
func (w *World) Peers(n *Node) ha.Peers { return &peers{w: w, self: n} }

// Config returns the ha.Config the simulation uses for n.
func (w *World) Config(n *Node) ha.Config { return w.config(n) }

// Replicate runs one replication and write tick (concurrent mode): every
// running primary gets writes, replicas catch up with their upstream.
func (w *World) Replicate() {
	defer w.lock()()
	for _, n := range w.Nodes {
		if n.PG.Running && n.PG.Primary {
			n.PG.LSN += writeRate
		}
	}
	w.replicate()
}

// PromotionsCopy returns the promotions so far (concurrent mode).
func (w *World) PromotionsCopy() []Promotion {
	defer w.lock()()
	return slices.Clone(w.Promotions)
}

// PGState returns a copy of node n's simulated Postgres (concurrent mode).
func (w *World) PGState(n *Node) PG {
	defer w.lock()()
	return *n.PG
}
