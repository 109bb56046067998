package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

// ctlError is a message printed as "Error: <message>" with exit code 1
// (spec/patronictl.md §1).
type ctlError struct{ msg string }

func (e *ctlError) Error() string { return e.msg }

func fail(format string, a ...any) error { return &ctlError{fmt.Sprintf(format, a...)} }

// ctl is one patronictl invocation.
type ctl struct {
	cfg      *config.Config
	insecure bool
	in       *bufio.Reader
	out      io.Writer
	now      func() time.Time
	h        *dcsHandle
	timeout  time.Duration
}

// args is a parsed command line: flags by canonical name, positionals.
type args struct {
	flags map[string][]string
	pos   []string
}

func (a args) has(name string) bool { _, ok := a.flags[name]; return ok }
func (a args) get(name string) string {
	if v := a.flags[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// parseArgs reads flags anywhere on the line. spec maps every accepted
// spelling to its canonical name; names ending in "=" take a value.
func parseArgs(in []string, spec map[string]string) (args, error) {
	a := args{flags: map[string][]string{}}
	for i := 0; i < len(in); i++ {
		s := in[i]
		if !strings.HasPrefix(s, "-") || s == "-" {
			a.pos = append(a.pos, s)
			continue
		}
		name, val, hasVal := strings.Cut(s, "=")
		canon, ok := spec[name]
		if !ok {
			return a, fail("No such option: %s", name)
		}
		if strings.HasSuffix(canon, "=") {
			canon = strings.TrimSuffix(canon, "=")
			if !hasVal {
				if i+1 >= len(in) {
					return a, fail("Option '%s' requires an argument.", name)
				}
				i++
				val = in[i]
			}
		}
		a.flags[canon] = append(a.flags[canon], val)
	}
	return a, nil
}

func runCtl(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := ctlMain(argv, stdin, stdout)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "Error:", err)
	return 1
}

var globalFlags = map[string]string{
	"-c": "config=", "--config-file": "config=", "-d": "dcs=", "--dcs-url": "dcs=", "--dcs": "dcs=",
	"-k": "insecure", "--insecure": "insecure",
}

func ctlMain(argv []string, stdin io.Reader, stdout io.Writer) error {
	// Global flags come before the subcommand.
	var global []string
	i := 0
	for ; i < len(argv) && strings.HasPrefix(argv[i], "-"); i++ {
		global = append(global, argv[i])
		if c := globalFlags[argv[i]]; strings.HasSuffix(c, "=") && !strings.Contains(argv[i], "=") && i+1 < len(argv) {
			i++
			global = append(global, argv[i])
		}
	}
	g, err := parseArgs(global, globalFlags)
	if err != nil {
		return err
	}
	if i >= len(argv) {
		return fail("Missing command. Commands: list, topology, switchover, failover, show-config, edit-config, pause, resume, history, restart, reload, reinit, remove, dsn, query, flush, version, demote-cluster, promote-cluster")
	}
	cmd, rest := argv[i], argv[i+1:]
	c, err := ctlConfig(g.get("config"), g.get("dcs"))
	if err != nil {
		return err
	}
	x := &ctl{cfg: c, insecure: g.has("insecure") || c.Ctl.Insecure, in: bufio.NewReader(stdin), out: stdout, now: time.Now, timeout: 10 * time.Second}
	defer func() {
		if x.h != nil {
			x.h.Close()
		}
	}()
	switch cmd {
	case "list", "ls":
		return x.list(rest, false)
	case "topology":
		return x.list(rest, true)
	case "switchover":
		return x.switchover(rest, false)
	case "failover":
		return x.switchover(rest, true)
	case "show-config":
		return x.showConfig(rest)
	case "edit-config":
		return x.editConfig(rest)
	case "pause":
		return x.pause(rest, true)
	case "resume":
		return x.pause(rest, false)
	case "history":
		return x.history(rest)
	case "restart":
		return x.restart(rest)
	case "reload":
		return x.reload(rest)
	case "reinit":
		return x.reinit(rest)
	case "remove":
		return x.remove(rest)
	case "dsn":
		return x.dsn(rest)
	case "query":
		return x.query(rest)
	case "flush":
		return x.flush(rest)
	case "version":
		return x.version(rest)
	case "demote-cluster":
		return x.changeClusterRole(rest, true)
	case "promote-cluster":
		return x.changeClusterRole(rest, false)
	}
	return fail("No such command '%s'.", cmd)
}

// ctlConfig loads the ctl configuration (spec/patronictl.md §1).
func ctlConfig(path, dcsURL string) (*config.Config, error) {
	explicit := path != ""
	if !explicit {
		path = os.Getenv("PATRONICTL_CONFIG_FILE")
		explicit = path != ""
	}
	if !explicit {
		if dir, err := os.UserConfigDir(); err == nil {
			path = filepath.Join(dir, "patroni", "patronictl.yaml")
		}
	}
	if _, err := os.Stat(path); err != nil {
		if explicit {
			return nil, fail("Provided config file %s not existing or no read rights. Check the -c/--config-file parameter", path)
		}
		path = ""
	}
	c, _, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, fail("%v", err)
	}
	if dcsURL == "" {
		dcsURL = os.Getenv("DCS_URL")
	}
	if dcsURL != "" {
		if err := applyDCSURL(c, dcsURL); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// applyDCSURL replaces the DCS section with [SCHEME://][HOST][:PORT][/NAMESPACE].
func applyDCSURL(c *config.Config, s string) error {
	scheme := ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, s = s[:i], s[i+3:]
	}
	hostport, ns, _ := strings.Cut(s, "/")
	host, portStr, hasPort := strings.Cut(hostport, ":")
	if host == "" {
		host = "localhost"
	}
	ports := map[string]string{"etcd": "2379", "etcd3": "2379", "consul": "8500", "zookeeper": "2181", "exhibitor": "8181"}
	if scheme == "" {
		scheme = "etcd"
		for k, v := range ports {
			if hasPort && v == portStr && k != "etcd3" {
				scheme = k
			}
		}
	}
	def, ok := ports[scheme]
	if !ok {
		return fail("Unknown dcs scheme: %s", scheme)
	}
	if !hasPort {
		portStr = def
	}
	addr := host + ":" + portStr
	c.Etcd, c.Etcd3, c.Consul, c.ZooKeeper, c.Raft, c.Exhibitor, c.Kubernetes = nil, nil, nil, nil, nil, nil, nil
	switch scheme {
	case "etcd", "etcd3":
		c.Etcd3 = &config.Etcd{Host: addr}
	case "consul":
		c.Consul = &config.Consul{Host: addr}
	case "zookeeper":
		c.ZooKeeper = &config.ZooKeeper{Hosts: []string{addr}}
	default:
		return fail("dcs scheme %s is not supported", scheme)
	}
	if ns != "" {
		c.Namespace = "/" + ns
	}
	return nil
}

func (x *ctl) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), x.timeout)
}

