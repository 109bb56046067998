package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/callbacks"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/hapostgres"
	"github.com/pgwarden/pgwarden/postgres"
)

// loadConfig reads, validates and fills defaults of a daemon configuration
// file. Every problem is reported at once, with line numbers where known.
// The warnings are returned, also with an invalid file, for the caller to
// log (see warnLog).
func loadConfig(path string) (*config.Config, []config.Warning, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("config file %s does not exist: pass the path of a Patroni-style YAML file (reference-daemon generate-config prints a sample): %w", path, err)
	} else if err != nil {
		return nil, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	c, warns, err := config.Load(path, os.Environ())
	if err != nil {
		if strings.Contains(err.Error(), path) {
			return nil, warns, err // already names the file (YAML syntax errors)
		}
		return nil, warns, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, warns, fmt.Errorf("config file %s is invalid:\n%w", path, err)
	}
	return c.WithDefaults(), warns, nil
}

// warnLog logs configuration warnings, each one once. At startup the same
// timing warning (ttl or retry_timeout below Patroni's documented minimum)
// comes from bootstrap.dcs in the file (config.Load, with its line), from
// the settings the daemon derives from that section, and again from the
// dynamic configuration the DCS holds. A warning is identified by its
// message and its path inside the dynamic configuration. Not safe for
// concurrent use.
type warnLog struct {
	log  *slog.Logger
	seen map[string]bool
}

func newWarnLog(log *slog.Logger) *warnLog { return &warnLog{log: log, seen: map[string]bool{}} }

// warn logs under msg each warning not logged before.
func (wl *warnLog) warn(msg string, warns []config.Warning) {
	for _, w := range warns {
		key := strings.TrimPrefix(w.Path, "bootstrap.dcs.") + "\x00" + w.Message
		if wl.seen[key] {
			continue
		}
		wl.seen[key] = true
		wl.log.Warn(msg, "warning", w.String())
	}
}

// dynamicSettings returns the settings of a dynamic configuration and logs
// what the timing sanity rules changed or found risky in it (spec/config.md
// §2).
func dynamicSettings(dyn *config.Dynamic, wl *warnLog) config.Settings {
	s, warns := dyn.Settings()
	wl.warn("dynamic configuration", warns)
	return s
}

// lockDataDir takes an exclusive lock next to the data directory (the data
// directory itself may not exist yet, and must be empty for initdb), so a
// second daemon configured on the same data directory refuses to start.
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Clean(dataDir) + ".pgwarden.lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another daemon"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("another daemon (pid %d)", pid)
			}
		}
		_ = f.Close()
		return nil, fmt.Errorf("data directory %s is in use by %s, which holds the lock file %s: stop that daemon first, or give this node its own postgresql.data_dir", dataDir, holder, path)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return f, nil
}

func splitHostPort(s string, defPort int) (string, int, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return s, defPort, nil
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return s[:i], p, nil
}

func gucString(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "on"
		}
		return "off"
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func pgUser(u *config.User) postgres.User {
	if u == nil {
		return postgres.User{}
	}
	out := postgres.User{Username: u.Username, Password: u.Password, SSL: map[string]string{}}
	for k, v := range map[string]string{
		"sslmode": u.SSLMode, "sslcert": u.SSLCert, "sslkey": u.SSLKey, "sslpassword": u.SSLPassword,
		"sslrootcert": u.SSLRootCert, "sslcrl": u.SSLCRL, "sslcrldir": u.SSLCRLDir, "gssencmode": u.GSSEncMode,
		"channel_binding": u.ChannelBinding, "sslnegotiation": u.SSLNegotiation,
	} {
		if v != "" {
			out.SSL[k] = v
		}
	}
	return out
}

