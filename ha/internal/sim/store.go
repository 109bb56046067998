// Package sim is the deterministic simulation of a pgwarden cluster used by
// package ha's tests: a model DCS with per-client faults, a simulated
// PostgreSQL per node, simulated REST peers, a fake clock, random fault
// schedules and invariant checks.
//
// The model DCS keeps the dcs.Store contract (TTL leases, CAS, fenced
// leader writes, watch wake-ups) without encoding to JSON, so that ten
// thousand schedules run in seconds; the same schedules also run over
// dcs/memory in a smaller test.
package sim

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// DCS is the shared state of the model DCS.
type DCS struct {
	now     func() time.Time
	ver     int
	outage  bool
	clients map[string]*Store

	initialize *dcs.Initialize
	config     *dcs.ClusterConfig
	leader     string
	leaderVer  dcs.Version
	members    map[string]*dcs.Member
	leases     map[string]time.Time // member -> expiry
	status     dcs.Status
	failover   *dcs.Failover
	sync       *dcs.SyncState
	history    *dcs.TimelineHistory
	failsafe   dcs.Failsafe
	// clearedFailover is the last failover key cleared (for invariant e).
	clearedFailover *dcs.Failover
	clearedAt       time.Time

	// onSync observes /sync writes (old, new) for invariant checks.
	onSync func(old, new *dcs.SyncState)
}

// NewDCS returns an empty model DCS on the given clock.
func NewDCS(now func() time.Time) *DCS {
	return &DCS{now: now, clients: map[string]*Store{}, members: map[string]*dcs.Member{}, leases: map[string]time.Time{}}
}

func (d *DCS) next() dcs.Version {
	d.ver++
	return dcs.Version(strconv.Itoa(d.ver))
}

// Leader returns the current holder of the leader key ("" if none),
// expiring leases first.
func (d *DCS) Leader() string {
	d.Expire()
	return d.leader
}

// LeaderExpiry returns when the leader key expires.
func (d *DCS) LeaderExpiry() time.Time { return d.leases[d.leader] }

// Status returns the leader's last published status.
func (d *DCS) Status() dcs.Status { return d.status }

// Sync returns /sync.
func (d *DCS) Sync() *dcs.SyncState { return d.sync }

// Member returns the member key of name, nil when absent.
func (d *DCS) Member(name string) *dcs.Member { return d.members[name] }

// Failover returns the failover key.
func (d *DCS) Failover() *dcs.Failover { return d.failover }

// FailsafeKey returns the /failsafe key.
func (d *DCS) FailsafeKey() dcs.Failsafe { return d.failsafe }

// SetOutage makes every client fail with ErrUnavailable.
func (d *DCS) SetOutage(on bool) { d.outage = on }

// Expire drops expired leases and their keys and wakes watchers when the
// leader key goes. It returns true when the leader key expired.
func (d *DCS) Expire() bool {
	now := d.now()
	expired := false
	any := false
	for _, t := range d.leases {
		if !now.Before(t) {
			any = true
			break
		}
	}
	if !any {
		return false
	}
	for _, name := range sortedKeys(d.leases) {
		if !now.Before(d.leases[name]) {
			delete(d.leases, name)
			delete(d.members, name)
			if d.leader == name {
				d.leader = ""
				expired = true
				d.notify()
			}
		}
	}
	return expired
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (d *DCS) notify() {
	for _, c := range d.clients {
		select {
		case c.changes <- struct{}{}:
		default:
		}
	}
}

// Client returns the Store of member name.
func (d *DCS) Client(name string, ttl time.Duration) *Store {
	c := &Store{d: d, name: name, ttl: ttl, changes: make(chan struct{}, 1)}
	d.clients[name] = c
	return c
}

// Store is one member's client of the model DCS.
type Store struct {
	d       *DCS
	name    string
	ttl     time.Duration
	changes chan struct{}
	// Cut makes every call fail with ErrUnavailable (partition).
	Cut bool
	// Lossy applies writes but reports ErrUnavailable (lost reply).
	Lossy bool
	// Timeouts counts calls that failed as unavailable (each costs
	// retry_timeout of the node's time).
	Timeouts int
}

var _ dcs.Store = (*Store)(nil)

func (s *Store) begin() error {
	if s.Cut || s.d.outage {
		s.Timeouts++
		return dcs.ErrUnavailable
	}
	s.d.Expire()
	return nil
}

// end turns a successful write into a lost reply in lossy mode.
func (s *Store) end(err error) error {
	if err == nil && s.Lossy {
		s.Timeouts++
		return dcs.ErrUnavailable
	}
	return err
}

func (s *Store) refresh() { s.d.leases[s.name] = s.d.now().Add(s.ttl) }

func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	d := s.d
	c := &dcs.Cluster{Initialize: d.initialize, Config: d.config, Status: d.status, Failover: d.failover, Sync: d.sync, History: d.history, Failsafe: d.failsafe}
	for _, n := range sortedKeys(d.members) {
		c.Members = append(c.Members, d.members[n])
	}
	if d.leader != "" {
		m := d.members[d.leader]
		if m == nil {
			m = &dcs.Member{Name: d.leader}
		}
		c.Leader = &dcs.Leader{Name: d.leader, Version: d.leaderVer, Member: m}
	}
	return c, nil
}

