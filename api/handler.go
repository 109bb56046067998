package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

// Config configures the REST API handler.
type Config struct {
	// Status supplies the latest node status. Required.
	Status StatusSource
	// Controller receives restart, reload, reinitialize, failsafe and
	// shutdown requests. nil makes those endpoints answer 503.
	Controller Controller
	// DCS is used for fresh reads (/cluster, PATCH /config, switchover)
	// and for config and failover writes. nil: reads use the status
	// snapshot and writes answer 503.
	DCS DCS
	// Peers probes candidate members during switchover feasibility
	// checks. nil uses a Client per member with a 2 s timeout.
	Peers Prober
	// RestAPI holds the restapi section: authentication, verify_client,
	// allowlist, extra headers, server_tokens.
	RestAPI config.RestAPI
	// Version is the version reported as "patroni.version". Default
	// CompatVersion.
	Version string
	// Metrics receives our own counters; nil creates a private one.
	Metrics *Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Clock; nil means the real clock. Used for ages, schedules and the
	// switchover poll.
	Clock clock.WithTicker
	// SwitchoverPoll is how often a switchover request polls the DCS for
	// its outcome. Default 1 s (as Patroni).
	SwitchoverPoll time.Duration
	// KeepAlive keeps connections open between requests. Default false:
	// like Patroni, one request per connection.
	KeepAlive bool
	// Resolve resolves allowlist host names and member API hosts; nil uses
	// net.DefaultResolver with a 1 s timeout.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// DCSTimeout bounds each fresh DCS read or write made for a request.
	// Default retry_timeout of the dynamic configuration (10 s).
	DCSTimeout time.Duration
}

// Handler serves the Patroni-compatible REST API (spec/rest-api.md).
type Handler struct {
	cfg       Config
	log       *slog.Logger
	clock     clock.WithTicker
	metrics   *Metrics
	allowNets []*net.IPNet
	server    string
	tls       bool
	promOnce  sync.Once
	prom      http.Handler
	// headers are set on every answer: Connection, Server and the extra
	// headers of the restapi section. Keys are canonical; each value is a
	// slice of length and capacity 1, shared by all answers.
	headers http.Header
	// jsonType is the Content-Type value of JSON answers, shared likewise.
	jsonType []string
	// shared is cfg.Status when it hands out the published Status itself.
	shared SharedStatusSource
	// last is the snapshot of the status shared handed out last.
	last atomic.Pointer[snapshot]
}

// snapshot is what the handler derives from one published Status. With a
// SharedStatusSource it is kept until another Status is published, so the
// status document is encoded once per publication, not once per health
// check.
type snapshot struct {
	// src is the published Status; nil for a copy from a plain
	// StatusSource.
	src *Status
	// st is the status with defaults for unset timing settings.
	st Status

	docOnce sync.Once
	doc     []byte   // the status document's JSON
	docLen  []string // its Content-Length value
	docErr  error
}

// document returns the encoded status document (GET /patroni and the
// body of GET health checks), which depends on the status alone.
func (s *snapshot) document(version string, now time.Time) ([]byte, []string, error) {
	s.docOnce.Do(func() {
		s.doc, s.docErr = encodeJSON(newView(&s.st, now).document(version))
		s.docLen = []string{strconv.Itoa(len(s.doc))}
	})
	return s.doc, s.docLen, s.docErr
}