func (x *ctl) store() (dcs.Store, error) {
	if x.h != nil {
		return x.h.store, nil
	}
	ctx, cancel := x.ctx()
	defer cancel()
	h, err := openDCS(ctx, x.cfg, "", 30*time.Second, false, nullLogger())
	if err != nil {
		return nil, fail("%v", err)
	}
	x.h = h
	return h.store, nil
}

func (x *ctl) cluster(name string) (*dcs.Cluster, error) {
	if name != "" && name != x.cfg.Scope {
		x.cfg.Scope = name
		if x.h != nil {
			x.h.Close()
			x.h = nil
		}
	}
	if x.cfg.Scope == "" {
		return nil, fail("Cluster name is required (argument or scope in the configuration)")
	}
	st, err := x.store()
	if err != nil {
		return nil, err
	}
	ctx, cancel := x.ctx()
	defer cancel()
	cl, err := st.Cluster(ctx)
	if err != nil {
		return nil, fail("read cluster %s: %v", x.cfg.Scope, err)
	}
	return cl, nil
}

func (x *ctl) client(m *dcs.Member) *api.Client {
	u, p := ctlAuth(x.cfg)
	return &api.Client{BaseURL: m.APIURL, Username: u, Password: p, Insecure: x.insecure}
}

func (x *ctl) confirm(prompt string, def bool) bool {
	d := "y/N"
	if def {
		d = "Y/n"
	}
	fmt.Fprintf(x.out, "%s [%s]: ", prompt, d)
	line, _ := x.in.ReadString('\n')
	line = strings.ToLower(strings.TrimSpace(line))
	if line == "" {
		return def
	}
	return line == "y" || line == "yes"
}

func (x *ctl) prompt(prompt, def string) string {
	if def != "" {
		fmt.Fprintf(x.out, "%s [%s]: ", prompt, def)
	} else {
		fmt.Fprintf(x.out, "%s: ", prompt)
	}
	line, _ := x.in.ReadString('\n')
	if line = strings.TrimSpace(line); line == "" {
		return def
	}
	return line
}

func ts(t time.Time) string { return t.Format("2006-01-02 15:04:05.000000") }

// notCandidate explains why cand cannot take over: patronictl's sentence
// (spec/patronictl.md §3.3), then which of its two cases applies and who
// can.
func notCandidate(cl *dcs.Cluster, cand, scope string, candidates []string) string {
	msg := fmt.Sprintf("Member %s does not exist in cluster %s or is tagged as nofailover", cand, scope)
	var why string
	if m := cl.Member(cand); m == nil {
		names := make([]string, 0, len(cl.Members))
		for _, m := range cl.Members {
			names = append(names, m.Name)
		}
		slices.Sort(names)
		why = fmt.Sprintf("no member named %s is registered (members: %s)", cand, strings.Join(names, ", "))
	} else {
		why = fmt.Sprintf("%s is tagged nofailover (or failover_priority 0), so it never becomes the leader", cand)
	}
	if len(candidates) > 0 {
		why += "; candidates: " + strings.Join(candidates, ", ")
	} else {
		why += "; no member can take over"
	}
	return msg + ": " + why
}

// ---- list / topology -------------------------------------------------

func (x *ctl) list(argv []string, topology bool) error {
	a, err := parseArgs(argv, map[string]string{
		"-e": "extended", "--extended": "extended", "-t": "timestamp", "--timestamp": "timestamp",
		"-f": "format=", "--format": "format=", "--group": "group=", "-W": "watch", "-w": "watch=", "--watch": "watch=",
	})
	if err != nil {
		return err
	}
	names := a.pos
	if len(names) == 0 {
		if x.cfg.Scope == "" {
			fmt.Fprintln(x.out, "Warning: Listing members: No cluster names were provided")
			return nil
		}
		names = []string{x.cfg.Scope}
	}
	format := a.get("format")
	if format == "" {
		format = "pretty"
	}
	if topology {
		format = "topology"
	}
	var every time.Duration
	if a.has("watch") {
		every = 2 * time.Second
		if v := a.get("watch"); v != "" {
			secs, err := strconv.ParseFloat(v, 64)
			if err != nil || secs <= 0 {
				return fail("Invalid value for '-w' / '--watch': %s", v)
			}
			every = time.Duration(secs * float64(time.Second))
		}
	}
	for {
		if every > 0 {
			fmt.Fprint(x.out, "\033[H\033[2J")
		}
		if a.has("timestamp") {
			fmt.Fprintln(x.out, x.now().Format("2006-01-02 15:04:05"))
		}
		for _, n := range names {
			cl, err := x.cluster(n)
			if err != nil {
				return err
			}
			if err := printCluster(x.out, cl, x.cfg.Scope, format, a.has("extended")); err != nil {
				return err
			}
		}
		if every == 0 {
			return nil
		}
		time.Sleep(every)
	}
}

