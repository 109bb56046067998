package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Dynamic is the cluster-wide ("global") configuration stored as JSON in the
// DCS "config" key, or written under bootstrap.dcs (spec/config.md §1, §3).
// It keeps the document exactly as written, key order included, so that a
// read-modify-write never reorders or drops keys; Settings gives the typed
// view.
//
// A Dynamic is immutable: Patch returns a new value.
type Dynamic struct {
	tree *yaml.Node
}

// ParseDynamic parses the JSON stored in the DCS config key. It returns an
// error when data is not a JSON object.
func ParseDynamic(data []byte) (*Dynamic, error) {
	n, err := parseJSONObject(data)
	if err != nil {
		return nil, fmt.Errorf("config: parse dynamic configuration: %w", err)
	}
	return &Dynamic{tree: n}, nil
}

// NewDynamic returns an empty dynamic configuration ({}).
func NewDynamic() *Dynamic { return &Dynamic{tree: mapNode()} }

func (d *Dynamic) decodeNode(dec *decoder, path string, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		dec.fail(path, n, "must be a mapping of dynamic configuration keys")
		return
	}
	d.tree = clone(n)
	// Type-check now so that Load reports bad values with their lines.
	var raw dynamicRaw
	dec.decode(path, n, reflectValue(&raw))
}

// Tree returns a copy of the document.
func (d *Dynamic) Tree() *yaml.Node {
	if d == nil || d.tree == nil {
		return mapNode()
	}
	return clone(d.tree)
}

// JSON returns the compact JSON Patroni stores in the DCS, keys in the
// order written.
func (d *Dynamic) JSON() []byte {
	var b bytes.Buffer
	if err := writeJSON(&b, d.Tree()); err != nil {
		// Only YAML aliases fail, and parseYAML rejects those.
		return []byte("{}")
	}
	return b.Bytes()
}

// Map returns the document as plain Go values (numbers as json.Number).
func (d *Dynamic) Map() map[string]any {
	m, _ := toGeneric(d.Tree()).(map[string]any)
	return m
}

// Patch applies a PATCH /config body (a JSON object) the way Patroni does:
// a null deletes the key, nested objects merge recursively, and a scalar or
// list replaces the stored value when their string forms differ. It returns
// the new configuration and whether anything changed.
func (d *Dynamic) Patch(patch []byte) (*Dynamic, bool, error) {
	p, err := parseJSONObject(patch)
	if err != nil {
		return nil, false, fmt.Errorf("config: parse patch: %w", err)
	}
	out := d.Tree()
	changed := patchMerge(out, p)
	return &Dynamic{tree: out}, changed, nil
}

func patchMerge(dst, src *yaml.Node) bool {
	changed := false
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i].Value, src.Content[i+1]
		cur := lookup(dst, k)
		switch {
		case isNull(v):
			if cur != nil {
				deleteKey(dst, k)
				changed = true
			}
		case v.Kind == yaml.MappingNode && cur != nil && cur.Kind == yaml.MappingNode:
			if patchMerge(cur, v) {
				changed = true
			}
		case v.Kind == yaml.MappingNode:
			// A new object: keep only its non-null parts.
			m := mapNode()
			patchMerge(m, v)
			setKey(dst, k, m)
			changed = true
		case cur == nil || scalarString(cur) != scalarString(v) || cur.Kind != v.Kind:
			setKey(dst, k, clone(v))
			changed = true
		}
	}
	return changed
}

// Equal reports whether two configurations have the same content (key
// order ignored).
func (d *Dynamic) Equal(o *Dynamic) bool {
	return equalNodes(d.Tree(), o.Tree())
}

func equalNodes(a, b *yaml.Node) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case yaml.MappingNode:
		if len(a.Content) != len(b.Content) {
			return false
		}
		for i := 0; i+1 < len(a.Content); i += 2 {
			o := lookup(b, a.Content[i].Value)
			if o == nil || !equalNodes(a.Content[i+1], o) {
				return false
			}
		}
		return true
	case yaml.SequenceNode:
		if len(a.Content) != len(b.Content) {
			return false
		}
		for i := range a.Content {
			if !equalNodes(a.Content[i], b.Content[i]) {
				return false
			}
		}
		return true
	}
	return scalarString(a) == scalarString(b) && (a.ShortTag() == "!!str") == (b.ShortTag() == "!!str")
}