// NewHandler returns the REST API handler. Allowlist host names are
// resolved now, as Patroni does at config load.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Status == nil {
		return nil, errors.New("api: Config.Status is required")
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, metrics: cfg.Metrics}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.clock == nil {
		h.clock = clock.RealClock{}
	}
	if h.metrics == nil {
		h.metrics = NewMetrics()
	}
	if h.cfg.Version == "" {
		h.cfg.Version = CompatVersion
	}
	if h.cfg.SwitchoverPoll <= 0 {
		h.cfg.SwitchoverPoll = time.Second
	}
	if h.cfg.Resolve == nil {
		h.cfg.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return net.DefaultResolver.LookupIP(ctx, "ip", host)
		}
	}
	h.tls = cfg.RestAPI.CertFile != ""
	var errs []error
	for _, a := range cfg.RestAPI.Allowlist {
		nets, err := h.parseAllow(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("api: allowlist entry %q: %w", a, err))
			continue
		}
		h.allowNets = append(h.allowNets, nets...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	switch strings.ToLower(cfg.RestAPI.ServerTokens) {
	case "productonly":
		h.server = "Patroni"
	case "minimal":
		h.server = "Patroni/" + h.cfg.Version
	}
	h.headers = http.Header{}
	add := func(k, v string) { h.headers[http.CanonicalHeaderKey(k)] = []string{v} }
	if !h.cfg.KeepAlive {
		add("Connection", "close")
	}
	if h.server != "" {
		add("Server", h.server)
	}
	for k, v := range h.cfg.RestAPI.HTTPExtraHeaders {
		add(k, v)
	}
	if h.tls {
		for k, v := range h.cfg.RestAPI.HTTPSExtraHeaders {
			add(k, v)
		}
	}
	h.jsonType = []string{"application/json"}
	h.shared, _ = cfg.Status.(SharedStatusSource)
	return h, nil
}

func (h *Handler) parseAllow(a string) ([]*net.IPNet, error) {
	if _, n, err := net.ParseCIDR(a); err == nil {
		return []*net.IPNet{n}, nil
	}
	if ip := net.ParseIP(a); ip != nil {
		return []*net.IPNet{hostNet(ip)}, nil
	}
	ips, err := h.cfg.Resolve(context.Background(), a)
	if err != nil {
		return nil, err
	}
	var out []*net.IPNet
	for _, ip := range ips {
		out = append(out, hostNet(ip))
	}
	return out, nil
}

func hostNet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}
}

// Metrics returns the handler's metrics, for the HA loop to record into.
func (h *Handler) Metrics() *Metrics { return h.metrics }

// status returns the latest published status with defaults applied. The
// caller must not modify it.
func (h *Handler) status() *Status { return &h.latest().st }

// latest returns the snapshot of the latest published status: the cached
// one while a SharedStatusSource hands out the same Status.
func (h *Handler) latest() *snapshot {
	if h.shared == nil {
		return newSnapshot(nil, h.cfg.Status.Status())
	}
	src := h.shared.SharedStatus()
	if s := h.last.Load(); s != nil && s.src == src {
		return s
	}
	s := newSnapshot(src, *src)
	h.last.Store(s)
	return s
}

func newSnapshot(src *Status, st Status) *snapshot {
	if st.Global.TTL == 0 {
		st.Global.TTL = 30
	}
	if st.Global.LoopWait == 0 {
		st.Global.LoopWait = 10
	}
	if st.Global.RetryTimeout == 0 {
		st.Global.RetryTimeout = 10
	}
	return &snapshot{src: src, st: st}
}