// editInEditor opens the configuration in $EDITOR (then editor, vi) on a
// temporary file, as patronictl does (spec §3.10).
func editInEditor(scope string, cfg map[string]any) (map[string]any, error) {
	var editor string
	for _, e := range []string{os.Getenv("EDITOR"), "editor", "vi"} {
		if e == "" {
			continue
		}
		if _, err := exec.LookPath(strings.Fields(e)[0]); err == nil {
			editor = e
			break
		}
	}
	if editor == "" {
		return nil, fail("EDITOR environment variable is not set. editor or vi are not available")
	}
	f, err := os.CreateTemp("", scope+"-config-*.yaml")
	if err != nil {
		return nil, fail("temporary file: %v", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	text, err := dumpYAML(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(text); err != nil {
		return nil, fail("write %s: %v", f.Name(), err)
	}
	_ = f.Close()
	argv := append(strings.Fields(editor), f.Name())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fail("Editor exited with return code %d", ee.ExitCode())
		}
		return nil, fail("run editor %s: %v", editor, err)
	}
	return readYAMLFile(f.Name(), nil)
}

// ---- switchover / failover --------------------------------------------

func (x *ctl) switchover(argv []string, failover bool) error {
	a, err := parseArgs(argv, map[string]string{
		"--leader": "leader=", "--primary": "leader=", "--master": "leader=", "--candidate": "candidate=",
		"--scheduled": "scheduled=", "--force": "force", "--group": "group=",
	})
	if err != nil {
		return err
	}
	name := ""
	if len(a.pos) > 0 {
		name = a.pos[0]
	}
	cl, err := x.cluster(name)
	if err != nil {
		return err
	}
	scope := x.cfg.Scope
	force := a.has("force")
	fmt.Fprintln(x.out, "Current cluster topology")
	if err := printCluster(x.out, cl, scope, "pretty", false); err != nil {
		return err
	}
	leader := ""
	if cl.Leader != nil {
		leader = cl.Leader.Name
	}
	action := "switchover"
	if failover {
		action = "failover"
	}
	if !failover {
		if leader == "" {
			return fail("This cluster has no leader")
		}
		given := a.get("leader")
		if given == "" {
			given = leader
			if !force {
				given = x.prompt("Primary", leader)
			}
		}
		if given != leader {
			return fail("Member %s is not the leader of cluster %s", given, scope)
		}
	}
	var candidates []string
	for _, m := range cl.Members {
		if m.Name != leader && !m.NoFailover() {
			candidates = append(candidates, m.Name)
		}
	}
	slices.Sort(candidates)
	cand := a.get("candidate")
	if cand != "" && cand != leader && !slices.Contains(candidates, cand) {
		return fail("%s", notCandidate(cl, cand, scope, candidates))
	}
	if len(candidates) == 0 {
		return fail("No candidates found to %s to", action)
	}
	if cand == "" && !force {
		quoted := make([]string, len(candidates))
		for i, c := range candidates {
			quoted[i] = "'" + c + "'"
		}
		cand = x.prompt("Candidate ["+strings.Join(quoted, ", ")+"]", "")
	}
	if failover && cand == "" {
		return fail("Failover could be performed only to a specific candidate")
	}
	if cand != "" {
		if cand == leader {
			return fail("Member %s is already the leader of cluster %s", cand, scope)
		}
		if !slices.Contains(candidates, cand) {
			return fail("%s", notCandidate(cl, cand, scope, candidates))
		}
	}
	var at *time.Time
	if !failover {
		sched := a.get("scheduled")
		if sched == "" && !force {
			sched = x.prompt(fmt.Sprintf("When should the switchover take place (e.g. %s ) ", x.now().Add(time.Hour).Format("2006-01-02T15:04")), "now")
		}
		if sched != "" && sched != "now" {
			t, err := api.ParseSchedule(sched, "switchover", x.now())
			if err != nil {
				return fail("Unable to parse scheduled timestamp (%s). It should be in an unambiguous format (e.g. ISO 8601)", sched)
			}
			if cl.IsPaused() {
				return fail("Can't schedule switchover in the paused state")
			}
			at = &t
		}
	}
	if !force {
		q := fmt.Sprintf("Are you sure you want to %s cluster %s, demoting current leader %s?", action, scope, leader)
		if failover && leader == "" {
			q = fmt.Sprintf("Are you sure you want to failover cluster %s?", scope)
		}
		if at != nil {
			q = fmt.Sprintf("Are you sure you want to schedule switchover of cluster %s at %s, demoting current leader %s?", scope, at.Format(time.RFC3339), leader)
		}
		if !x.confirm(q, false) {
			if at != nil {
				return fail("Aborting scheduled switchover")
			}
			return fail("Aborting %s", action)
		}
	}
	target := leader
	if target == "" {
		target = cand
	}
	var resp *api.Response
	var callErr error
	if m := cl.Member(target); m != nil && m.APIURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if failover {
			resp, callErr = x.client(m).Failover(ctx, cand)
		} else {
			resp, callErr = x.client(m).Switchover(ctx, leader, cand, at)
		}
		cancel()
	} else {
		callErr = errors.New("no api_url")
	}
	if callErr != nil {
		fmt.Fprintf(x.out, "%s Could not %s using Patroni api, falling back to DCS\n", ts(x.now()), action)
		st, err := x.store()
		if err != nil {
			return err
		}
		f := &dcs.Failover{Candidate: cand, ScheduledAt: at}
		if !failover {
			f.Leader = leader
		}
		ctx, cancel := x.ctx()
		defer cancel()
		if _, err := st.SetFailover(ctx, f, ""); err != nil {
			return fail("write failover key: %v", err)
		}
	} else if resp.Code == 200 || resp.Code == 202 {
		fmt.Fprintf(x.out, "%s %s\n", ts(x.now()), resp.Text())
	} else {
		word := "failed"
		if strings.Contains(resp.Text(), "status unknown") {
			word = "result unknown"
		}
		t := "Switchover"
		if failover {
			t = "Failover"
		}
		return fail("%s %s, details: %d, %s", t, word, resp.Code, resp.Text())
	}
	cl, err = x.cluster("")
	if err != nil {
		return err
	}
	return printCluster(x.out, cl, scope, "pretty", false)
}