// pgConfig maps the effective configuration to postgres.Config.
func pgConfig(c *config.Config, s config.Settings, cb *callbacks.Executor, log *slog.Logger) (postgres.Config, error) {
	p := c.PostgreSQL
	pc := postgres.DefaultConfig()
	pc.Name, pc.Scope = c.Name, c.Scope
	pc.BinDir, pc.BinNames = p.BinDir, p.BinName
	pc.DataDir, pc.ConfigDir, pc.ConfigBaseName, pc.CustomConf = p.DataDir, p.ConfigDir, p.ConfigBaseName, p.CustomConf
	host, port, err := splitHostPort(p.Listen, 5432)
	if err != nil {
		return pc, fmt.Errorf("postgresql.listen: %w", err)
	}
	pc.ListenAddresses, pc.Port = host, port
	pc.Database = p.Database
	if p.PgPass != "" && !strings.HasPrefix(p.PgPass, "~") {
		pc.PgPass = p.PgPass
	}
	pc.Superuser = pgUser(p.Authentication.Superuser)
	pc.Replication = pgUser(p.Authentication.Replication)
	pc.Rewind = pgUser(p.Authentication.Rewind)
	pc.Parameters = map[string]string{}
	for k, v := range c.RoleParameters("") {
		pc.Parameters[k] = gucString(v)
	}
	for k, v := range p.Parameters {
		pc.Parameters[k] = gucString(v)
	}
	pc.PgHBA, pc.PgIdent = p.PgHBA, p.PgIdent
	if len(p.RecoveryConf) > 0 {
		pc.RecoveryConf = map[string]string{}
		for k, v := range p.RecoveryConf {
			pc.RecoveryConf[k] = gucString(v)
		}
	}
	pc.UseSlots = &s.UseSlots
	if os.Geteuid() == 0 {
		pc.RunAs = "postgres"
	}
	if p.PgCtlTimeout != nil {
		pc.StartTimeout = time.Duration(*p.PgCtlTimeout) * time.Second
	}
	pc.Bootstrap.Method = c.Bootstrap.Method
	if c.Bootstrap.InitDB != nil {
		if pc.Bootstrap.Initdb, err = postgres.ParseOptions(c.Bootstrap.InitDB); err != nil {
			return pc, fmt.Errorf("bootstrap.initdb: %w", err)
		}
	}
	pc.Bootstrap.PostBootstrap = c.Bootstrap.PostBootstrap
	pc.Bootstrap.PgHBA = c.Bootstrap.PgHBA
	if len(p.CreateReplicaMethods) > 0 {
		pc.CreateReplicaMethods = p.CreateReplicaMethods
	}
	if p.Basebackup != nil {
		if pc.Basebackup, err = postgres.ParseOptions(p.Basebackup); err != nil {
			return pc, fmt.Errorf("postgresql.basebackup: %w", err)
		}
	}
	pc.UsePgRewind = s.UsePgRewind
	if p.Rewind != nil {
		if pc.RewindOptions, err = postgres.ParseOptions(p.Rewind); err != nil {
			return pc, fmt.Errorf("postgresql.rewind: %w", err)
		}
	}
	pc.RemoveDataDirectoryOnRewindFailure = p.RemoveDataDirectoryOnRewindFailure
	pc.RemoveDataDirectoryOnDivergedTimelines = p.RemoveDataDirectoryOnDivergedTimelines
	pc.PrePromote, pc.BeforeStop = p.PrePromote, p.BeforeStop
	pc.Callbacks = cb
	pc.Logger = log
	return pc, nil
}

func callbackExecutor(c *config.Config, log *slog.Logger) (*callbacks.Executor, error) {
	m := map[callbacks.Event]callbacks.Callback{}
	for name, cmd := range c.PostgreSQL.Callbacks {
		ev, err := callbacks.ParseEvent(name)
		if err != nil {
			return nil, fmt.Errorf("postgresql.callbacks.%s: %w", name, err)
		}
		s, err := callbacks.ParseScript(cmd)
		if err != nil {
			return nil, fmt.Errorf("postgresql.callbacks.%s: %w", name, err)
		}
		m[ev] = s
	}
	return callbacks.NewExecutor(callbacks.Config{Scope: c.Scope, Callbacks: m, Logger: log}), nil
}

