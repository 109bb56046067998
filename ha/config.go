package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// SyncMode is the synchronous replication mode of the cluster
// (spec/ha-loop.md §7).
type SyncMode int

const (
	// SyncOff: asynchronous replication.
	SyncOff SyncMode = iota
	// SyncOn: priority-based synchronous replication (synchronous_mode: on).
	SyncOn
	// SyncQuorum: quorum commit (synchronous_mode: quorum).
	SyncQuorum
)

func (m SyncMode) String() string {
	switch m {
	case SyncOn:
		return "on"
	case SyncQuorum:
		return "quorum"
	}
	return "off"
}

// WatchdogMode is the watchdog mode (spec/ha-loop.md §16).
type WatchdogMode int

const (
	WatchdogOff WatchdogMode = iota
	WatchdogAutomatic
	WatchdogRequired
)

func (m WatchdogMode) String() string {
	switch m {
	case WatchdogAutomatic:
		return "automatic"
	case WatchdogRequired:
		return "required"
	}
	return "off"
}

// Config is the configuration of one node's HA loop. Timing values are
// durations, not constants: the decision logic is the same at Patroni's
// defaults (ttl 30 s, loop_wait 10 s, retry_timeout 10 s) and at faster
// settings such as ttl 5 s, loop_wait 1 s, retry_timeout 2 s.
//
// The dynamic keys (ttl, loop_wait, retry_timeout, maximum_lag_on_failover,
// synchronous_mode, ...) are overridden each cycle by the cluster's "config"
// key when it is valid; Config holds the values used before the cluster has
// one, and the local-only settings (Name, Tags, Watchdog, ...).
type Config struct {
	// Name is this member's name. Required.
	Name string
	// Tags are this member's tags (nofailover, failover_priority,
	// replicatefrom, nosync, sync_priority, nostream, clonefrom).
	Tags map[string]any

	// TTL is the leader lease duration. Default 30 s. A primary that cannot
	// renew demotes before it expires, which Validate guarantees by
	// requiring TTL >= LoopWait + 2×RetryTimeout.
	TTL time.Duration
	// LoopWait is the pause between two cycles when nothing wakes the loop.
	// Default 10 s. Smaller values detect local failures sooner and cost
	// more DCS requests.
	LoopWait time.Duration
	// RetryTimeout bounds every DCS call and every peer probe round.
	// Default 10 s.
	RetryTimeout time.Duration
	// SafetyMargin is subtracted from the lease when deciding whether this
	// node may still accept writes (clock-drift allowance between this
	// node and the DCS). 0 means min(5 s, ttl/10), at least 100 ms, of
	// the ttl in effect at each renewal.
	SafetyMargin time.Duration

	// MaximumLagOnFailover is the maximum WAL distance in bytes between a
	// candidate and the last known leader position. Default 1 MiB.
	MaximumLagOnFailover uint64
	// PrimaryStartTimeout is how long a crashed primary may take to start
	// again before a failover is considered. Default 300 s; 0 fails over at
	// once after a crash.
	PrimaryStartTimeout time.Duration
	// CheckTimeline excludes candidates on an older timeline than the
	// cluster's (/history). DefaultConfig sets it true, unlike Patroni
	// (false): without it a lagging replica on an old timeline can win a
	// race after another node promoted, fork a second timeline with the
	// same number, and make WAL positions incomparable.
	CheckTimeline bool

	SyncMode                               SyncMode
	SyncStrict                             bool
	SyncNodeCount                          int // default 1
	FailsafeMode                           bool
	UsePgRewind                            bool
	RemoveDataDirectoryOnDivergedTimelines bool
	// Bootstrap reports whether a bootstrap section exists (a node without
	// one never races for initialize).
	Bootstrap bool
	// StandbyCluster, when non-nil, makes this a standby cluster following
	// the given remote primary until the cluster has a dynamic
	// configuration (the "config" key); from then on that configuration's
	// standby_cluster section decides, as in Patroni.
	StandbyCluster *StandbyCluster
	Watchdog       WatchdogMode
	// WatchdogSafetyMargin is how long before the lease ends the watchdog
	// fires: timeout = ttl − margin. nil means 5 s; a negative value means
	// timeout = ttl / 2 (spec/ha-loop.md §16). A timeout shorter than
	// loop_wait makes the watchdog unsupported (a keepalive per cycle
	// could not keep it from firing).
	WatchdogSafetyMargin *time.Duration

	// PrimaryRaceBackoff postpones the leader race while this replica's
	// WAL still advances (spec/ha-loop.md §3.1): a replica that still
	// receives WAL from a dying primary gets its last records before the
	// race compares positions. 0 (default) disables it; it adds at most
	// this much to a failover.
	PrimaryRaceBackoff time.Duration
	// MemberSlotsTTL is how long the leader keeps the physical slot of a
	// member whose key vanished (published as /status.retain_slots,
	// spec/ha-loop.md §10). Default 30 min; 0 drops the slot with the key.
	MemberSlotsTTL *time.Duration

	// Logger receives the decision log; nil means slog.Default().
	Logger *slog.Logger
	// DecisionLogSize is how many changed decisions are kept for History.
	// Default 100.
	DecisionLogSize int
}

