package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/callbacks"
	"github.com/pgwarden/pgwarden/dcs"
)

// LSN is a write-ahead log position; it is the same type as dcs.LSN so that
// values move between the DCS model and Postgres without conversion.
type LSN = dcs.LSN

// ParseLSN parses PostgreSQL's "X/Y" LSN text.
func ParseLSN(s string) (LSN, error) { return dcs.ParseLSN(s) }

// Role is the role the manager runs Postgres in, with Patroni's names.
type Role string

// Roles (spec/postgres.md §4.1, §6).
const (
	RoleUninitialized Role = "uninitialized"
	RolePrimary       Role = "primary"
	RoleReplica       Role = "replica"
	RoleStandbyLeader Role = "standby_leader"
	RoleDemoted       Role = "demoted"
	RolePromoted      Role = "promoted"
)

// IsPrimary reports whether the role writes WAL (primary or promoted).
func (r Role) IsPrimary() bool { return r == RolePrimary || r == RolePromoted }

// User is one set of credentials from postgresql.authentication.
type User struct {
	Username string
	Password string
	// SSL holds libpq SSL/GSS settings (sslmode, sslcert, sslkey,
	// sslrootcert, sslcrl, sslcrldir, sslpassword, gssencmode,
	// channel_binding, sslnegotiation); copied into conninfo strings.
	SSL map[string]string
}

// Upstream is another member Postgres connects to: the primary a replica
// follows, the source of a clone or of pg_rewind.
type Upstream struct {
	// Name is the member name; its slot name is used when Slot is empty.
	Name string
	Host string
	Port int
	// Database defaults to Config.Database.
	Database string
	// Slot overrides the slot this node streams from ("" = my slot name
	// when slots are in use).
	Slot string
	// NoSlot streams without a replication slot even when slots are in
	// use: a standby cluster's remote primary without
	// standby_cluster.primary_slot_name has no slot for us.
	NoSlot bool
	// Recovery overrides recovery parameters for this upstream, e.g. a
	// standby cluster's restore_command, archive_cleanup_command and
	// recovery_min_apply_delay (spec/postgres.md §5).
	Recovery map[string]string
	// NoStream leaves primary_conninfo out: WAL comes from the archive
	// only (the nostream tag, spec/postgres.md §5).
	NoStream bool
}

// UpstreamFromMember builds the Upstream of a DCS member from its conn_url
// ("postgres://host:port/dbname").
func UpstreamFromMember(m *dcs.Member) (Upstream, error) {
	if m == nil {
		return Upstream{}, errors.New("postgres: upstream: no member")
	}
	u, err := url.Parse(m.ConnURL)
	if err != nil || u.Host == "" {
		return Upstream{}, fmt.Errorf("postgres: upstream %s: bad conn_url %q: %v", m.Name, m.ConnURL, err)
	}
	port := 5432
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return Upstream{}, fmt.Errorf("postgres: upstream %s: bad port in conn_url %q", m.Name, m.ConnURL)
		}
	}
	return Upstream{Name: m.Name, Host: u.Hostname(), Port: port, Database: strings.TrimPrefix(u.Path, "/")}, nil
}

// Address returns host:port.
func (u Upstream) Address() string { return fmt.Sprintf("%s:%d", u.Host, u.Port) }

// ScriptMethod is a custom bootstrap or replica creation method section
// (spec/postgres.md §7, §10).
type ScriptMethod struct {
	// Command is the command line, shell-split; default the method name.
	Command string
	// NoParams drops the --scope/--datadir/... arguments pgwarden adds.
	NoParams bool
	// NoLeader (replica methods) allows running without a source.
	NoLeader bool
	// KeepData (replica methods) keeps the data directory before and after
	// a failed run.
	KeepData bool
	// KeepExistingRecoveryConf and RecoveryConf (bootstrap methods) control
	// the recovery configuration after the script.
	KeepExistingRecoveryConf bool
	RecoveryConf             map[string]string
	// Args are the keys of the section other than command, in config
	// order, rendered as --key=value; like Patroni this includes no_leader,
	// keep_data and no_params when present. Values are strings rendered
	// as Patroni would (Python style: True/False).
	Args []Arg
}

// Arg is one key/value of a method section.
type Arg struct{ Key, Value string }

// BootstrapConfig is the bootstrap section of the configuration.
type BootstrapConfig struct {
	// Method is "initdb" (default) or a name registered with
	// RegisterBootstrapMethod or present in Methods.
	Method string
	// Initdb are the initdb options (spec/postgres.md §10).
	Initdb Options
	// Scripts are custom script bootstrap methods by name
	// (bootstrap.<method> sections).
	Scripts map[string]ScriptMethod
	// Methods are Go bootstrap methods by name; they take precedence over
	// built-ins and scripts of the same name.
	Methods map[string]BootstrapMethod
	// PostBootstrap is the post_bootstrap (post_init) command line.
	PostBootstrap string
	// PgHBA lines are appended to pg_hba.conf after bootstrap when
	// Config.PgHBA is empty.
	PgHBA []string
}