// SyncMode is the synchronous_mode setting.
type SyncMode string

// Synchronous modes.
const (
	SyncOff    SyncMode = "off"
	SyncOn     SyncMode = "on"
	SyncQuorum SyncMode = "quorum"
)

// Slot is a permanent replication slot.
type Slot struct {
	// Type is physical or logical.
	Type     string `yaml:"type" json:"type"`
	Database string `yaml:"database" json:"database,omitempty"`
	Plugin   string `yaml:"plugin" json:"plugin,omitempty"`
	// ClusterType limits the slot to primary or standby clusters ("" both).
	ClusterType string `yaml:"cluster_type" json:"cluster_type,omitempty"`
}

// SlotMatcher selects slots to leave alone; empty fields match anything.
type SlotMatcher struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	Database string `yaml:"database"`
	Plugin   string `yaml:"plugin"`
}

// StandbyCluster makes the cluster a standby of another (§3).
type StandbyCluster struct {
	Host                  string         `yaml:"host"`
	Port                  string         `yaml:"port"`
	PrimarySlotName       string         `yaml:"primary_slot_name"`
	CreateReplicaMethods  any            `yaml:"create_replica_methods"`
	RestoreCommand        string         `yaml:"restore_command"`
	ArchiveCleanupCommand string         `yaml:"archive_cleanup_command"`
	RecoveryMinApplyDelay string         `yaml:"recovery_min_apply_delay"`
	Extra                 map[string]any `yaml:",inline"`
}

// Active reports whether the cluster is a standby cluster: one of host,
// port or restore_command is set.
func (s *StandbyCluster) Active() bool {
	return s != nil && (s.Host != "" || s.Port != "" || s.RestoreCommand != "")
}

// dynamicRaw is the typed view as written; nil means absent.
type dynamicRaw struct {
	TTL                       *int            `yaml:"ttl"`
	LoopWait                  *int            `yaml:"loop_wait"`
	RetryTimeout              *int            `yaml:"retry_timeout"`
	MaximumLagOnFailover      *Bytes          `yaml:"maximum_lag_on_failover"`
	MaximumLagOnSyncnode      *Bytes          `yaml:"maximum_lag_on_syncnode"`
	MaxTimelinesHistory       *int            `yaml:"max_timelines_history"`
	PrimaryStartTimeout       *Seconds        `yaml:"primary_start_timeout"`
	MasterStartTimeout        *Seconds        `yaml:"master_start_timeout"`
	PrimaryStopTimeout        *Seconds        `yaml:"primary_stop_timeout"`
	MasterStopTimeout         *Seconds        `yaml:"master_stop_timeout"`
	PrimaryRaceBackoff        *Seconds        `yaml:"primary_race_backoff"`
	CheckTimeline             *bool           `yaml:"check_timeline"`
	SynchronousMode           *string         `yaml:"synchronous_mode"`
	SynchronousModeStrict     *bool           `yaml:"synchronous_mode_strict"`
	SynchronousNodeCount      *int            `yaml:"synchronous_node_count"`
	FailsafeMode              *bool           `yaml:"failsafe_mode"`
	Pause                     *bool           `yaml:"pause"`
	MemberSlotsTTL            *Seconds        `yaml:"member_slots_ttl"`
	Slots                     map[string]any  `yaml:"slots"`
	PermanentSlots            map[string]any  `yaml:"permanent_slots"`
	PermanentReplicationSlots map[string]any  `yaml:"permanent_replication_slots"`
	IgnoreSlots               []SlotMatcher   `yaml:"ignore_slots"`
	StandbyCluster            *StandbyCluster `yaml:"standby_cluster"`
	PostgreSQL                *dynamicPG      `yaml:"postgresql"`
	Extra                     map[string]any  `yaml:",inline"`
}

type dynamicPG struct {
	UsePgRewind *bool          `yaml:"use_pg_rewind"`
	UseSlots    *bool          `yaml:"use_slots"`
	Parameters  map[string]any `yaml:"parameters"`
	Other       map[string]any `yaml:",inline"`
}