// StandbyCluster is the remote primary a standby cluster follows.
type StandbyCluster struct {
	Host string
	Port int
	// RestoreCommand is set when WAL comes from an archive.
	RestoreCommand string
}

// DefaultConfig returns Patroni's defaults.
func DefaultConfig() Config {
	return Config{
		TTL:                  30 * time.Second,
		LoopWait:             10 * time.Second,
		RetryTimeout:         10 * time.Second,
		MaximumLagOnFailover: 1 << 20,
		PrimaryStartTimeout:  300 * time.Second,
		SyncNodeCount:        1,
		CheckTimeline:        true,
		Bootstrap:            true,
		DecisionLogSize:      100,
	}
}

// withDefaults returns a copy with unset fields filled from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.LoopWait == 0 {
		c.LoopWait = d.LoopWait
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = d.RetryTimeout
	}
	if c.SyncNodeCount == 0 {
		c.SyncNodeCount = d.SyncNodeCount
	}
	if c.DecisionLogSize == 0 {
		c.DecisionLogSize = d.DecisionLogSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// memberSlotsTTL returns MemberSlotsTTL or its default of 30 min.
func (c Config) memberSlotsTTL() time.Duration {
	if c.MemberSlotsTTL == nil {
		return 30 * time.Minute
	}
	return *c.MemberSlotsTTL
}

// WatchdogTimeout is the watchdog timeout for ttl (spec/ha-loop.md §16):
// ttl − margin, or ttl/2 for a negative margin. Safe because the lease is
// renewed every loop_wait and the timeout ends before the key expires, so
// a hung primary is reset before another node can take the key.
func (c Config) WatchdogTimeout(ttl time.Duration) time.Duration {
	m := 5 * time.Second
	if c.WatchdogSafetyMargin != nil {
		m = *c.WatchdogSafetyMargin
	}
	if m < 0 {
		return ttl / 2
	}
	return ttl - m
}

// watchdogTimeoutOK is §16: the timeout ttl − safety_margin (ttl/2 for
// -1) is positive and at least loop_wait, so one keepalive per cycle
// keeps the device from firing. Otherwise the watchdog is unsupported, as
// Patroni's timing_slack < 0 makes it: ttl 5 with the default margin 5
// gives 0, and nothing is adjusted.
func (s Settings) watchdogTimeoutOK() bool {
	t := s.WatchdogTimeout(s.TTL)
	return t > 0 && t >= s.LoopWait
}

// watchdogFailed is §16 (Patroni's Watchdog.is_healthy): in required
// mode, the device is not usable or the timeout does not suit the timing.
// Such a node is no failover candidate; the API reports watchdog_failed.
func (s Settings) watchdogFailed(deviceUsable bool) bool {
	return s.Watchdog == WatchdogRequired && !(deviceUsable && s.watchdogTimeoutOK())
}

func defaultMargin(ttl time.Duration) time.Duration {
	return max(min(5*time.Second, ttl/10), 100*time.Millisecond)
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("ha: name is required"))
	}
	if c.TTL < c.LoopWait+2*c.RetryTimeout {
		errs = append(errs, fmt.Errorf("ha: ttl %s must be at least loop_wait %s + 2 x retry_timeout %s", c.TTL, c.LoopWait, c.RetryTimeout))
	}
	if c.SafetyMargin < 0 || (c.SafetyMargin > 0 && c.SafetyMargin >= c.TTL) {
		errs = append(errs, fmt.Errorf("ha: safety margin %s must be in [0, ttl %s)", c.SafetyMargin, c.TTL))
	}
	return errors.Join(errs...)
}