func haConfig(c *config.Config, s config.Settings, log *slog.Logger) ha.Config {
	h := ha.DefaultConfig()
	h.Name = c.Name
	h.Tags = c.Tags.Published()
	h.TTL = time.Duration(s.TTL) * time.Second
	h.LoopWait = time.Duration(s.LoopWait) * time.Second
	h.RetryTimeout = time.Duration(s.RetryTimeout) * time.Second
	h.MaximumLagOnFailover = uint64(max(s.MaximumLagOnFailover, 0))
	h.PrimaryStartTimeout = time.Duration(s.PrimaryStartTimeout) * time.Second
	h.CheckTimeline = true
	switch s.SynchronousMode {
	case config.SyncOff, "":
	default:
		if s.SynchronousMode == "quorum" {
			h.SyncMode = ha.SyncQuorum
		} else {
			h.SyncMode = ha.SyncOn
		}
	}
	h.SyncStrict = s.SynchronousModeStrict
	h.SyncNodeCount = max(s.SynchronousNodeCount, 1)
	h.FailsafeMode = s.FailsafeMode
	h.UsePgRewind = s.UsePgRewind
	h.RemoveDataDirectoryOnDivergedTimelines = c.PostgreSQL.RemoveDataDirectoryOnDivergedTimelines
	h.Bootstrap = true
	h.PrimaryRaceBackoff = time.Duration(s.PrimaryRaceBackoff) * time.Second
	mst := time.Duration(s.MemberSlotsTTL) * time.Second
	h.MemberSlotsTTL = &mst
	if w := c.Watchdog; w != nil && w.SafetyMargin != nil {
		m := time.Duration(*w.SafetyMargin) * time.Second
		h.WatchdogSafetyMargin = &m
	}
	if sc := s.StandbyCluster; sc != nil {
		port, _ := strconv.Atoi(sc.Port)
		if port == 0 {
			port = 5432
		}
		h.StandbyCluster = &ha.StandbyCluster{Host: sc.Host, Port: port, RestoreCommand: sc.RestoreCommand}
	}
	h.Logger = log
	return h
}

func apiURL(c *config.Config) string {
	scheme := "http"
	if c.RestAPI.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + c.RestAPI.ConnectAddress + "/patroni"
}

// daemon holds the assembled node.
type daemon struct {
	path   string
	log    *slog.Logger
	cfg    atomic.Pointer[config.Config]
	pg     *postgres.Manager
	pga    *hapostgres.Adapter
	node   *ha.Node
	store  dcs.Store
	status atomic.Pointer[api.Status]
	stop   context.CancelFunc

	// lastRaw is the dynamic configuration last applied to Postgres; used
	// by the statusLoop goroutine only.
	lastRaw []byte
	// reload is signalled by SIGHUP and POST /reload.
	reload chan struct{}
	// versionNum is server_version_num of the postmaster started at
	// versionPM (statusLoop goroutine only).
	versionNum int
	versionPM  time.Time
	// kick asks statusLoop for a refresh now (the postmaster exited).
	kick chan struct{}
	// promoted tells statusLoop that a promotion finished.
	promoted chan struct{}
	// primaryReady is whether the last published status made GET
	// /primary answer 200 (statusLoop goroutine only; for the debug log).
	primaryReady bool
}