// ServeHTTP routes by method and first path segment (spec/rest-api.md §1).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	for k, v := range h.headers {
		hdr[k] = v
	}
	seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch r.Method {
	case http.MethodGet:
		switch seg {
		case "patroni":
			h.getPatroni(w, r)
		case "cluster":
			h.getCluster(w, r)
		case "history":
			h.getHistory(w, r)
		case "config":
			h.getConfig(w, r)
		case "failsafe":
			h.getFailsafe(w, r)
		case "metrics":
			h.getMetrics(w, r)
		case "liveness":
			st := h.status()
			writeStatusOnly(w, r, newView(st, h.clock.Now()).livenessCode())
		case "readiness":
			st := h.status()
			writeStatusOnly(w, r, newView(st, h.clock.Now()).readinessCode(r.URL.Query()))
		default:
			h.health(w, r, false)
		}
	case http.MethodHead, http.MethodOptions:
		h.health(w, r, true)
	case http.MethodPost:
		switch seg {
		case "reload":
			h.guard(w, r, true, h.postReload)
		case "restart":
			h.guard(w, r, true, h.postRestart)
		case "reinitialize":
			h.guard(w, r, true, h.postReinitialize)
		case "switchover":
			h.guard(w, r, true, func(w http.ResponseWriter, r *http.Request) { h.postSwitchover(w, r, false) })
		case "failover":
			h.guard(w, r, true, func(w http.ResponseWriter, r *http.Request) { h.postSwitchover(w, r, true) })
		case "failsafe":
			h.guard(w, r, false, h.postFailsafe)
		case "citus":
			h.guard(w, r, true, h.postCitus)
		case "mpp":
			h.postCitus(w, r)
		case "sigterm":
			h.guard(w, r, true, h.postSigterm)
		default:
			h.unsupported(w)
		}
	case http.MethodPatch:
		if seg == "config" {
			h.guard(w, r, true, h.patchConfig)
			return
		}
		h.unsupported(w)
	case http.MethodPut:
		if seg == "config" {
			h.guard(w, r, true, h.putConfig)
			return
		}
		h.unsupported(w)
	case http.MethodDelete:
		switch seg {
		case "restart":
			h.guard(w, r, true, h.deleteRestart)
		case "switchover":
			h.guard(w, r, true, h.deleteSwitchover)
		default:
			h.unsupported(w)
		}
	default:
		h.unsupported(w)
	}
}

func (h *Handler) unsupported(w http.ResponseWriter) {
	writeError(w, http.StatusNotImplemented, "Unsupported method")
}

// health serves the health-check logic for GET (status document body) or
// HEAD/OPTIONS (status line only). It only reads the published status.
func (h *Handler) health(w http.ResponseWriter, r *http.Request, codeOnly bool) {
	s := h.latest()
	now := h.clock.Now()
	var q url.Values // nil when there is no query: saves parsing
	if r.URL.RawQuery != "" {
		q = r.URL.Query()
	}
	v := newView(&s.st, now)
	code := v.healthCode(r.URL.Path, q)
	if codeOnly {
		writeStatusOnly(w, r, code)
		return
	}
	h.writeDocument(w, s, code, now)
}

func (h *Handler) getPatroni(w http.ResponseWriter, _ *http.Request) {
	h.writeDocument(w, h.latest(), 200, h.clock.Now())
}

// writeDocument answers code with the status document of s.
func (h *Handler) writeDocument(w http.ResponseWriter, s *snapshot, code int, now time.Time) {
	body, length, err := s.document(h.cfg.Version, now)
	if err != nil {
		writeText(w, 500, "cannot encode response: "+err.Error())
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = h.jsonType
	hdr["Content-Length"] = length
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// guard runs the access check of unsafe endpoints (spec/rest-api.md §2.2).
func (h *Handler) guard(w http.ResponseWriter, r *http.Request, members bool, next http.HandlerFunc) {
	ra := h.cfg.RestAPI
	if len(ra.Allowlist) > 0 || (ra.AllowlistIncludeMembers && members) {
		if !h.allowed(r, members) {
			writeText(w, http.StatusForbidden, "Access is denied")
			return
		}
	}
	if r.TLS != nil && (ra.VerifyClient == "required" || ra.VerifyClient == "optional") && len(r.TLS.PeerCertificates) == 0 {
		writeText(w, http.StatusForbidden, "client certificate required")
		return
	}
	if a := ra.Authentication; a != nil && (a.Username != "" || a.Password != "") {
		got := r.Header.Get("Authorization")
		if got == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="Patroni"`)
			writeText(w, http.StatusUnauthorized, "no auth header received")
			return
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password))
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="Patroni"`)
			writeText(w, http.StatusUnauthorized, "not authenticated")
			return
		}
	}
	next(w, r)
}