// member returns a Member carrying only this node's tags, to reuse the tag
// helpers of package dcs.
func (c *Config) member() *dcs.Member { return &dcs.Member{Name: c.Name, Tags: c.Tags} }

// Settings are the effective settings of one cycle: Config overlaid with the
// cluster's dynamic configuration.
type Settings struct {
	Config
	Paused bool
}

// effective overlays the dynamic configuration on c (spec/ha-loop.md §0:
// global config; synchronous_mode is ignored in a standby cluster).
func effective(c Config, cc *dcs.ClusterConfig) Settings {
	s := Settings{Config: c}
	if cc.Valid() {
		d := cc.Data
		if v, ok := seconds(d["ttl"]); ok {
			s.TTL = v
		}
		if v, ok := seconds(d["loop_wait"]); ok {
			s.LoopWait = v
		}
		if v, ok := seconds(d["retry_timeout"]); ok {
			s.RetryTimeout = v
		}
		if v, ok := dcs.IntValue(d["maximum_lag_on_failover"]); ok && v >= 0 {
			s.MaximumLagOnFailover = uint64(v)
		}
		if v, ok := seconds(d["primary_start_timeout"]); ok {
			s.PrimaryStartTimeout = v
		} else if v, ok := seconds(d["master_start_timeout"]); ok {
			s.PrimaryStartTimeout = v
		}
		if v, ok := d["check_timeline"]; ok {
			s.CheckTimeline = dcs.Truthy(v)
		}
		if v, ok := d["synchronous_mode"]; ok {
			s.SyncMode = parseSyncMode(v)
		}
		if v, ok := d["synchronous_mode_strict"]; ok {
			s.SyncStrict = dcs.Truthy(v)
		}
		if v, ok := dcs.IntValue(d["synchronous_node_count"]); ok && v > 0 {
			s.SyncNodeCount = v
		}
		if v, ok := seconds(d["primary_race_backoff"]); ok && v >= 0 {
			s.PrimaryRaceBackoff = v
		}
		if v, ok := seconds(d["member_slots_ttl"]); ok && v >= 0 {
			s.MemberSlotsTTL = &v
		}
		if v, ok := d["failsafe_mode"]; ok {
			s.FailsafeMode = dcs.Truthy(v)
		}
		s.Paused = dcs.Truthy(d["pause"])
		// Once the cluster has a dynamic configuration, its
		// standby_cluster section decides, both ways: ctl demote-cluster
		// adds it, promote-cluster removes it.
		s.StandbyCluster = parseStandbyCluster(d["standby_cluster"])
	}
	if s.StandbyCluster != nil {
		s.SyncMode = SyncOff
	}
	return s
}

// parseStandbyCluster reads the standby_cluster section of the dynamic
// configuration: nil unless it names a host, a port or a restore_command,
// which is when Patroni treats the cluster as a standby cluster. The port
// defaults to 5432.
func parseStandbyCluster(v any) *StandbyCluster {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	host, _ := m["host"].(string)
	restore, _ := m["restore_command"].(string)
	sc := &StandbyCluster{Host: strings.TrimSpace(host), RestoreCommand: strings.TrimSpace(restore), Port: 5432}
	port, numeric := dcs.IntValue(m["port"])
	text, _ := m["port"].(string)
	if sc.Host == "" && sc.RestoreCommand == "" && !numeric && strings.TrimSpace(text) == "" {
		return nil
	}
	if numeric && port > 0 {
		sc.Port = port
	}
	return sc
}

func parseSyncMode(v any) SyncMode {
	if s, ok := v.(string); ok && strings.EqualFold(s, "quorum") {
		return SyncQuorum
	}
	if dcs.Truthy(v) {
		return SyncOn
	}
	return SyncOff
}

func seconds(v any) (time.Duration, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	case float64:
		return time.Duration(x * float64(time.Second)), true
	case int:
		return time.Duration(x) * time.Second, true
	case time.Duration:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	return 0, false
}