// runDaemon runs one node until SIGTERM/SIGINT (clean shutdown) and
// returns the process exit code.
func runDaemon(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	slog.SetDefault(log)
	wl := newWarnLog(log)
	c, warns, err := loadConfig(path)
	wl.warn("config", warns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	lock, err := lockDataDir(c.PostgreSQL.DataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	defer func() { _ = lock.Close() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serveDaemon(ctx, stop, path, c, log, wl); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

func logLevel() slog.Level {
	for _, k := range []string{"PATRONI_LOG_LEVEL", "PGWARDEN_LOG_LEVEL"} {
		var l slog.Level
		if v := os.Getenv(k); v != "" && l.UnmarshalText([]byte(strings.ToUpper(strings.TrimSuffix(v, "ING")))) == nil {
			return l
		}
	}
	return slog.LevelInfo
}

func serveDaemon(ctx context.Context, stop context.CancelFunc, path string, c *config.Config, log *slog.Logger, wl *warnLog) error {
	dyn := c.BootstrapDynamic()
	if dyn == nil {
		dyn = config.NewDynamic()
	}
	settings := dynamicSettings(dyn, wl)
	eff, _ := config.Effective(c, dyn)
	ttl := time.Duration(settings.TTL) * time.Second

	// Open the DCS, retrying with progress until it answers. Nothing is
	// started (Postgres, REST API) before it does.
	// One attempt may take retry_timeout, as any DCS call; starting an
	// embedded etcd member (raft section) also waits for its peers.
	attempt := time.Duration(settings.RetryTimeout) * time.Second
	if c.Raft != nil {
		attempt *= 3
	}
	h, err := waitForDCS(ctx, c, ttl, attempt, log)
	if err != nil {
		return err
	}
	defer h.Close()

	// An existing cluster's dynamic configuration wins over bootstrap.dcs
	// (spec/config.md §2); re-read it now so the first start uses it.
	var lastRaw []byte
	if cl, err := clusterWithin(ctx, h.store, time.Duration(settings.RetryTimeout)*time.Second); err == nil && cl.Config != nil {
		if d2, err := config.ParseDynamic(cl.Config.Raw); err == nil {
			dyn, lastRaw = d2, cl.Config.Raw
			settings = dynamicSettings(dyn, wl)
			eff, _ = config.Effective(c, dyn)
		}
	}

	cb, err := callbackExecutor(c, log)
	if err != nil {
		return err
	}
	defer cb.Close()
	pc, err := pgConfig(eff, settings, cb, log)
	if err != nil {
		return err
	}
	m, err := postgres.New(pc)
	if err != nil {
		return fmt.Errorf("postgres manager: %w", err)
	}
	defer m.Close()
	kick, promoted := make(chan struct{}, 1), make(chan struct{}, 1)
	adapter := hapostgres.New(m, hapostgres.Options{
		Name:      c.Name,
		UseRewind: settings.UsePgRewind,
		Changed:   func() { poke(kick) },
		Promoted:  func() { poke(promoted) },
		History: func(ctx context.Context) (*dcs.TimelineHistory, error) {
			cl, err := h.store.Cluster(ctx)
			if err != nil {
				return nil, fmt.Errorf("read history: %w", err)
			}
			return cl.History, nil
		},
	})
	adapter.SetStandby(settings.StandbyCluster)

	d := &daemon{path: path, log: log, pg: m, pga: adapter, store: h.store, stop: stop, lastRaw: lastRaw}
	d.cfg.Store(c)
	d.reload = make(chan struct{}, 1)
	d.kick, d.promoted = kick, promoted
	tlsCfg, err := api.ServerTLSConfig(c.RestAPI)
	if err != nil {
		return fmt.Errorf("restapi tls: %w", err)
	}
	user, pass := ctlAuth(c)
	peers := api.NewPeers(api.PeersConfig{Username: user, Password: pass})
	hc := haConfig(c, settings, log)
	wd, wdMode := newWatchdog(c.Watchdog, settings, log)
	hc.Watchdog = wdMode
	var watchdog ha.Watchdog
	switch {
	case wd == nil:
	case wdMode == ha.WatchdogAutomatic && !wd.Usable():
		log.Info("watchdog not used (mode automatic)", "device", wd.device, "timeout", wd.timeout)
	default:
		watchdog = wd
	}
	node, err := ha.New(ha.Options{
		Config:        hc,
		Watchdog:      watchdog,
		Store:         h.store,
		Postgres:      adapter,
		Peers:         peers,
		APIURL:        apiURL(c),
		Version:       version,
		ConnURL:       "postgres://" + c.PostgreSQL.ConnectAddress + "/postgres",
		DynamicConfig: dyn.JSON(),
	})
	if err != nil {
		return fmt.Errorf("ha node: %w", err)
	}
	d.node = node
	d.refreshStatus(ctx)

	handler, err := api.NewHandler(api.Config{
		Status: d, Controller: d, DCS: h.store, RestAPI: c.RestAPI, Version: version, Logger: log,
		DCSTimeout: time.Duration(settings.RetryTimeout) * time.Second,
		// A switchover answers as soon as the new leader holds the key.
		SwitchoverPoll: switchoverPoll,
	})
	if err != nil {
		return fmt.Errorf("rest api: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.RestAPI.Listen); err != nil {
		return fmt.Errorf("restapi.listen %q: %w", c.RestAPI.Listen, err)
	}

	var wg sync.WaitGroup
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()
	apiErr := make(chan error, 1)
	wg.Go(func() { apiErr <- api.Serve(apiCtx, c.RestAPI.Listen, handler, tlsCfg) })
	wg.Go(func() { d.statusLoop(apiCtx, time.Duration(settings.LoopWait)*time.Second) })
	wg.Go(func() { d.watchPostmaster(apiCtx, postmasterPoll) })

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-apiCtx.Done():
				return
			case <-hup:
				d.Reload(apiCtx)
			}
		}
	})

	nodeErr := make(chan error, 1)
	go func() { nodeErr <- node.Run(ctx) }()
	// The REST API is listening and the loop runs: ready for systemd.
	if err := sdNotify("READY=1\nSTATUS=running"); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	go func() {
		<-ctx.Done()
		_ = sdNotify("STOPPING=1")
	}()
	var runErr error
	select {
	case runErr = <-nodeErr:
	case err := <-apiErr:
		log.Error("rest api stopped", "err", err)
		stop()
		runErr = <-nodeErr
		apiErr <- err
	}
	log.Info("HA loop stopped", "err", runErr)
	stopAPI()
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// dcsRetryDelay is the pause between attempts to reach the DCS at startup:
// short, since nothing runs yet and each attempt is cheap.
const dcsRetryDelay = time.Second

// waitForDCS opens the DCS, printing a line per failed attempt with the
// address and the reason, until it answers, ctx ends (SIGTERM) or the
// problem is one retrying cannot fix (a bad section, no credentials).
func waitForDCS(ctx context.Context, c *config.Config, ttl, attemptTimeout time.Duration, log *slog.Logger) (*dcsHandle, error) {
	where := dcsAddress(c)
	for attempt := 1; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, attemptTimeout)
		h, err := openDCS(octx, c, c.Name, ttl, true, log)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info(fmt.Sprintf("DCS %s answered after %d attempts", where, attempt))
			}
			return h, nil
		}
		if _, ok := errors.AsType[*configError](err); ok {
			return nil, fmt.Errorf("DCS %s: %w", where, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn(fmt.Sprintf("waiting for DCS %s: %v (retry in %s)", where, err, dcsRetryDelay), "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(dcsRetryDelay):
		}
	}
}