// Settings is the typed view of a dynamic configuration with defaults
// applied and the timeout sanity rules enforced (spec/config.md §2, §3).
type Settings struct {
	// TTL is the leader key lifetime, seconds. Default 30, minimum 3;
	// below Patroni's documented 20 is kept with a warning.
	TTL int
	// LoopWait is the HA loop period, seconds. Default 10, minimum 1.
	LoopWait int
	// RetryTimeout is the DCS/Postgres retry deadline, seconds. Default
	// 10, minimum 1; below Patroni's documented 3 is kept with a warning.
	// LoopWait + 2*RetryTimeout <= TTL always holds, so a
	// primary demotes before its key can expire.
	RetryTimeout int
	// MaximumLagOnFailover is bytes a replica may lag and still race.
	// Default 1048576.
	MaximumLagOnFailover int64
	// MaximumLagOnSyncnode is bytes; > 0 replaces a lagging sync standby.
	// Default -1.
	MaximumLagOnSyncnode int64
	// MaxTimelinesHistory is lines kept in history; 0 unlimited.
	MaxTimelinesHistory int
	// PrimaryStartTimeout is seconds a crashed primary may take to
	// restart. Default 300.
	PrimaryStartTimeout int
	// PrimaryStopTimeout is seconds (sync mode only); 0 off.
	PrimaryStopTimeout int
	// PrimaryRaceBackoff is seconds; 0 off.
	PrimaryRaceBackoff int
	// CheckTimeline rejects race candidates on an older timeline.
	CheckTimeline bool
	// SynchronousMode is off, on or quorum.
	SynchronousMode SyncMode
	// SynchronousModeStrict never falls back to async.
	SynchronousModeStrict bool
	// SynchronousNodeCount is the desired sync standbys. Default/min 1.
	SynchronousNodeCount int
	// FailsafeMode enables DCS failsafe mode.
	FailsafeMode bool
	// Pause is maintenance mode.
	Pause bool
	// MemberSlotsTTL is seconds member slots are kept. Default 1800.
	MemberSlotsTTL int
	// Slots are the permanent slots.
	Slots map[string]Slot
	// IgnoreSlots are slots left alone.
	IgnoreSlots []SlotMatcher
	// StandbyCluster is non-nil when the section is present.
	StandbyCluster *StandbyCluster
	// UsePgRewind default false; UseSlots default true.
	UsePgRewind bool
	UseSlots    bool
}

// Settings decodes the configuration leniently, as a running node does: a
// bad value is reported as a warning and its default is used.
func (d *Dynamic) Settings() (Settings, []Warning) {
	var raw dynamicRaw
	errs, warns := decodeInto("", d.Tree(), &raw)
	for _, e := range errs {
		if fe, ok := errors.AsType[*FieldError](e); ok {
			warns = append(warns, Warning{Path: fe.Path, Line: fe.Line, Message: fe.Message + "; default used"})
		}
	}
	warns = slices.DeleteFunc(warns, func(w Warning) bool { return strings.HasSuffix(w.Message, "unknown key, ignored") })
	s := Settings{
		TTL: 30, LoopWait: 10, RetryTimeout: 10,
		MaximumLagOnFailover: 1048576, MaximumLagOnSyncnode: -1,
		PrimaryStartTimeout: 300, SynchronousMode: SyncOff, SynchronousNodeCount: 1,
		MemberSlotsTTL: 1800, UseSlots: true, Slots: map[string]Slot{},
	}
	setInt(&s.TTL, raw.TTL)
	setInt(&s.LoopWait, raw.LoopWait)
	setInt(&s.RetryTimeout, raw.RetryTimeout)
	if raw.MaximumLagOnFailover != nil {
		s.MaximumLagOnFailover = int64(*raw.MaximumLagOnFailover)
	}
	if raw.MaximumLagOnSyncnode != nil {
		s.MaximumLagOnSyncnode = int64(*raw.MaximumLagOnSyncnode)
	}
	setInt(&s.MaxTimelinesHistory, raw.MaxTimelinesHistory)
	switch {
	case raw.PrimaryStartTimeout != nil:
		s.PrimaryStartTimeout = int(*raw.PrimaryStartTimeout)
	case raw.MasterStartTimeout != nil:
		s.PrimaryStartTimeout = int(*raw.MasterStartTimeout)
	}
	switch {
	case raw.PrimaryStopTimeout != nil:
		s.PrimaryStopTimeout = int(*raw.PrimaryStopTimeout)
	case raw.MasterStopTimeout != nil:
		s.PrimaryStopTimeout = int(*raw.MasterStopTimeout)
	}
	if raw.PrimaryRaceBackoff != nil {
		s.PrimaryRaceBackoff = int(*raw.PrimaryRaceBackoff)
	}
	s.CheckTimeline = deref(raw.CheckTimeline)
	if raw.SynchronousMode != nil {
		s.SynchronousMode = parseSyncMode(*raw.SynchronousMode)
	}
	s.SynchronousModeStrict = deref(raw.SynchronousModeStrict)
	setInt(&s.SynchronousNodeCount, raw.SynchronousNodeCount)
	if s.SynchronousNodeCount < 1 {
		s.SynchronousNodeCount = 1
	}
	s.FailsafeMode = deref(raw.FailsafeMode)
	s.Pause = deref(raw.Pause)
	if raw.MemberSlotsTTL != nil {
		s.MemberSlotsTTL = int(*raw.MemberSlotsTTL)
	}
	for _, m := range []map[string]any{raw.PermanentReplicationSlots, raw.PermanentSlots, raw.Slots} {
		if len(m) > 0 {
			s.Slots = parseSlots(m)
			break
		}
	}
	s.IgnoreSlots = raw.IgnoreSlots
	s.StandbyCluster = raw.StandbyCluster
	if raw.PostgreSQL != nil {
		s.UsePgRewind = deref(raw.PostgreSQL.UsePgRewind)
		if raw.PostgreSQL.UseSlots != nil {
			s.UseSlots = *raw.PostgreSQL.UseSlots
		}
	}
	var tw []Warning
	s.TTL, s.LoopWait, s.RetryTimeout, tw = SanitizeTimeouts(s.TTL, s.LoopWait, s.RetryTimeout)
	return s, append(warns, tw...)
}