// Config configures a Manager. Zero values take the defaults documented on
// each field (and applied by withDefaults); Validate reports what is wrong.
type Config struct {
	// Name is the member name: application_name of the WAL receiver and
	// the base of the member's replication slot name. Required.
	Name string
	// Scope is the cluster name, used as cluster_name and as the callback
	// SCOPE argument. Required.
	Scope string

	// BinDir holds the PostgreSQL binaries; empty means PATH lookup.
	BinDir string
	// BinNames overrides binary names ("pg_ctl" -> "pg_ctl15").
	BinNames map[string]string
	// DataDir is the data directory. Required.
	DataDir string
	// ConfigDir holds postgresql.conf, pg_hba.conf and pg_ident.conf;
	// default DataDir.
	ConfigDir string
	// ConfigBaseName is the base of the config file name; default
	// "postgresql".
	ConfigBaseName string
	// CustomConf replaces postgresql.base.conf as the included base file.
	CustomConf string
	// ServerLog receives the postmaster's stdout/stderr; default
	// DataDir + ".log" (outside the data directory so clones do not copy
	// it).
	ServerLog string

	// ListenAddresses is listen_addresses (the host part of
	// postgresql.listen); default "127.0.0.1".
	ListenAddresses string
	// Port is the port; default 5432.
	Port int
	// ConnectHost is the host used for local connections; default derived
	// from ListenAddresses as Patroni does (spec/postgres.md §3).
	ConnectHost string
	// Database is the database pgwarden connects to; default "postgres".
	Database string
	// Superuser, Replication and Rewind are the credentials; Rewind
	// defaults to Superuser.
	Superuser, Replication, Rewind User
	// PgPass is the password file written for libpq tools; default
	// ConfigDir/../pgpass.<Name>. Always mode 0600.
	PgPass string

	// Parameters are the GUCs from configuration (spec/config.md §5).
	Parameters map[string]string
	// PgHBA and PgIdent are the lines of pg_hba.conf and pg_ident.conf;
	// empty PgHBA keeps whatever initdb wrote.
	PgHBA, PgIdent []string
	// RecoveryConf are extra recovery parameters for replicas.
	RecoveryConf map[string]string
	// UseSlots makes replicas stream from a slot named after them; default
	// true.
	UseSlots *bool

	// RunAs is the OS user that runs every Postgres binary (Postgres
	// refuses to run as root); empty means the current user. Files pgwarden
	// writes are chowned to it.
	RunAs string

	// StartTimeout bounds waiting for a started server to accept
	// connections (pg_ctl_timeout); default 60s.
	StartTimeout time.Duration
	// StopTimeout bounds a graceful stop before escalating to SIGQUIT and
	// then SIGKILL; default 60s.
	StopTimeout time.Duration
	// PromoteTimeout bounds waiting for the end of recovery after
	// promote; default 60s.
	PromoteTimeout time.Duration

	// Bootstrap configures new cluster creation.
	Bootstrap BootstrapConfig
	// CreateReplicaMethods is the ordered list of replica creation methods;
	// default ["basebackup"].
	CreateReplicaMethods []string
	// ReplicaScripts are custom script replica methods by name
	// (postgresql.<method> sections).
	ReplicaScripts map[string]ScriptMethod
	// ReplicaMethods are Go replica creation methods by name; they take
	// precedence over built-ins and scripts of the same name.
	ReplicaMethods map[string]ReplicaMethod
	// OnCloneProgress, when set, receives pg_basebackup progress in kB.
	OnCloneProgress func(doneKB, totalKB int64)
	// Basebackup are the extra pg_basebackup options.
	Basebackup Options

	// UsePgRewind allows pg_rewind.
	UsePgRewind bool
	// RewindOptions are extra pg_rewind options.
	RewindOptions Options
	// RewindTimeout bounds a pg_rewind run; default 10m.
	RewindTimeout time.Duration
	// RemoveDataDirectoryOnRewindFailure and
	// RemoveDataDirectoryOnDivergedTimelines allow deleting the data
	// directory after a failed rewind (spec/postgres.md §8).
	RemoveDataDirectoryOnRewindFailure     bool
	RemoveDataDirectoryOnDivergedTimelines bool

	// PrePromote and BeforeStop are scripts run synchronously
	// (spec/postgres.md §11, last paragraph).
	PrePromote, BeforeStop string
	// Callbacks fires the user callbacks; nil fires none.
	Callbacks *callbacks.Executor
	// Hooks are Go functions called around lifecycle steps.
	Hooks Hooks
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Step names a lifecycle step for Hooks.
type Step string

// Lifecycle steps.
const (
	StepStart         Step = "start"
	StepStop          Step = "stop"
	StepRestart       Step = "restart"
	StepReload        Step = "reload"
	StepPromote       Step = "promote"
	StepDemote        Step = "demote"
	StepFollow        Step = "follow"
	StepBootstrap     Step = "bootstrap"
	StepPostBootstrap Step = "post_bootstrap"
	StepCreateReplica Step = "create_replica"
	StepRewind        Step = "rewind"
	StepCrashRecovery Step = "crash_recovery"
)

// Hooks are optional Go functions the Manager calls synchronously, on the
// goroutine that called the lifecycle method. Before may veto a step by
// returning an error (the step then returns it wrapped); After observes the
// outcome. Hooks must not call back into the Manager.
type Hooks struct {
	Before func(ctx context.Context, step Step) error
	After  func(ctx context.Context, step Step, err error)
}

// DefaultConfig returns a Config with every default filled in, except the
// required fields.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.ConfigDir == "" {
		c.ConfigDir = c.DataDir
	}
	if c.ConfigBaseName == "" {
		c.ConfigBaseName = "postgresql"
	}
	if c.ServerLog == "" && c.DataDir != "" {
		c.ServerLog = filepath.Clean(c.DataDir) + ".log"
	}
	if c.ListenAddresses == "" {
		c.ListenAddresses = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.ConnectHost == "" {
		c.ConnectHost = connectHostFor(c.ListenAddresses)
	}
	if c.Database == "" {
		c.Database = "postgres"
	}
	if c.Rewind.Username == "" {
		c.Rewind = c.Superuser
	}
	if c.PgPass == "" && c.DataDir != "" {
		c.PgPass = filepath.Join(filepath.Dir(filepath.Clean(c.DataDir)), "pgpass."+c.Name)
	}
	if c.UseSlots == nil {
		t := true
		c.UseSlots = &t
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 60 * time.Second
	}
	if c.PromoteTimeout == 0 {
		c.PromoteTimeout = 60 * time.Second
	}
	if c.RewindTimeout == 0 {
		c.RewindTimeout = 10 * time.Minute
	}
	if c.Bootstrap.Method == "" {
		c.Bootstrap.Method = "initdb"
	}
	if len(c.CreateReplicaMethods) == 0 {
		c.CreateReplicaMethods = []string{"basebackup"}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// connectHostFor picks the local connection host from listen_addresses
// (spec/postgres.md §3).
func connectHostFor(listen string) string {
	first := ""
	for _, a := range strings.Split(listen, ",") {
		a = strings.TrimSpace(a)
		switch a {
		case "*", "localhost", "0.0.0.0", "127.0.0.1", "::":
			return "127.0.0.1"
		}
		if first == "" {
			first = a
		}
	}
	if first == "" {
		return "127.0.0.1"
	}
	return first
}

// Validate reports every problem of the configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("postgres: config: Name is required"))
	}
	if c.Scope == "" {
		errs = append(errs, errors.New("postgres: config: Scope is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("postgres: config: DataDir is required"))
	} else if !filepath.IsAbs(c.DataDir) {
		errs = append(errs, fmt.Errorf("postgres: config: DataDir %q must be absolute", c.DataDir))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("postgres: config: Port %d out of range 1..65535", c.Port))
	}
	if c.Superuser.Username == "" {
		errs = append(errs, errors.New("postgres: config: Superuser.Username is required"))
	}
	if c.Replication.Username == "" {
		errs = append(errs, errors.New("postgres: config: Replication.Username is required"))
	}
	if err := c.Bootstrap.Initdb.check(forbiddenInitdb); err != nil {
		errs = append(errs, fmt.Errorf("postgres: config: bootstrap.initdb: %w", err))
	}
	if err := c.Basebackup.check(forbiddenBasebackup); err != nil {
		errs = append(errs, fmt.Errorf("postgres: config: basebackup: %w", err))
	}
	if err := c.RewindOptions.check(forbiddenRewind); err != nil {
		errs = append(errs, fmt.Errorf("postgres: config: rewind: %w", err))
	}
	return errors.Join(errs...)
}

var slotNameRe = regexp.MustCompile(`[^a-z0-9_]`)

// SlotName returns the replication slot name Patroni derives from a member
// name: lower case, every character outside [a-z0-9_] replaced by '_',
// truncated to 63 bytes.
func SlotName(member string) string {
	s := slotNameRe.ReplaceAllString(strings.ToLower(member), "_")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