// switchoverPoll is how often POST /switchover checks the DCS for the new
// leader: the request answers within this of the key changing hands.
const switchoverPoll = 50 * time.Millisecond

// postmasterPoll bounds how long watchPostmaster waits between looks at
// the pid file (a new postmaster, or no pidfd support).
const postmasterPoll = 100 * time.Millisecond

// watchPostmaster notices the postmaster's exit (a crash or kill -9 while
// the daemon runs) at once through a pidfd, or within one poll where pidfds
// are not available: it wakes the HA loop, which restarts it, and refreshes
// the status so that GET /primary stops answering 200 now rather than at
// the next periodic refresh.
func (d *daemon) watchPostmaster(ctx context.Context, every time.Duration) {
	last, fd := 0, -1
	defer func() {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}()
	for ctx.Err() == nil {
		if fd >= 0 {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, int(every.Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
				_ = unix.Close(fd)
				fd = -1
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
		pid := d.pg.PostmasterPID()
		if pid == last {
			continue
		}
		if fd >= 0 {
			_ = unix.Close(fd)
			fd = -1
		}
		if pid == 0 {
			d.log.Debug("postmaster exited", "pid", last)
			d.pga.Notify()
			d.node.Wake()
		} else if f, err := unix.PidfdOpen(pid, 0); err == nil {
			fd = f
		}
		last = pid
	}
}

// statusLoop publishes a fresh api.Status every second, at once when the
// HA loop's published status changes (role, state, leadership) and when
// the postmaster exits, so health checks never wait on Postgres or the DCS
// and follow a switchover or crash without a polling delay.
func (d *daemon) statusLoop(ctx context.Context, loopWait time.Duration) {
	t := time.NewTicker(min(time.Second, max(loopWait/2, 200*time.Millisecond)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		case <-d.promoted:
			d.publishPromoted()
		case <-d.node.StatusChanged():
			d.dropLeadership()
		case <-d.reload:
			c, warns, err := loadConfig(d.path)
			newWarnLog(d.log).warn("config", warns)
			if err != nil {
				d.log.Error("reload: keeping the old configuration", "err", err)
			} else {
				d.cfg.Store(c)
				d.lastRaw = nil // re-apply parameters with the new local file
			}
		}
		cl := d.refreshStatus(ctx)
		if cl != nil && cl.Config != nil && !bytes.Equal(cl.Config.Raw, d.lastRaw) {
			d.applyConfig(ctx, cl)
		}
	}
}

// dropLeadership publishes at once, before the full refresh, that this
// node no longer holds the leader lease when the HA loop says so (a
// demotion began): GET /primary answers 503 without waiting on Postgres.
func (d *daemon) dropLeadership() {
	hs := d.node.Status()
	cur := d.status.Load()
	if hs == nil || cur == nil || !hs.LeaseValidUntil.IsZero() || cur.LeaderUntil.IsZero() {
		return
	}
	s := *cur
	s.LeaderUntil = time.Time{}
	d.status.Store(&s)
}

// publishPromoted publishes at once that Postgres left recovery, before
// the refresh that queries it: the promotion has just seen it accept
// writes, and GET /primary should say so without waiting for a status
// query on a server busy with its end-of-recovery checkpoint.
func (d *daemon) publishPromoted() {
	hs := d.node.Status()
	if hs == nil {
		return
	}
	if s := promotedStatus(d.status.Load(), hs.LeaseValidUntil, time.Now()); s != nil {
		d.publishStatus(s)
	}
}

// promotedStatus is cur as a promoted primary that holds the lease until
// leaseUntil, or nil when there is nothing to publish (no status from a
// running server yet, or the lease is not held). Until the next refresh
// the document keeps the replica's timeline and gives its last position
// as the primary's.
func promotedStatus(cur *api.Status, leaseUntil, now time.Time) *api.Status {
	if cur == nil || !cur.QueryOK || !now.Before(leaseUntil) {
		return nil
	}
	s := *cur
	s.Role, s.State, s.LeaderUntil = "primary", "running", leaseUntil
	s.XLogLocation = max(cur.ReplayedLocation, cur.ReceivedLocation)
	s.ReceivedLocation, s.ReplayedLocation, s.ReplicationState, s.ReplayPaused = 0, 0, "", false
	s.ReplayedTimestamp = nil
	return &s
}

// poke sends on a channel of capacity 1 without blocking: a signal
// already pending stands for this one.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// clusterWithin reads the cluster with a deadline.
func clusterWithin(ctx context.Context, st dcs.Store, d time.Duration) (*dcs.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cl, err := st.Cluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cluster: %w", err)
	}
	return cl, nil
}

// upstream returns the member Postgres follows now (nil for a primary).
func (d *daemon) upstream(cl *dcs.Cluster) *postgres.Upstream {
	name := d.pga.Upstream()
	if name == "" || cl == nil {
		return nil
	}
	up, _ := d.pga.UpstreamOf(cl.Member(name))
	return up
}

// applyConfig gives Postgres the parameters of the merged local and
// dynamic configuration and reloads it (spec/config.md §2). Parameters that
// need a restart show up as pending_restart.
func (d *daemon) applyConfig(ctx context.Context, cl *dcs.Cluster) {
	dyn, err := config.ParseDynamic(cl.Config.Raw)
	if err != nil {
		d.log.Warn("dynamic configuration not applied", "err", err)
		d.lastRaw = cl.Config.Raw
		return
	}
	eff, _ := config.Effective(d.cfg.Load(), dyn)
	s, _ := dyn.Settings() // warnings were logged when the configuration was read
	d.pga.SetStandby(s.StandbyCluster)
	params := map[string]string{}
	for k, v := range eff.RoleParameters("") {
		params[k] = gucString(v)
	}
	for k, v := range eff.PostgreSQL.Parameters {
		params[k] = gucString(v)
	}
	d.pg.SetParameters(params)
	d.lastRaw = cl.Config.Raw
	if !d.pg.IsRunning() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ch, err := d.pg.Reload(rctx, d.upstream(cl))
	if err != nil && !errors.Is(err, postgres.ErrNotRunning) {
		d.log.Warn("reload postgres", "err", err)
		return
	}
	if ch.Changed() {
		d.log.Info("applied configuration", "params", ch.Params, "needs_restart", ch.NeedsRestart)
	}
}

func (d *daemon) refreshStatus(ctx context.Context) *dcs.Cluster {
	c := d.cfg.Load()
	hs := d.node.Status()
	s := api.Status{Name: c.Name, Scope: c.Scope, Tags: c.Tags.Published()}
	if hs != nil {
		s.State, s.Role = hs.State, hs.Role
		s.Timeline = hs.Timeline
		s.LeaderUntil = hs.LeaseValidUntil
		s.DCSLastSeen = hs.UpdatedAt
		s.WatchdogFailed = hs.WatchdogFailed
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// A stopped server has nothing to report here, and reading its
	// pg_controldata is a process per refresh.
	var st postgres.State
	var err error
	if d.pg.IsRunning() {
		st, err = d.pg.State(qctx)
	}
	if err == nil && st.Running && st.Accepting {
		s.QueryOK = true
		s.PostmasterStartTime = st.PostmasterStart
		s.Timeline = d.pga.ReplicaTimeline(st)
		if st.InRecovery {
			if s.Role == "" || s.Role == "primary" {
				s.Role = "replica"
			}
			s.ReceivedLocation, s.ReplayedLocation = st.ReceiveLSN, st.ReplayLSN
			s.ReplayPaused = st.ReplayPaused
			if st.WALReceiver != nil && st.WALReceiver.Status == "streaming" {
				s.ReplicationState = "streaming"
			} else {
				s.ReplicationState = "in archive recovery"
			}
		} else {
			s.Role = "primary"
			s.XLogLocation = st.WALLSN
		}
		s.SystemID = st.SystemID
		for _, r := range st.Replication {
			s.Replication = append(s.Replication, api.Replication{
				Usename: "", ApplicationName: r.ApplicationName, State: r.State, SyncState: r.SyncState,
			})
		}
		s.ServerVersion = d.serverVersion(qctx, st.PostmasterStart)
		// The loop says "starting" until its next cycle after the start
		// returned; Postgres answering queries is running already.
		if s.State == "" || s.State == "starting" {
			s.State = "running"
		}
	} else if hs != nil && hs.State == "running" {
		s.State = "unknown"
	}
	// Publish what Postgres and the HA loop say now, with the previous
	// DCS view, before the slower DCS read and pending-restart query: a
	// promotion or crash shows in health checks a round trip earlier.
	if prev := d.status.Load(); prev != nil {
		early := s
		early.Cluster, early.DCSLastSeen, early.Global = prev.Cluster, prev.DCSLastSeen, prev.Global
		early.PendingRestart, early.PendingRestartReason = prev.PendingRestart, prev.PendingRestartReason
		early.ScheduledRestart = prev.ScheduledRestart
		d.publishStatus(&early)
	}
	cl, err := d.store.Cluster(qctx)
	if err == nil {
		s.Cluster = cl
		s.DCSLastSeen = time.Now()
		if cl.Config != nil {
			if dyn, err := config.ParseDynamic(cl.Config.Raw); err == nil {
				s.Global, _ = dyn.Settings()
			}
		}
	}
	s.ScheduledRestart = d.node.ScheduledRestart()
	if s.QueryOK {
		if reason, err := hapostgres.PendingRestart(qctx, d.pg); err == nil && reason != nil {
			s.PendingRestart, s.PendingRestartReason = true, reason
		}
	}
	d.publishStatus(&s)
	return cl
}

// publishStatus stores s for the REST API (statusLoop goroutine only) and
// logs at debug level when GET /primary changes its answer.
func (d *daemon) publishStatus(s *api.Status) {
	d.status.Store(s)
	if ready := time.Now().Before(s.LeaderUntil) && s.Role == "primary" && s.State == "running"; ready != d.primaryReady {
		d.primaryReady = ready
		d.log.Debug("status published", "primary", ready, "role", s.Role, "state", s.State)
	}
}

// serverVersion returns server_version_num, read once per postmaster
// (statusLoop goroutine only).
func (d *daemon) serverVersion(ctx context.Context, pmStart time.Time) int {
	if d.versionNum != 0 && pmStart.Equal(d.versionPM) {
		return d.versionNum
	}
	var v string
	if err := d.pg.QueryRow(ctx, "SELECT current_setting('server_version_num')", nil, &v); err != nil {
		if major, err := d.pg.MajorVersion(ctx); err == nil {
			return major * 10000
		}
		return 0
	}
	d.versionNum, _ = strconv.Atoi(v)
	d.versionPM = pmStart
	return d.versionNum
}

// Status implements api.StatusSource.
func (d *daemon) Status() api.Status {
	if s := d.status.Load(); s != nil {
		return *s
	}
	return api.Status{State: "starting"}
}

// SharedStatus implements api.SharedStatusSource: the published status
// itself, which the status loop never modifies after storing it.
func (d *daemon) SharedStatus() *api.Status {
	if s := d.status.Load(); s != nil {
		return s
	}
	return &api.Status{State: "starting"}
}

// haRestart converts the API's restart request to ha's.
func haRestart(r api.RestartRequest) ha.RestartRequest {
	out := ha.RestartRequest{Role: r.Role, RestartPending: r.RestartPending, Timeout: r.Timeout, PostgresVersionText: r.PostgresVersion}
	if r.PostgresVersion != "" {
		out.PostgresVersion, _ = api.PostgresVersionToInt(r.PostgresVersion)
	}
	return out
}

// Restart implements api.Controller: the HA loop restarts Postgres in its
// role (spec/ha-loop.md §9.1) and this call waits for it.
func (d *daemon) Restart(ctx context.Context, r api.RestartRequest) error {
	err := d.node.Restart(ctx, haRestart(r))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ha.ErrStillStarting):
		return api.ErrStillStarting
	}
	if be, ok := errors.AsType[*ha.BusyError](err); ok {
		return &api.BusyError{Action: be.Op}
	}
	return err
}