func parseSyncMode(v string) SyncMode {
	if strings.EqualFold(v, "quorum") {
		return SyncQuorum
	}
	if b, ok := parseBool(v); ok && b {
		return SyncOn
	}
	return SyncOff
}

func parseSlots(m map[string]any) map[string]Slot {
	out := map[string]Slot{}
	for name, v := range m {
		sl := Slot{Type: "physical"}
		if mv, ok := v.(map[string]any); ok {
			if t, _ := mv["type"].(string); t != "" {
				sl.Type = t
			}
			sl.Database, _ = mv["database"].(string)
			sl.Plugin, _ = mv["plugin"].(string)
			sl.ClusterType, _ = mv["cluster_type"].(string)
		}
		out[name] = sl
	}
	return out
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// Timing bounds of ttl, loop_wait and retry_timeout, in seconds.
const (
	// PatroniMinTTL, PatroniMinLoopWait and PatroniMinRetryTimeout are the
	// minimums Patroni documents. Patroni 3.2 and later raise smaller
	// values to them with a warning; Patroni up to 3.1 (3.0.2 is what the
	// anchor benchmark measured at ttl 10, loop_wait 1, retry_timeout 4)
	// runs with any values. pgwarden keeps smaller values, so that faster
	// failover can be configured, and warns.
	PatroniMinTTL          = 20
	PatroniMinLoopWait     = 1
	PatroniMinRetryTimeout = 3
	// MinRetryTimeout is the smallest retry_timeout that means anything: a
	// DCS or Postgres call needs some time to be retried in.
	MinRetryTimeout = 1
	// MinTTL is the smallest ttl that satisfies loop_wait +
	// 2*retry_timeout <= ttl with the smallest loop_wait and retry_timeout.
	MinTTL = PatroniMinLoopWait + 2*MinRetryTimeout
)

// SanitizeTimeouts applies the timeout sanity rules to a new dynamic
// configuration, as a running node must keep going whatever the DCS holds
// (spec/config.md §2): values below what can work at all (loop_wait < 1,
// retry_timeout < 1, ttl < 3) are raised with a warning; values below
// Patroni's documented minimums (ttl 20, retry_timeout 3) are kept with a
// warning. Then loop_wait + 2*retry_timeout <= ttl is enforced as Patroni
// does: if even 1 + 2*retry_timeout > ttl, loop_wait = 1 and
// retry_timeout = (ttl-1)/2; else loop_wait = ttl - 2*retry_timeout. That
// rule is what makes a primary demote before its leader key can expire.
func SanitizeTimeouts(ttl, loopWait, retryTimeout int) (int, int, int, []Warning) {
	var w []Warning
	if loopWait < PatroniMinLoopWait {
		w = append(w, Warning{Path: "loop_wait", Message: fmt.Sprintf("%d is below the minimum %d; using %d", loopWait, PatroniMinLoopWait, PatroniMinLoopWait)})
		loopWait = PatroniMinLoopWait
	}
	if retryTimeout < MinRetryTimeout {
		w = append(w, Warning{Path: "retry_timeout", Message: fmt.Sprintf("%d is below the minimum %d; using %d", retryTimeout, MinRetryTimeout, MinRetryTimeout)})
		retryTimeout = MinRetryTimeout
	}
	if ttl < MinTTL {
		w = append(w, Warning{Path: "ttl", Message: fmt.Sprintf("%d is below the minimum %d (loop_wait 1 + 2*retry_timeout 1); using %d", ttl, MinTTL, MinTTL)})
		ttl = MinTTL
	}
	switch {
	case 1+2*retryTimeout > ttl:
		nr := (ttl - 1) / 2
		w = append(w, Warning{Path: "loop_wait", Message: fmt.Sprintf(
			"loop_wait + 2*retry_timeout must be <= ttl (%d); using loop_wait 1 and retry_timeout %d", ttl, nr)})
		loopWait, retryTimeout = 1, nr
	case loopWait+2*retryTimeout > ttl:
		nl := ttl - 2*retryTimeout
		w = append(w, Warning{Path: "loop_wait", Message: fmt.Sprintf(
			"loop_wait + 2*retry_timeout must be <= ttl (%d); using loop_wait %d", ttl, nl)})
		loopWait = nl
	}
	w = append(w, belowPatroniMinimums(ttl, retryTimeout)...)
	return ttl, loopWait, retryTimeout, w
}

// belowPatroniMinimums warns about a ttl or retry_timeout that pgwarden
// accepts but Patroni 3.2+ would raise.
func belowPatroniMinimums(ttl, retryTimeout int) []Warning {
	var w []Warning
	if ttl < PatroniMinTTL {
		w = append(w, Warning{Path: "ttl", Message: fmt.Sprintf(
			"%d is below Patroni's documented minimum %d (Patroni 3.2+ would use %d); kept: the leader key expires %d s after its last renewal, so a short DCS or network stall can cause a failover",
			ttl, PatroniMinTTL, PatroniMinTTL, ttl)})
	}
	if retryTimeout < PatroniMinRetryTimeout {
		w = append(w, Warning{Path: "retry_timeout", Message: fmt.Sprintf(
			"%d is below Patroni's documented minimum %d (Patroni 3.2+ would use %d); kept: a DCS outage longer than %d s demotes the primary",
			retryTimeout, PatroniMinRetryTimeout, PatroniMinRetryTimeout, retryTimeout)})
	}
	return w
}

// TimingWarnings returns a warning for each of ttl and retry_timeout that
// is valid (Validate accepts it) but below Patroni's documented minimum, with
// paths under prefix and line numbers.
func (d *Dynamic) TimingWarnings(prefix string) []Warning {
	var raw dynamicRaw
	if errs, _ := decodeInto(prefix, d.Tree(), &raw); len(errs) > 0 {
		return nil
	}
	ttl, rt := 30, 10
	setInt(&ttl, raw.TTL)
	setInt(&rt, raw.RetryTimeout)
	if ttl < MinTTL || rt < MinRetryTimeout {
		return nil // Validate reports these
	}
	w := belowPatroniMinimums(ttl, rt)
	for i := range w {
		if n := lookup(d.tree, w[i].Path); n != nil {
			w[i].Line = n.Line
		}
		w[i].Path = join(prefix, w[i].Path)
	}
	return w
}

// Validate checks the dynamic configuration strictly (types and the
// validator bounds of spec/config.md §4 bootstrap.dcs), reporting every
// problem. prefix is prepended to paths ("bootstrap.dcs").
func (d *Dynamic) Validate(prefix string) error {
	var raw dynamicRaw
	errs, _ := decodeInto(prefix, d.Tree(), &raw)
	p := func(k string) string { return join(prefix, k) }
	line := func(k string) int {
		if n := lookup(d.tree, k); n != nil {
			return n.Line
		}
		return 0
	}
	minInt := func(k string, v *int, lo int) {
		if v != nil && *v < lo {
			errs = append(errs, &FieldError{Path: p(k), Value: fmt.Sprint(*v), Line: line(k),
				Message: fmt.Sprintf("must be an integer >= %d", lo)})
		}
	}
	// Below Patroni's documented minimums is allowed with a warning
	// (TimingWarnings); below what can work at all is an error.
	minInt("ttl", raw.TTL, MinTTL)
	minInt("loop_wait", raw.LoopWait, PatroniMinLoopWait)
	minInt("retry_timeout", raw.RetryTimeout, MinRetryTimeout)
	minInt("synchronous_node_count", raw.SynchronousNodeCount, 1)
	minInt("max_timelines_history", raw.MaxTimelinesHistory, 0)
	minBytes := func(k string, v *Bytes, lo int64) {
		if v != nil && int64(*v) < lo {
			errs = append(errs, &FieldError{Path: p(k), Value: fmt.Sprint(*v), Line: line(k),
				Message: fmt.Sprintf("must be >= %d", lo)})
		}
	}
	minBytes("maximum_lag_on_failover", raw.MaximumLagOnFailover, 0)
	minBytes("maximum_lag_on_syncnode", raw.MaximumLagOnSyncnode, -1)
	for k, v := range map[string]*Seconds{
		"member_slots_ttl": raw.MemberSlotsTTL, "primary_start_timeout": raw.PrimaryStartTimeout,
		"primary_stop_timeout": raw.PrimaryStopTimeout, "master_start_timeout": raw.MasterStartTimeout,
		"master_stop_timeout": raw.MasterStopTimeout, "primary_race_backoff": raw.PrimaryRaceBackoff,
	} {
		if v != nil && *v < 0 {
			errs = append(errs, &FieldError{Path: p(k), Value: fmt.Sprint(*v), Line: line(k),
				Message: "must be a number of seconds >= 0"})
		}
	}
	if raw.SynchronousMode != nil {
		v := *raw.SynchronousMode
		if _, ok := parseBool(v); !ok && !strings.EqualFold(v, "quorum") {
			errs = append(errs, &FieldError{Path: p("synchronous_mode"), Value: v, Line: line("synchronous_mode"),
				Message: "must be on/true, off/false or quorum"})
		}
	}
	ttl, lw, rt := 30, 10, 10
	setInt(&ttl, raw.TTL)
	setInt(&lw, raw.LoopWait)
	setInt(&rt, raw.RetryTimeout)
	if lw+2*rt > ttl && ttl >= MinTTL && lw >= PatroniMinLoopWait && rt >= MinRetryTimeout {
		errs = append(errs, &FieldError{Path: p("ttl"), Value: fmt.Sprint(ttl), Line: line("ttl"),
			Message: fmt.Sprintf("must be >= loop_wait + 2*retry_timeout (%d + 2*%d = %d), so that a primary demotes before its leader key expires; raise ttl or lower loop_wait/retry_timeout", lw, rt, lw+2*rt)})
	}
	for name, v := range raw.slotsMap() {
		if m, ok := v.(map[string]any); ok {
			t, _ := m["type"].(string)
			if t != "" && t != "physical" && t != "logical" {
				errs = append(errs, &FieldError{Path: p("slots." + name + ".type"), Value: t, Message: "must be physical or logical"})
			}
			if t == "logical" && (m["database"] == nil || m["plugin"] == nil) {
				errs = append(errs, &FieldError{Path: p("slots." + name), Value: "<map>", Message: "a logical slot needs database and plugin"})
			}
		}
	}
	if raw.PostgreSQL != nil {
		for _, k := range slices.Sorted(maps.Keys(raw.PostgreSQL.Parameters)) {
			if msg := checkProtected(k, raw.PostgreSQL.Parameters[k]); msg != "" {
				errs = append(errs, &FieldError{Path: p("postgresql.parameters." + k), Value: fmt.Sprint(raw.PostgreSQL.Parameters[k]), Message: msg})
			}
		}
	}
	return errors.Join(errs...)
}

func (r *dynamicRaw) slotsMap() map[string]any {
	for _, m := range []map[string]any{r.PermanentReplicationSlots, r.PermanentSlots, r.Slots} {
		if len(m) > 0 {
			return m
		}
	}
	return nil
}