func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) Initialize(ctx context.Context, sysid string, create bool) error {
	if err := s.begin(); err != nil {
		return err
	}
	if create && s.d.initialize != nil {
		return dcs.ErrConflict
	}
	s.d.initialize = &dcs.Initialize{SystemID: sysid, Version: s.d.next()}
	s.d.notify()
	return s.end(nil)
}

func (s *Store) CancelInitialize(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	s.d.initialize = nil
	s.d.notify()
	return s.end(nil)
}

func (s *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if err := s.begin(); err != nil {
		return err
	}
	cp := *m
	cp.Version = s.d.next()
	s.d.members[s.name] = &cp
	s.refresh()
	return s.end(nil)
}

func (s *Store) AcquireLeader(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	if s.d.leader != "" {
		return dcs.ErrConflict
	}
	s.d.leader = s.name
	s.d.leaderVer = s.d.next()
	s.refresh()
	s.d.notify()
	return s.end(nil)
}

func (s *Store) TakeLeader(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	s.d.leader = s.name
	s.d.leaderVer = s.d.next()
	s.refresh()
	s.d.notify()
	return s.end(nil)
}

func (s *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if err := s.begin(); err != nil {
		return err
	}
	if s.d.leader != s.name {
		return dcs.ErrLeaderLost
	}
	s.refresh()
	s.d.leaderVer = s.d.next()
	if u.Status != nil {
		st := *u.Status
		st.Version = s.d.next()
		s.d.status = st
	}
	if u.Failsafe != nil {
		s.d.failsafe = u.Failsafe
	}
	return s.end(nil)
}

func (s *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if err := s.begin(); err != nil {
		return err
	}
	if s.d.leader != s.name {
		return s.end(nil)
	}
	if last != nil {
		st := *last
		st.Version = s.d.next()
		s.d.status = st
	}
	s.d.leader = ""
	s.d.notify()
	return s.end(nil)
}

// SetConfigData replaces the dynamic config (sim driver only).
func (d *DCS) SetConfigData(data map[string]any) {
	d.config = &dcs.ClusterConfig{Data: data, Raw: []byte("{}"), Version: d.next()}
	d.notify()
}

// SetFailoverKey writes the failover key (sim driver, as ctl would).
func (d *DCS) SetFailoverKey(f *dcs.Failover) {
	if f == nil || f.IsEmpty() {
		if d.failover != nil {
			d.clearedFailover, d.clearedAt = d.failover, d.now()
		}
		d.failover = nil
	} else {
		cp := *f
		cp.Version = d.next()
		d.failover = &cp
	}
	d.notify()
}

func (s *Store) SetConfig(ctx context.Context, config []byte, prev dcs.Version) (dcs.Version, error) {
	if err := s.begin(); err != nil {
		return "", err
	}
	if prev != "" && (s.d.config == nil || s.d.config.Version != prev) {
		return "", dcs.ErrConflict
	}
	data := map[string]any{}
	if s.d.config != nil {
		data = s.d.config.Data
	}
	v := s.d.next()
	s.d.config = &dcs.ClusterConfig{Raw: config, Data: data, Version: v}
	s.d.notify()
	return v, s.end(nil)
}

func (s *Store) SetFailover(ctx context.Context, f *dcs.Failover, prev dcs.Version) (dcs.Version, error) {
	if err := s.begin(); err != nil {
		return "", err
	}
	if prev != "" && (s.d.failover == nil || s.d.failover.Version != prev) {
		return "", dcs.ErrConflict
	}
	s.d.SetFailoverKey(f)
	v := dcs.Version("")
	if s.d.failover != nil {
		v = s.d.failover.Version
	}
	return v, s.end(nil)
}

func (s *Store) SetSync(ctx context.Context, st *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	if err := s.begin(); err != nil {
		return "", err
	}
	if s.d.leader != s.name {
		return "", dcs.ErrLeaderLost
	}
	if prev != "" && (s.d.sync == nil || s.d.sync.Version != prev) {
		return "", dcs.ErrConflict
	}
	if prev == "" && s.d.sync != nil {
		// unconditional write over an existing key is allowed
	}
	cp := *st
	cp.Standbys = slices.Clone(st.Standbys)
	slices.Sort(cp.Standbys)
	cp.Version = s.d.next()
	old := s.d.sync
	s.d.sync = &cp
	if s.d.onSync != nil {
		s.d.onSync(old, &cp)
	}
	s.d.notify()
	return cp.Version, s.end(nil)
}

func (s *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	if err := s.begin(); err != nil {
		return err
	}
	if s.d.leader != s.name {
		return dcs.ErrLeaderLost
	}
	if prev != "" && (s.d.sync == nil || s.d.sync.Version != prev) {
		return dcs.ErrConflict
	}
	old := s.d.sync
	s.d.sync = nil
	if s.d.onSync != nil {
		s.d.onSync(old, nil)
	}
	s.d.notify()
	return s.end(nil)
}

func (s *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	if err := s.begin(); err != nil {
		return err
	}
	if s.d.leader != s.name {
		return dcs.ErrLeaderLost
	}
	cp := *h
	cp.Version = s.d.next()
	s.d.history = &cp
	return s.end(nil)
}

func (s *Store) DeleteCluster(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	*s.d = *NewDCS(s.d.now)
	return nil
}

func (s *Store) SetTTL(ttl time.Duration) { s.ttl = ttl }
func (s *Store) Close() error             { return nil }
