package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

func (h *Handler) getCluster(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	c, err := h.freshCluster(r.Context(), st)
	if err != nil {
		writeError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	writeJSON(w, 200, BuildClusterDocument(c, st.Scope))
}

// snapshot returns the published DCS snapshot, or a fresh read when there
// is none yet.
func (h *Handler) snapshot(ctx context.Context, st *Status) (*dcs.Cluster, error) {
	if st.Cluster != nil {
		return st.Cluster, nil
	}
	return h.freshCluster(ctx, st)
}

func (h *Handler) getHistory(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	c, err := h.snapshot(r.Context(), st)
	lines := [][]any{}
	if err == nil && c.History != nil {
		for _, l := range c.History.Lines {
			line := []any{l.Timeline, uint64(l.LSN), l.Reason}
			if l.Timestamp != "" || l.NewLeader != "" {
				line = append(line, l.Timestamp)
			}
			if l.NewLeader != "" {
				line = append(line, l.NewLeader)
			}
			lines = append(lines, line)
		}
	}
	writeJSON(w, 200, lines)
}

func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	c, err := h.snapshot(r.Context(), st)
	if err != nil || !c.Config.Valid() || len(c.Config.Raw) == 0 {
		writeError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	writeRaw(w, 200, "application/json", c.Config.Raw)
}

func (h *Handler) getFailsafe(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	if st.Cluster == nil || st.Cluster.Failsafe == nil {
		writeError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	writeJSON(w, 200, st.Cluster.Failsafe)
}

func (h *Handler) patchConfig(w http.ResponseWriter, r *http.Request) {
	_, raw, ok := readBody(w, r, false)
	if !ok {
		return
	}
	st := h.status()
	if h.cfg.DCS == nil {
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	c, err := h.freshCluster(r.Context(), st)
	if err != nil || !c.Config.Valid() {
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	cur, err := config.ParseDynamic(c.Config.Raw)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	next, changed, err := cur.Patch(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Bad request")
		return
	}
	if changed {
		ctx, cancel := h.dcsContext(r.Context(), st)
		defer cancel()
		start := time.Now()
		_, err := h.cfg.DCS.SetConfig(ctx, next.JSON(), c.Config.Version)
		h.metrics.ObserveDCSCall("set_config", time.Since(start))
		if err != nil {
			writeError(w, http.StatusConflict, "Conflict")
			return
		}
		h.wake()
	}
	writeRaw(w, 200, "application/json", next.JSON())
}

func (h *Handler) putConfig(w http.ResponseWriter, r *http.Request) {
	_, raw, ok := readBody(w, r, false)
	if !ok {
		return
	}
	next, err := config.ParseDynamic(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Bad request")
		return
	}
	st := h.status()
	if h.cfg.DCS == nil {
		writeError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	c, err := h.freshCluster(r.Context(), st)
	same := false
	if err == nil && c.Config.Valid() {
		if cur, err := config.ParseDynamic(c.Config.Raw); err == nil {
			same = cur.Equal(next)
		}
	}
	if !same {
		ctx, cancel := h.dcsContext(r.Context(), st)
		defer cancel()
		start := time.Now()
		_, err := h.cfg.DCS.SetConfig(ctx, next.JSON(), "")
		h.metrics.ObserveDCSCall("set_config", time.Since(start))
		if err != nil {
			writeError(w, http.StatusBadGateway, "Bad Gateway")
			return
		}
		h.wake()
	}
	writeRaw(w, 200, "application/json", next.JSON())
}

func (h *Handler) wake() {
	if h.cfg.Controller != nil {
		h.cfg.Controller.Wake()
	}
}

func (h *Handler) postReload(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Controller != nil {
		h.cfg.Controller.Reload(r.Context())
	}
	writeText(w, http.StatusAccepted, "reload scheduled")
}

func (h *Handler) postSigterm(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Controller != nil {
		h.cfg.Controller.Shutdown()
	}
	writeText(w, http.StatusAccepted, "shutdown scheduled")
}

// RequestError is a request the API rejects before acting: Code and
// Message are the answer.
type RequestError struct {
	Code    int
	Message string
}

func (e *RequestError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

// ParseSchedule parses a scheduled timestamp for action ("restart" or
// "switchover"): ISO 8601 with a time zone, in the future.
func ParseSchedule(s, action string, now time.Time) (time.Time, error) {
	withTZ := []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02 15:04:05.999999999Z0700"}
	noTZ := []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04", "2006-01-02"}
	s = strings.TrimSpace(s)
	for _, l := range withTZ {
		if t, err := time.Parse(l, s); err == nil {
			if t.Before(now) {
				return time.Time{}, &RequestError{422, "Cannot schedule " + action + " in the past"}
			}
			return t, nil
		}
	}
	for _, l := range noTZ {
		if _, err := time.Parse(l, s); err == nil {
			return time.Time{}, &RequestError{400, "Timezone information is mandatory for the scheduled " + action}
		}
	}
	return time.Time{}, &RequestError{422, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"}
}

// PostgresVersionToInt converts "15.4" or "9.6.3" to server_version_num
// form (150004, 90603), as Patroni does.
func PostgresVersionToInt(v string) (int, error) {
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("invalid PostgreSQL version format %q: X.Y or X.Y.Z is required", v)
	}
	nums := make([]int, 0, 3)
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 99 {
			return 0, fmt.Errorf("invalid PostgreSQL version format %q: X.Y or X.Y.Z is required", v)
		}
		nums = append(nums, n)
	}
	if len(nums) == 2 {
		if nums[0] < 10 {
			return 0, fmt.Errorf("invalid PostgreSQL major version %q: X.Y.Z is required before 10", v)
		}
		nums = []int{nums[0], 0, nums[1]}
	}
	return nums[0]*10000 + nums[1]*100 + nums[2], nil
}

// ParseRestartRequest validates a POST /restart body (spec/rest-api.md §6).
func ParseRestartRequest(body map[string]any, now time.Time) (RestartRequest, error) {
	var rr RestartRequest
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains([]string{"schedule", "role", "postgres_version", "timeout", "restart_pending"}, k) {
			return rr, &RequestError{400, "Unknown filter for the scheduled restart: " + k}
		}
	}
	if v, ok := body["schedule"]; ok {
		s, _ := v.(string)
		t, err := ParseSchedule(s, "restart", now)
		if err != nil {
			return rr, err
		}
		rr.Schedule = &t
	}
	if v, ok := body["role"]; ok {
		s, _ := v.(string)
		if s == "master" {
			s = "primary"
		}
		if s != "primary" && s != "standby_leader" && s != "replica" {
			return rr, &RequestError{400, "PostgreSQL role should be either primary, standby_leader, or replica"}
		}
		rr.Role = s
	}
	if v, ok := body["postgres_version"]; ok {
		s := fmt.Sprint(v)
		if _, err := PostgresVersionToInt(s); err != nil {
			return rr, &RequestError{400, err.Error()}
		}
		rr.PostgresVersion = s
	}
	if v, ok := body["timeout"]; ok {
		secs, ok := config.ParseSeconds(fmt.Sprint(v))
		if !ok || secs <= 0 {
			return rr, &RequestError{400, "Timeout should be a positive number of seconds"}
		}
		rr.Timeout = time.Duration(secs * float64(time.Second))
	}
	if _, ok := body["restart_pending"]; ok {
		rr.RestartPending = true
	}
	return rr, nil
}

func writeRequestError(w http.ResponseWriter, err error) {
	if re, ok := errors.AsType[*RequestError](err); ok {
		writeText(w, re.Code, re.Message)
		return
	}
	writeText(w, http.StatusBadRequest, err.Error())
}

func (h *Handler) postRestart(w http.ResponseWriter, r *http.Request) {
	body, _, ok := readBody(w, r, true)
	if !ok {
		return
	}
	st := h.status()
	v := newView(st, h.clock.Now())
	rr, err := ParseRestartRequest(body, h.clock.Now())
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if rr.Schedule != nil && v.paused {
		writeText(w, http.StatusInternalServerError, "Can't schedule restart in the paused state")
		return
	}
	if h.cfg.Controller == nil {
		writeText(w, http.StatusServiceUnavailable, "restart failed")
		return
	}
	if rr.Schedule != nil {
		if err := h.cfg.Controller.ScheduleRestart(r.Context(), rr); err != nil {
			if errors.Is(err, ErrRestartScheduled) {
				writeText(w, http.StatusConflict, "Another restart is already scheduled")
				return
			}
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
		writeText(w, http.StatusAccepted, "Restart scheduled")
		return
	}
	if !restartMatches(st, rr) {
		writeText(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
		return
	}
	err = h.cfg.Controller.Restart(r.Context(), rr)
	switch {
	case err == nil:
		writeText(w, 200, "restarted successfully")
	case errors.Is(err, ErrStillStarting):
		writeText(w, http.StatusServiceUnavailable, "postgres is still starting")
	default:
		if be, ok := errors.AsType[*BusyError](err); ok {
			writeText(w, http.StatusServiceUnavailable, be.Error())
			return
		}
		writeText(w, http.StatusServiceUnavailable, "restart failed")
	}
}

// restartMatches checks a restart's conditions against the node.
func restartMatches(st *Status, rr RestartRequest) bool {
	if rr.Role != "" && rr.Role != st.Role {
		return false
	}
	if rr.PostgresVersion != "" {
		want, _ := PostgresVersionToInt(rr.PostgresVersion)
		if want <= st.ServerVersion {
			return false
		}
	}
	if rr.RestartPending && !st.PendingRestart {
		return false
	}
	return true
}

func (h *Handler) deleteRestart(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Controller != nil && h.cfg.Controller.CancelScheduledRestart(r.Context()) {
		writeText(w, 200, "scheduled restart deleted")
		return
	}
	writeText(w, http.StatusNotFound, "no restarts are scheduled")
}

func boolish(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1", "y":
			return true
		}
	case json.Number:
		f, err := x.Float64()
		return err == nil && f != 0
	}
	return false
}

func (h *Handler) postReinitialize(w http.ResponseWriter, r *http.Request) {
	body, _, ok := readBody(w, r, true)
	if !ok {
		return
	}
	req := ReinitializeRequest{Force: boolish(body["force"]), FromLeader: boolish(body["from_leader"])}
	st := h.status()
	c, err := h.freshCluster(r.Context(), st)
	if err != nil || !c.IsLocked() {
		writeText(w, http.StatusServiceUnavailable, "Cluster has no leader, can not reinitialize")
		return
	}
	if c.Leader.Name == st.Name || newView(st, h.clock.Now()).isLeader {
		writeText(w, http.StatusServiceUnavailable, "I am the leader, can not reinitialize")
		return
	}
	if h.cfg.Controller == nil {
		writeText(w, http.StatusServiceUnavailable, "reinitialize is not available")
		return
	}
	if err := h.cfg.Controller.Reinitialize(r.Context(), req); err != nil {
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeText(w, 200, "reinitialize started")
}

func (h *Handler) postFailsafe(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	if !st.Global.FailsafeMode {
		writeError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	body, raw, ok := readBody(w, r, false)
	if !ok {
		return
	}
	_ = body
	if st.Role == "primary" && st.State == "running" {
		writeText(w, http.StatusInternalServerError, "Running as a leader")
		return
	}
	req, err := parseFailsafe(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Bad request")
		return
	}
	if h.cfg.Controller == nil {
		writeText(w, http.StatusServiceUnavailable, "failsafe is not available")
		return
	}
	lsn, err := h.cfg.Controller.Failsafe(r.Context(), req)
	if err != nil {
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if lsn != nil {
		w.Header().Set("lsn", strconv.FormatUint(uint64(*lsn), 10))
	}
	writeText(w, 200, "Accepted")
}

// parseFailsafe reads a POST /failsafe body. name, conn_url and api_url
// must be strings when present. slots is read entry by entry and only
// non-negative integers are kept: a refused heartbeat makes the primary
// demote, and Patroni accepts the heartbeat whatever its slots hold.
func parseFailsafe(raw []byte) (FailsafeRequest, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return FailsafeRequest{}, fmt.Errorf("failsafe body: %w", err)
	}
	var req FailsafeRequest
	for key, dst := range map[string]*string{"name": &req.Name, "conn_url": &req.ConnURL, "api_url": &req.APIURL} {
		if v, ok := body[key]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return FailsafeRequest{}, fmt.Errorf("failsafe body %s: %w", key, err)
			}
		}
	}
	var slots map[string]json.RawMessage
	if json.Unmarshal(body["slots"], &slots) == nil {
		for name, v := range slots {
			if l, err := strconv.ParseUint(string(v), 10, 64); err == nil {
				if req.Slots == nil {
					req.Slots = map[string]dcs.LSN{}
				}
				req.Slots[name] = dcs.LSN(l)
			}
		}
	}
	return req, nil
}

func (h *Handler) postCitus(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := readBody(w, r, false); !ok {
		return
	}
	writeText(w, 200, "OK")
}

// SwitchoverRequest is a parsed POST /switchover or /failover body.
type SwitchoverRequest struct {
	Leader      string
	Candidate   string
	ScheduledAt *time.Time
}

// ParseSwitchoverRequest validates a switchover/failover body, steps 1-6
// of spec/rest-api.md §6 (failover=true for POST /failover). It reports
// whether the request is (or became) a switchover.
func ParseSwitchoverRequest(body map[string]any, failover, paused bool, now time.Time) (SwitchoverRequest, bool, error) {
	var sr SwitchoverRequest
	str := func(k string) string {
		if s, ok := body[k].(string); ok {
			return s
		}
		if v, ok := body[k]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	}
	sr.Leader = str("leader")
	sr.Candidate = str("candidate")
	if sr.Candidate == "" {
		sr.Candidate = str("member")
	}
	if failover && sr.Candidate == "" {
		return sr, false, &RequestError{400, "Failover could be performed only to a specific candidate"}
	}
	if !failover && sr.Leader == "" {
		return sr, false, &RequestError{400, "Switchover could be performed only from a specific leader"}
	}
	if v, ok := body["scheduled_at"]; ok && v != nil {
		if failover {
			return sr, false, &RequestError{400, "Failover can't be scheduled"}
		}
		if paused {
			return sr, false, &RequestError{400, "Can't schedule switchover in the paused state"}
		}
		s, _ := v.(string)
		t, err := ParseSchedule(s, "switchover", now)
		if err != nil {
			return sr, false, err
		}
		sr.ScheduledAt = &t
	}
	if paused && sr.Candidate == "" {
		return sr, false, &RequestError{400, "Switchover is possible only to a specific candidate in a paused state"}
	}
	switchover := !failover || sr.Leader != ""
	if sr.Leader != "" && sr.Leader == sr.Candidate {
		return sr, switchover, &RequestError{400, "Switchover target and source are the same"}
	}
	return sr, switchover, nil
}

// Prober asks a member for its status document (GET /patroni), as the
// switchover feasibility check does. Called from handler goroutines, in
// parallel.
type Prober interface {
	Probe(ctx context.Context, m *dcs.Member) (*StatusDocument, error)
}

// NewClientProber returns the Prober members use for each other: GET
// /patroni with a 2 s timeout, Basic auth from ctl.authentication (else
// restapi.authentication), and tlsCfg (ctl.certfile/keyfile as client
// certificate, ctl.cacert or restapi.cafile as CA). As Patroni does for
// member-to-member calls, the host name is never verified, and without a
// client certificate the server certificate is not verified at all
// (spec/rest-api.md §2.3).
func NewClientProber(tlsCfg *tls.Config, username, password string) Prober {
	return clientProber{tls: tlsCfg, user: username, pass: password}
}

type clientProber struct {
	tls        *tls.Config
	user, pass string
}

func (p clientProber) Probe(ctx context.Context, m *dcs.Member) (*StatusDocument, error) {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if p.tls != nil && len(p.tls.Certificates) > 0 {
		roots := p.tls.RootCAs
		cfg = p.tls.Clone()
		cfg.InsecureSkipVerify = true
		// Verify the chain but not the host name.
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots)
		}
	}
	c := &Client{BaseURL: strings.TrimSuffix(m.APIURL, "/patroni"), TLS: cfg, Username: p.user, Password: p.pass}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Patroni(ctx)
}

func (h *Handler) postSwitchover(w http.ResponseWriter, r *http.Request, failover bool) {
	body, _, ok := readBody(w, r, false)
	if !ok {
		return
	}
	st := h.status()
	v := newView(st, h.clock.Now())
	sr, switchover, err := ParseSwitchoverRequest(body, failover, v.paused, h.clock.Now())
	if err != nil {
		writeRequestError(w, err)
		return
	}
	action := "failover"
	if switchover {
		action = "switchover"
	}
	if h.cfg.DCS == nil {
		writeText(w, http.StatusServiceUnavailable, "failed to write failover key into DCS")
		return
	}
	c, err := h.freshCluster(r.Context(), st)
	if err != nil {
		writeText(w, http.StatusServiceUnavailable, "failed to read the cluster from DCS")
		return
	}
	if sr.ScheduledAt == nil {
		if code, msg := h.feasible(r.Context(), c, sr, action); code != 0 {
			writeText(w, code, msg)
			return
		}
	}
	oldLeader := ""
	if c.Leader != nil {
		oldLeader = c.Leader.Name
	}
	ctx, cancel := h.dcsContext(r.Context(), st)
	start := time.Now()
	_, err = h.cfg.DCS.SetFailover(ctx, &dcs.Failover{Leader: sr.Leader, Candidate: sr.Candidate, ScheduledAt: sr.ScheduledAt}, "")
	h.metrics.ObserveDCSCall("set_failover", time.Since(start))
	cancel()
	if err != nil {
		writeText(w, http.StatusServiceUnavailable, "failed to write failover key into DCS")
		return
	}
	h.wake()
	if sr.ScheduledAt != nil {
		writeText(w, http.StatusAccepted, "Switchover scheduled")
		return
	}
	code, msg := h.waitSwitchover(r.Context(), st, oldLeader, sr.Candidate, action)
	if code == 200 {
		if switchover {
			h.metrics.Switchovers.Inc()
		} else {
			h.metrics.Failovers.Inc()
		}
	}
	writeText(w, code, msg)
}

// feasible runs step 7 of spec/rest-api.md §6; code 0 means feasible.
func (h *Handler) feasible(ctx context.Context, c *dcs.Cluster, sr SwitchoverRequest, action string) (int, string) {
	var settings config.Settings
	if c.Config != nil && len(c.Config.Raw) > 0 {
		if d, err := config.ParseDynamic(c.Config.Raw); err == nil {
			settings, _ = d.Settings()
		}
	}
	leaderName := ""
	if c.Leader != nil {
		leaderName = c.Leader.Name
	}
	if sr.Leader != "" && sr.Leader != leaderName {
		return http.StatusPreconditionFailed, "leader name does not match"
	}
	syncMode := settings.SynchronousMode == config.SyncOn && !settings.StandbyCluster.Active()
	var cands []*dcs.Member
	if sr.Candidate != "" {
		if action == "switchover" && syncMode && !c.Sync.Matches(sr.Candidate) {
			return http.StatusPreconditionFailed, "candidate name does not match with sync_standby"
		}
		m := c.Member(sr.Candidate)
		if m == nil {
			return http.StatusPreconditionFailed, "candidate does not exists"
		}
		cands = []*dcs.Member{m}
	} else if syncMode {
		for _, m := range c.Members {
			if c.Sync.Matches(m.Name) && m.Name != leaderName {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			return http.StatusPreconditionFailed, action + " is not possible: can not find sync_standby"
		}
	} else {
		for _, m := range c.Members {
			if m.Name != leaderName && m.APIURL != "" {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			return http.StatusPreconditionFailed, action + " is not possible: cluster does not have members except leader"
		}
	}
	prober := h.cfg.Peers
	if prober == nil {
		prober = clientProber{}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		good bool
	)
	for _, m := range cands {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			doc, err := prober.Probe(pctx, m)
			if err != nil || doc == nil || doc.XLog == nil || doc.WatchdogFailed || m.NoFailover() {
				return
			}
			mu.Lock()
			good = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if !good {
		return http.StatusPreconditionFailed, action + " is not possible: no good candidates have been found"
	}
	return 0, ""
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("api: peer sent no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("api: parse peer certificate: %w", err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("api: verify peer certificate: %w", err)
	}
	return nil
}

// waitSwitchover polls the DCS for the outcome (step 9).
func (h *Handler) waitSwitchover(ctx context.Context, st *Status, oldLeader, candidate, action string) (int, string) {
	title := strings.ToUpper(action[:1]) + action[1:]
	limit := 2 * max(10, st.Global.LoopWait)
	deadline := h.clock.Now().Add(time.Duration(limit) * time.Second)
	tick := h.clock.NewTicker(h.cfg.SwitchoverPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return http.StatusServiceUnavailable, fmt.Sprintf("%s status unknown after %d seconds; operation may still be in progress", title, limit)
		case <-tick.C():
		}
		c, err := h.freshCluster(ctx, st)
		if err == nil {
			if c.Leader != nil && c.Leader.Name != "" && c.Leader.Name != oldLeader {
				switch {
				case candidate == "" || c.Leader.Name == candidate:
					verb := "switched over"
					if action == "failover" {
						verb = "failed over"
					}
					return 200, fmt.Sprintf("Successfully %s to %q", verb, c.Leader.Name)
				default:
					verb := "Switched over"
					if action == "failover" {
						verb = "Failed over"
					}
					return 200, fmt.Sprintf("%s to %q instead of %q", verb, c.Leader.Name, candidate)
				}
			}
			if c.Failover.IsEmpty() {
				return http.StatusServiceUnavailable, title + " failed"
			}
		}
		if !h.clock.Now().Before(deadline) {
			return http.StatusServiceUnavailable, fmt.Sprintf("%s status unknown after %d seconds; operation may still be in progress", title, limit)
		}
	}
}

func (h *Handler) deleteSwitchover(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	c, err := h.freshCluster(r.Context(), st)
	if err != nil || c.Failover == nil || c.Failover.ScheduledAt == nil {
		writeText(w, http.StatusNotFound, "no switchover is scheduled")
		return
	}
	if h.cfg.DCS == nil {
		writeError(w, http.StatusConflict, "Conflict")
		return
	}
	ctx, cancel := h.dcsContext(r.Context(), st)
	defer cancel()
	if _, err := h.cfg.DCS.SetFailover(ctx, &dcs.Failover{}, c.Failover.Version); err != nil {
		writeError(w, http.StatusConflict, "Conflict")
		return
	}
	writeText(w, 200, "scheduled switchover deleted")
}