// ---- config ------------------------------------------------------------

func (x *ctl) showConfig(argv []string) error {
	a, err := parseArgs(argv, map[string]string{"--group": "group="})
	if err != nil {
		return err
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	if cl.Config == nil {
		return nil
	}
	out, err := dumpYAML(cloneAny(cl.Config.Data))
	if err != nil {
		return err
	}
	_, err = io.WriteString(x.out, out)
	return err
}

func first(s []string) string {
	if len(s) > 0 {
		return s[0]
	}
	return ""
}

func (x *ctl) editConfig(argv []string) error {
	a, err := parseArgs(argv, map[string]string{
		"-s": "set=", "--set": "set=", "-p": "pg=", "--pg": "pg=", "--force": "force", "-q": "quiet", "--quiet": "quiet",
		"--apply": "apply=", "--replace": "replace=", "--group": "group=",
	})
	if err != nil {
		return err
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	if cl.Config == nil {
		return fail("The config key does not exist in the cluster %s", x.cfg.Scope)
	}
	before, _ := cloneAny(cl.Config.Data).(map[string]any)
	after, _ := cloneAny(cl.Config.Data).(map[string]any)
	if before == nil {
		before, after = map[string]any{}, map[string]any{}
	}
	if f := a.get("replace"); f != "" {
		m, err := readYAMLFile(f, x.in)
		if err != nil {
			return err
		}
		after = m
	}
	if f := a.get("apply"); f != "" {
		m, err := readYAMLFile(f, x.in)
		if err != nil {
			return err
		}
		mergeInto(after, m)
	}
	for _, kv := range a.flags["pg"] {
		if err := setPath(after, "postgresql.parameters."+kv, kv); err != nil {
			return err
		}
	}
	for _, kv := range a.flags["set"] {
		if err := setPath(after, kv, kv); err != nil {
			return err
		}
	}
	if !a.has("set") && !a.has("pg") && !a.has("apply") && !a.has("replace") {
		edited, err := editInEditor(x.cfg.Scope, after)
		if err != nil {
			return err
		}
		after = edited
	}
	b, _ := dumpYAML(before)
	n, _ := dumpYAML(after)
	if b == n {
		if !a.has("quiet") {
			fmt.Fprintln(x.out, "Not changed")
		}
		return nil
	}
	if !a.has("quiet") {
		fmt.Fprint(x.out, unifiedDiff(b, n))
	}
	stdinUsed := a.get("apply") == "-" || a.get("replace") == "-"
	if !a.has("force") {
		if stdinUsed {
			fmt.Fprintln(x.out, "Use --force option to apply changes")
			return nil
		}
		if !x.confirm("Apply these changes?", false) {
			return nil
		}
	}
	data, err := jsonMarshal(after)
	if err != nil {
		return err
	}
	st, err := x.store()
	if err != nil {
		return err
	}
	ctx, cancel := x.ctx()
	defer cancel()
	if _, err := st.SetConfig(ctx, data, cl.Config.Version); err != nil {
		if errors.Is(err, dcs.ErrConflict) {
			return fail("Config modification aborted due to concurrent changes")
		}
		return fail("write config: %v", err)
	}
	fmt.Fprintln(x.out, "Configuration changed")
	return nil
}

// ---- pause / resume ------------------------------------------------------

func (x *ctl) pause(argv []string, pause bool) error {
	a, err := parseArgs(argv, map[string]string{"--wait": "wait", "--group": "group="})
	if err != nil {
		return err
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	word := "paused"
	if !pause {
		word = "resumed"
	}
	if cl.IsPaused() == pause {
		if pause {
			return fail("Cluster is already paused")
		}
		return fail("Cluster is not paused")
	}
	var body map[string]any
	if pause {
		body = map[string]any{"pause": true}
	} else {
		body = map[string]any{"pause": nil}
	}
	var sent bool
	for _, m := range leaderFirst(cl) {
		if m.APIURL == "" {
			continue
		}
		ctx, cancel := x.ctx()
		resp, err := x.client(m).Do(ctx, "PATCH", "/config", nil, body)
		cancel()
		if err != nil {
			continue
		}
		sent = true
		if resp.Code != 200 {
			return fail("Failed: %s cluster management status code=%d, (%s)", strings.TrimSuffix(word, "d"), resp.Code, resp.Text())
		}
		break
	}
	if !sent {
		return fail("Can not find accessible cluster member")
	}
	if a.has("wait") {
		verb := "pause"
		if !pause {
			verb = "resume"
		}
		fmt.Fprintf(x.out, "'%s' request sent, waiting until it is recognized by all nodes\n", verb)
		loopWait := 10
		if cl.Config != nil {
			if d, err := config.ParseDynamic(cl.Config.Raw); err == nil {
				s, _ := d.Settings()
				loopWait = s.LoopWait
			}
		}
		deadline := x.now().Add(time.Duration(loopWait+1) * time.Second)
		for {
			cl2, err := x.cluster("")
			if err == nil {
				done := true
				for _, m := range cl2.Members {
					if m.APIURL != "" && m.Pause != pause {
						done = false
					}
				}
				if done {
					break
				}
			}
			if x.now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	fmt.Fprintf(x.out, "Success: cluster management is %s\n", word)
	return nil
}

func leaderFirst(cl *dcs.Cluster) []*dcs.Member {
	var out []*dcs.Member
	if cl.Leader != nil {
		if m := cl.Member(cl.Leader.Name); m != nil {
			out = append(out, m)
		}
	}
	for _, m := range cl.Members {
		if cl.Leader == nil || m.Name != cl.Leader.Name {
			out = append(out, m)
		}
	}
	return out
}

// ---- history --------------------------------------------------------------

func (x *ctl) history(argv []string) error {
	a, err := parseArgs(argv, map[string]string{"-f": "format=", "--format": "format=", "--group": "group="})
	if err != nil {
		return err
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	t := table{header: []string{"TL", "LSN", "Reason", "Timestamp", "New Leader"}, right: map[int]bool{0: true, 1: true}}
	if cl.History != nil {
		for _, l := range cl.History.Lines {
			t.rows = append(t.rows, []string{strconv.Itoa(l.Timeline), strconv.FormatUint(uint64(l.LSN), 10), l.Reason, l.Timestamp, l.NewLeader})
		}
	}
	f := a.get("format")
	if f == "" {
		f = "pretty"
	}
	return t.write(x.out, f, "")
}

// ---- member actions -------------------------------------------------------

// members selects the named members (all when none) with role filter.
func (x *ctl) members(cl *dcs.Cluster, names []string, role string) ([]*dcs.Member, error) {
	if len(cl.Members) == 0 {
		return nil, fail("%s cluster doesn't have any members", x.cfg.Scope)
	}
	for _, n := range names {
		if cl.Member(n) == nil {
			return nil, fail("%s is not a member of cluster", n)
		}
	}
	var out []*dcs.Member
	for _, m := range cl.Members {
		if len(names) > 0 && !slices.Contains(names, m.Name) {
			continue
		}
		if !roleMatches(cl, m, role) {
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fail("No %s among provided members", role)
	}
	return out, nil
}

func roleMatches(cl *dcs.Cluster, m *dcs.Member, role string) bool {
	isLeader := cl.Leader != nil && cl.Leader.Name == m.Name
	switch role {
	case "", "any":
		return true
	case "leader":
		return isLeader
	case "primary", "master":
		return isLeader && m.Role != "standby_leader"
	case "standby-leader":
		return isLeader && m.Role != "primary" && m.Role != "master"
	case "replica", "standby":
		return !isLeader
	}
	return false
}

func memberNames(ms []*dcs.Member) string {
	n := make([]string, len(ms))
	for i, m := range ms {
		n[i] = m.Name
	}
	return strings.Join(n, ", ")
}

// errNoClusterName is the usage error of commands that need the cluster
// name as their first argument.
const errNoClusterName = "Missing argument 'CLUSTER_NAME'."

// clusterCommand parses the arguments of a command whose first positional
// argument names the cluster, and reads that cluster. Fewer than minArgs
// positional arguments fail with usage.
func (x *ctl) clusterCommand(argv []string, spec map[string]string, minArgs int, usage string) (args, *dcs.Cluster, error) {
	a, err := parseArgs(argv, spec)
	if err != nil {
		return a, nil, err
	}
	if len(a.pos) < minArgs {
		return a, nil, fail("%s", usage)
	}
	cl, err := x.cluster(a.pos[0])
	return a, cl, err
}

// showMembers selects members as members does and prints the cluster
// table, which patronictl shows before it asks for confirmation.
func (x *ctl) showMembers(cl *dcs.Cluster, names []string, role string) ([]*dcs.Member, error) {
	ms, err := x.members(cl, names, role)
	if err != nil {
		return nil, err
	}
	if err := printCluster(x.out, cl, x.cfg.Scope, "pretty", false); err != nil {
		return nil, err
	}
	return ms, nil
}

// request is one call to a member's REST API, such as (*api.Client).Reload.
type request func(c *api.Client, ctx context.Context) (*api.Response, error)

// ask sends req to member m, bounded by timeout.
func (x *ctl) ask(m *dcs.Member, timeout time.Duration, req request) (*api.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return req(x.client(m), ctx)
}

// askMembers sends req to each member in turn, each bounded by timeout,
// and prints one line per answer: says[code] (a format taking the member
// name) for an expected status code, otherwise patronictl's "Failed:
// <action> for member <m>, status code=<code>, (<body>)", with code 0 and
// the error when the request itself failed.
func (x *ctl) askMembers(ms []*dcs.Member, action string, timeout time.Duration, says map[int]string, req request) {
	for _, m := range ms {
		resp, err := x.ask(m, timeout, req)
		switch {
		case err != nil:
			fmt.Fprintf(x.out, "Failed: %s for member %s, status code=0, (%v)\n", action, m.Name, err)
		case says[resp.Code] != "":
			fmt.Fprintf(x.out, says[resp.Code]+"\n", m.Name)
		default:
			fmt.Fprintf(x.out, "Failed: %s for member %s, status code=%d, (%s)\n", action, m.Name, resp.Code, resp.Text())
		}
	}
}

func (x *ctl) restart(argv []string) error {
	a, cl, err := x.clusterCommand(argv, map[string]string{
		"-r": "role=", "--role": "role=", "--any": "any", "--pg-version": "pgversion=", "--pending": "pending",
		"--timeout": "timeout=", "--scheduled": "scheduled=", "--force": "force", "--group": "group=",
	}, 1, errNoClusterName)
	if err != nil {
		return err
	}
	ms, err := x.showMembers(cl, a.pos[1:], a.get("role"))
	if err != nil {
		return err
	}
	if a.has("any") && len(ms) > 1 {
		ms = ms[:1]
	}
	force := a.has("force")
	sched := a.get("scheduled")
	if sched == "" && !force {
		sched = x.prompt(fmt.Sprintf("When should the restart take place (e.g. %s) ", x.now().Add(time.Hour).Format("2006-01-02T15:04")), "now")
	}
	var at *time.Time
	if sched != "" && sched != "now" {
		t, err := api.ParseSchedule(sched, "restart", x.now())
		if err != nil {
			return fail("Unable to parse scheduled timestamp (%s). It should be in an unambiguous format (e.g. ISO 8601)", sched)
		}
		if cl.IsPaused() {
			return fail("Can't schedule restart in the paused state")
		}
		at = &t
	}
	if a.has("pending") && at == nil {
		var keep []*dcs.Member
		for _, m := range ms {
			if m.PendingRestart || x.apiPending(m) {
				keep = append(keep, m)
			}
		}
		ms = keep
	}
	pgv := a.get("pgversion")
	if !force {
		q := fmt.Sprintf("Are you sure you want to restart members %s?", memberNames(ms))
		if at != nil {
			q = fmt.Sprintf("Are you sure you want to schedule restart of members %s at %s?", memberNames(ms), at.Format(time.RFC3339))
		}
		if !x.confirm(q, false) {
			if at != nil {
				return fail("Aborted scheduled restart")
			}
			return fail("Aborted restart")
		}
		if pgv == "" {
			pgv = x.prompt("Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ", "")
		}
	}
	if pgv != "" {
		if _, err := api.PostgresVersionToInt(pgv); err != nil {
			return fail("%s is not a valid PostgreSQL version", pgv)
		}
	}
	opts := api.RestartOptions{RestartPending: a.has("pending"), PostgresVersion: pgv, Schedule: at}
	if t := a.get("timeout"); t != "" {
		secs, ok := config.ParseSeconds(t)
		if !ok {
			return fail("invalid timeout %s", t)
		}
		opts.Timeout = time.Duration(secs * float64(time.Second))
	}
	says := map[int]string{
		200: "Success: restart on member %s",
		202: "Success: restart scheduled on member %s",
		409: "Failed: another restart is already scheduled on member %s",
	}
	x.askMembers(ms, "restart", 5*time.Minute, says, func(c *api.Client, ctx context.Context) (*api.Response, error) {
		if force && at != nil {
			_, _ = c.CancelRestart(ctx)
		}
		return c.Restart(ctx, opts)
	})
	return nil
}

func (x *ctl) reload(argv []string) error {
	a, cl, err := x.clusterCommand(argv, map[string]string{"-r": "role=", "--role": "role=", "--force": "force", "--group": "group="},
		1, errNoClusterName)
	if err != nil {
		return err
	}
	ms, err := x.showMembers(cl, a.pos[1:], a.get("role"))
	if err != nil {
		return err
	}
	if !a.has("force") && !x.confirm(fmt.Sprintf("Are you sure you want to reload members %s?", memberNames(ms)), false) {
		return fail("Aborted reload")
	}
	loopWait := 10
	if cl.Config != nil {
		if d, err := config.ParseDynamic(cl.Config.Raw); err == nil {
			s, _ := d.Settings()
			loopWait = s.LoopWait
		}
	}
	x.askMembers(ms, "reload", x.timeout, map[int]string{
		200: "No changes to apply on member %s",
		202: "Reload request received for member %s and will be processed within " + strconv.Itoa(loopWait) + " seconds",
	}, (*api.Client).Reload)
	return nil
}

func (x *ctl) reinit(argv []string) error {
	a, cl, err := x.clusterCommand(argv, map[string]string{"--force": "force", "--from-leader": "fromleader", "--wait": "wait", "--group": "group="},
		1, errNoClusterName)
	if err != nil {
		return err
	}
	names := a.pos[1:]
	if len(names) == 0 {
		if a.has("force") {
			return nil
		}
		names = []string{x.prompt("Which member do you want to reinitialize", "")}
	}
	ms, err := x.members(cl, names, "replica")
	if err != nil {
		return err
	}
	if !a.has("force") && !x.confirm(fmt.Sprintf("Are you sure you want to reinitialize members %s?", memberNames(ms)), false) {
		return fail("Aborted reinitialize")
	}
	x.askMembers(ms, "reinitialize", x.timeout, map[int]string{200: "Success: reinitialize for member %s"},
		func(c *api.Client, ctx context.Context) (*api.Response, error) {
			return c.Reinitialize(ctx, a.has("force"), a.has("fromleader"))
		})
	return nil
}

func (x *ctl) remove(argv []string) error {
	_, cl, err := x.clusterCommand(argv, map[string]string{"-f": "format=", "--format": "format=", "--group": "group="},
		1, errNoClusterName)
	if err != nil {
		return err
	}
	if err := printCluster(x.out, cl, x.cfg.Scope, "pretty", false); err != nil {
		return err
	}
	if x.prompt("Please confirm the cluster name to remove", "") != x.cfg.Scope {
		return fail("Cluster names specified do not match")
	}
	if x.prompt(fmt.Sprintf("You are about to remove all information in DCS for %s, please type: \"Yes I am aware\"", x.cfg.Scope), "") != "Yes I am aware" {
		return fail("You did not exactly type \"Yes I am aware\"")
	}
	if cl.Leader != nil && x.prompt("This cluster currently is healthy. Please specify the leader name to continue", "") != cl.Leader.Name {
		return fail("You did not specify the current leader of the cluster")
	}
	st, err := x.store()
	if err != nil {
		return err
	}
	ctx, cancel := x.ctx()
	defer cancel()
	if err := st.DeleteCluster(ctx); err != nil {
		return fail("remove cluster %s: %v", x.cfg.Scope, err)
	}
	return nil
}

func (x *ctl) pickMember(cl *dcs.Cluster, role, member string) *dcs.Member {
	if member != "" {
		return cl.Member(member)
	}
	if role == "" {
		role = "leader"
	}
	for _, m := range leaderFirst(cl) {
		if roleMatches(cl, m, role) && m.ConnURL != "" {
			return m
		}
	}
	return nil
}

func (x *ctl) dsn(argv []string) error {
	a, err := parseArgs(argv, map[string]string{"-r": "role=", "--role": "role=", "-m": "member=", "--member": "member=", "--group": "group="})
	if err != nil {
		return err
	}
	if a.has("role") && a.has("member") {
		return fail("--role and --member are mutually exclusive options")
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	m := x.pickMember(cl, a.get("role"), a.get("member"))
	if m == nil || m.ConnURL == "" {
		return fail("Can not find a suitable member")
	}
	u, err := url.Parse(m.ConnURL)
	if err != nil {
		return fail("bad conn_url %s of %s", m.ConnURL, m.Name)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	fmt.Fprintf(x.out, "host=%s port=%s\n", u.Hostname(), port)
	return nil
}

func (x *ctl) flush(argv []string) error {
	a, cl, err := x.clusterCommand(argv, map[string]string{"-r": "role=", "--role": "role=", "--force": "force", "--group": "group="},
		2, "Usage: flush CLUSTER_NAME [MEMBER ...] {restart|switchover}")
	if err != nil {
		return err
	}
	target := a.pos[len(a.pos)-1]
	switch target {
	case "restart":
		ms, err := x.members(cl, a.pos[1:len(a.pos)-1], a.get("role"))
		if err != nil {
			return err
		}
		if !a.has("force") && !x.confirm(fmt.Sprintf("Are you sure you want to flush members %s?", memberNames(ms)), false) {
			return fail("Aborted flush")
		}
		for _, m := range ms {
			if m.ScheduledRestart == nil {
				fmt.Fprintf(x.out, "No scheduled restart for member %s\n", m.Name)
				continue
			}
			resp, err := x.ask(m, x.timeout, (*api.Client).CancelRestart)
			if err == nil && resp.Code == 200 {
				fmt.Fprintf(x.out, "Success: flush scheduled restart for member %s\n", m.Name)
			} else {
				fmt.Fprintf(x.out, "Failed: flush scheduled restart for member %s\n", m.Name)
			}
		}
		return nil
	case "switchover":
		if cl.Failover == nil || cl.Failover.ScheduledAt == nil {
			fmt.Fprintln(x.out, "No pending scheduled switchover")
			return nil
		}
		for _, m := range leaderFirst(cl) {
			if m.APIURL == "" {
				continue
			}
			resp, err := x.ask(m, x.timeout, (*api.Client).CancelSwitchover)
			if err != nil {
				continue
			}
			switch resp.Code {
			case 200:
				fmt.Fprintln(x.out, "Success: scheduled switchover deleted")
				return nil
			case 404:
				fmt.Fprintln(x.out, "Failed: no switchover is scheduled")
				return nil
			default:
				fmt.Fprintf(x.out, "Failed: member=%s, status_code=%d, (%s)\n", m.Name, resp.Code, resp.Text())
			}
		}
		fmt.Fprintf(x.out, "%s Could not find any accessible member of cluster %s\n", ts(x.now()), x.cfg.Scope)
		st, err := x.store()
		if err != nil {
			return err
		}
		ctx, cancel := x.ctx()
		defer cancel()
		if _, err := st.SetFailover(ctx, &dcs.Failover{}, cl.Failover.Version); err != nil {
			return fail("clear failover key: %v", err)
		}
		return nil
	}
	return fail("Invalid value for '{restart|switchover}': '%s'", target)
}

func (x *ctl) version(argv []string) error {
	fmt.Fprintf(x.out, "patronictl version %s\n", version)
	if len(argv) == 0 {
		return nil
	}
	cl, err := x.cluster(argv[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(x.out)
	for _, m := range cl.Members {
		if m.APIURL == "" || (len(argv) > 1 && !slices.Contains(argv[1:], m.Name)) {
			continue
		}
		ctx, cancel := x.ctx()
		doc, err := x.client(m).Patroni(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(x.out, "%s: failed to get version: %v\n", m.Name, err)
			continue
		}
		fmt.Fprintf(x.out, "%s: Patroni %s PostgreSQL %s\n", m.Name, doc.Patroni.Version, pgVersion(doc.ServerVersion))
	}
	return nil
}

func pgVersion(v int) string {
	if v >= 100000 {
		return fmt.Sprintf("%d.%d", v/10000, v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// apiPending asks a member's GET /patroni whether a restart is pending, for
// members whose DCS key does not say it.
func (x *ctl) apiPending(m *dcs.Member) bool {
	if m.APIURL == "" {
		return false
	}
	ctx, cancel := x.ctx()
	defer cancel()
	doc, err := x.client(m).Patroni(ctx)
	return err == nil && doc.PendingRestart
}

// ---- demote-cluster, promote-cluster --------------------------------------

// clusterRoleChange is what demote-cluster or promote-cluster does: the
// words of its messages and the role the leader has when it is done.
type clusterRoleChange struct {
	verb, noun, past, role string
}

var (
	demoteCluster  = clusterRoleChange{"demote", "demotion", "demoted", "standby_leader"}
	promoteCluster = clusterRoleChange{"promote", "promotion", "promoted", "primary"}
)

// changeClusterRole turns the cluster into a standby cluster following a
// remote primary (demote-cluster) or back into a primary cluster
// (promote-cluster) through the dynamic configuration's standby_cluster
// section, then follows the leader's role in the DCS until the change is
// done (spec/patronictl.md §3.17, §3.18).
func (x *ctl) changeClusterRole(argv []string, demote bool) error {
	rc, spec := promoteCluster, map[string]string{"--force": "force"}
	if demote {
		rc = demoteCluster
		spec["--host"], spec["--port"] = "host=", "port="
		spec["--restore-command"], spec["--primary-slot-name"] = "restore-command=", "primary-slot-name="
	}
	a, err := parseArgs(argv, spec)
	if err != nil {
		return err
	}
	var standby map[string]any // nil: remove the section (promote)
	if demote {
		standby = map[string]any{}
		if h := a.get("host"); h != "" {
			standby["host"] = h
		}
		if p := a.get("port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return fail("Invalid value for '--port': '%s' is not a valid port.", p)
			}
			standby["port"] = n
		}
		if r := a.get("restore-command"); r != "" {
			standby["restore_command"] = r
		}
		if len(standby) == 0 {
			return fail("At least --host, --port or --restore-command should be specified")
		}
		if s := a.get("primary-slot-name"); s != "" {
			standby["primary_slot_name"] = s
		}
	}
	name := first(a.pos)
	cl, err := x.cluster(name)
	if err != nil {
		return err
	}
	if name == "" {
		name = x.cfg.Scope
	}
	var leader *dcs.Member
	if cl.Leader != nil {
		leader = cl.Member(cl.Leader.Name)
	}
	if leader == nil {
		return fail("Cluster has no leader, %s is not possible", rc.noun)
	}
	if sameRole(leader.Role, rc.role) {
		return fail("Cluster is already in the required state")
	}
	if err := printCluster(x.out, cl, x.cfg.Scope, "topology", false); err != nil {
		return err
	}
	if !a.has("force") && !x.confirm(fmt.Sprintf("Are you sure you want to %s %s cluster?", rc.verb, name), false) {
		return fail("Aborted cluster %s", rc.noun)
	}
	ctx, cancel := x.ctx()
	resp, err := x.client(leader).Do(ctx, "PATCH", "/config", nil, map[string]any{"standby_cluster": standby})
	cancel()
	if err != nil {
		return fail("Failed to %s %s cluster: %v", rc.verb, name, err)
	}
	if resp.Code != 200 {
		// patronictl repeats the prefix here; kept for scripts that match it.
		return fail("Failed to %s %s cluster: Failed to %s %s cluster: /config PATCH status code=%d, (%s)",
			rc.verb, name, rc.verb, name, resp.Code, resp.Text())
	}
	for {
		time.Sleep(time.Second)
		cl, err = x.cluster(name)
		if err != nil {
			fmt.Fprintf(x.out, "%s %v\n", ts(x.now()), err)
			continue
		}
		var now *dcs.Member
		if cl.Leader != nil {
			now = cl.Member(cl.Leader.Name)
		}
		line := fmt.Sprintf("%s cluster is unlocked: %s, leader role: %s, leader state: %s",
			ts(x.now()), pyBool(now == nil), roleOf(now), stateOf(now))
		old := cl.Member(leader.Name)
		if now == nil || now.Name != leader.Name {
			line += fmt.Sprintf(", previous leader state: '%s'", stateOf(old))
		}
		fmt.Fprintln(x.out, line)
		if now != nil && sameRole(now.Role, rc.role) && now.State == "running" && old != nil && old.State == "running" {
			break
		}
	}
	fmt.Fprintf(x.out, "%s cluster is successfully %s\n", ts(x.now()), rc.past)
	return printCluster(x.out, cl, x.cfg.Scope, "topology", false)
}

// sameRole compares member roles, taking Patroni's older "master" for
// "primary".
func sameRole(a, b string) bool {
	norm := func(r string) string {
		if r == "master" {
			return "primary"
		}
		return r
	}
	return norm(a) == norm(b)
}

// pyBool prints a boolean as patronictl (Python) does.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func roleOf(m *dcs.Member) string {
	if m == nil {
		return "None"
	}
	return m.Role
}

func stateOf(m *dcs.Member) string {
	if m == nil {
		return "None"
	}
	return m.State
}

// ctlAuth returns the Basic auth for outbound REST calls: ctl.authentication,
// else restapi.authentication.
func ctlAuth(c *config.Config) (string, string) {
	if a := c.Ctl.Authentication; a != nil && a.Username != "" {
		return a.Username, a.Password
	}
	if a := c.RestAPI.Authentication; a != nil {
		return a.Username, a.Password
	}
	return "", ""
}