func (h *Handler) allowed(r *http.Request, members bool) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range h.allowNets {
		if n.Contains(ip) {
			return true
		}
	}
	if !members || !h.cfg.RestAPI.AllowlistIncludeMembers {
		return false
	}
	st := h.status()
	if st.Cluster == nil {
		return false
	}
	for _, m := range st.Cluster.Members {
		u, err := url.Parse(m.APIURL)
		if err != nil || u.Hostname() == "" {
			continue
		}
		if mip := net.ParseIP(u.Hostname()); mip != nil {
			if mip.Equal(ip) {
				return true
			}
			continue
		}
		ips, err := h.cfg.Resolve(r.Context(), u.Hostname())
		if err != nil {
			continue
		}
		for _, mip := range ips {
			if mip.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// writeStatusOnly answers with the bare status line and no headers or body
// ("HTTP/1.0 200 OK\r\n\r\n"), as Patroni does for HEAD/OPTIONS and
// liveness/readiness, which HAProxy checks expect. When the connection
// cannot be taken over (HTTP/2), a normal empty response is sent.
func writeStatusOnly(w http.ResponseWriter, r *http.Request, code int) {
	if r.ProtoMajor == 1 {
		if hj, ok := w.(http.Hijacker); ok {
			conn, buf, err := hj.Hijack()
			if err == nil {
				defer conn.Close()
				_, _ = fmt.Fprintf(buf, "HTTP/1.0 %d %s\r\n\r\n", code, http.StatusText(code))
				_ = buf.Flush()
				return
			}
		}
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := encodeJSON(v)
	if err != nil {
		writeText(w, 500, "cannot encode response: "+err.Error())
		return
	}
	writeRaw(w, code, "application/json", body)
}

// encodeJSON encodes v as Patroni does: no HTML escaping, no trailing
// newline.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func writeRaw(w http.ResponseWriter, code int, ctype string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeText sends a plain message; Patroni labels it text/html.
func writeText(w http.ResponseWriter, code int, msg string) {
	writeRaw(w, code, "text/html", []byte(msg))
}

// writeError sends a framework error page (send_error in Patroni).
func writeError(w http.ResponseWriter, code int, msg string) {
	body := fmt.Sprintf("<!DOCTYPE HTML>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Error response</title></head>\n"+
		"<body>\n<h1>Error response</h1>\n<p>Error code: %d</p>\n<p>Message: %s.</p>\n</body>\n</html>\n", code, html.EscapeString(msg))
	writeRaw(w, code, "text/html;charset=utf-8", []byte(body))
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// readBody reads a JSON object body (spec/rest-api.md §6). optional: an
// absent or empty body is {}. It writes the error answer and returns
// ok=false on failure.
func readBody(w http.ResponseWriter, r *http.Request, optional bool) (map[string]any, []byte, bool) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(raw) > maxBody {
		writeError(w, http.StatusBadRequest, "Bad request")
		return nil, nil, false
	}
	if len(raw) == 0 {
		if optional {
			return map[string]any{}, []byte("{}"), true
		}
		writeError(w, http.StatusLengthRequired, "Length Required")
		return nil, nil, false
	}
	m, err := parseObject(raw)
	if err != nil || (!optional && len(m) == 0) {
		writeError(w, http.StatusBadRequest, "Bad request")
		return nil, nil, false
	}
	return m, raw, true
}

// parseObject decodes a JSON object with numbers as json.Number.
func parseObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

// dcsContext bounds a fresh DCS call made for a request.
func (h *Handler) dcsContext(ctx context.Context, st *Status) (context.Context, context.CancelFunc) {
	d := h.cfg.DCSTimeout
	if d <= 0 {
		d = time.Duration(st.Global.RetryTimeout) * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// freshCluster reads the DCS, falling back to the published snapshot when
// there is no DCS client.
func (h *Handler) freshCluster(ctx context.Context, st *Status) (*dcs.Cluster, error) {
	if h.cfg.DCS == nil {
		if st.Cluster == nil {
			return nil, dcs.ErrUnavailable
		}
		return st.Cluster, nil
	}
	ctx, cancel := h.dcsContext(ctx, st)
	defer cancel()
	start := time.Now()
	c, err := h.cfg.DCS.Cluster(ctx)
	h.metrics.ObserveDCSCall("cluster", time.Since(start))
	return c, err
}