// ScheduleRestart implements api.Controller: the HA loop keeps the
// schedule, publishes it in the member key and restarts at its time
// (spec/ha-loop.md §9.2).
func (d *daemon) ScheduleRestart(ctx context.Context, r api.RestartRequest) error {
	at := time.Now()
	if r.Schedule != nil {
		at = *r.Schedule
	}
	err := d.node.ScheduleRestart(at, haRestart(r))
	if errors.Is(err, ha.ErrRestartScheduled) {
		return api.ErrRestartScheduled
	}
	return err
}

// CancelScheduledRestart implements api.Controller.
func (d *daemon) CancelScheduledRestart(ctx context.Context) bool {
	return d.node.CancelScheduledRestart()
}

// Reload implements api.Controller (POST /reload, SIGHUP): re-read the
// local file and re-apply the configuration on the status goroutine.
func (d *daemon) Reload(ctx context.Context) {
	select {
	case d.reload <- struct{}{}:
	default:
	}
	d.node.Wake()
}

// Reinitialize implements api.Controller: the HA loop wipes the data
// directory and clones again (spec/ha-loop.md §9.3). The error text is the
// REST answer.
func (d *daemon) Reinitialize(ctx context.Context, r api.ReinitializeRequest) error {
	err := d.node.Reinitialize(ctx, ha.ReinitializeRequest{Force: r.Force, FromLeader: r.FromLeader})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ha.ErrNoLeader):
		return errors.New("Cluster has no leader, can not reinitialize")
	case errors.Is(err, ha.ErrIsLeader):
		return errors.New("I am the leader, can not reinitialize")
	}
	if be, ok := errors.AsType[*ha.BusyError](err); ok {
		return &api.BusyError{Action: be.Op}
	}
	return err
}

// Failsafe implements api.Controller: a heartbeat from the primary that
// cannot reach the DCS (spec/ha-loop.md §11); the answer carries this
// node's WAL position.
func (d *daemon) Failsafe(ctx context.Context, r api.FailsafeRequest) (*dcs.LSN, error) {
	lsn, err := d.node.Failsafe(ctx, ha.FailsafeHeartbeat{Name: r.Name, ConnURL: r.ConnURL, APIURL: r.APIURL, Slots: r.Slots})
	if err != nil {
		return nil, fmt.Errorf("failsafe: %w", err)
	}
	return lsn, nil
}

// Wake implements api.Controller.
func (d *daemon) Wake() { d.node.Wake() }

// Shutdown implements api.Controller (POST /sigterm).
func (d *daemon) Shutdown() { d.stop() }
