package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is a typed client of the REST API of one member (pgwarden or
// Patroni). The zero value is not usable: set BaseURL. Safe for concurrent
// use once configured.
type Client struct {
	// BaseURL is the member's API root, e.g. "https://10.0.0.1:8008" (a
	// trailing "/patroni" is accepted and removed).
	BaseURL string
	// Username and Password enable Basic auth (ctl.authentication or
	// restapi.authentication).
	Username, Password string
	// TLS configures HTTPS (client certificate, CA); nil uses defaults.
	TLS *tls.Config
	// Insecure skips server certificate verification (ctl.insecure, and
	// member-to-member calls without ctl.certfile).
	Insecure bool
	// HTTP overrides the transport entirely when set.
	HTTP *http.Client
	// UserAgent is sent on every request. Default "Patroni/<CompatVersion>
	// pgwarden".
	UserAgent string

	once sync.Once
	hc   *http.Client
}

// Response is an answer whose status code matters to the caller.
type Response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// Text returns the body as a string (the message of text answers).
func (r *Response) Text() string { return string(r.Body) }

// HTTPError is returned by typed methods when the answer's code is not the
// expected one.
type HTTPError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("api: %s %s: %d %s", e.Method, e.Path, e.Code, strings.TrimSpace(e.Body))
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.once.Do(c.build)
	return c.hc
}

func (c *Client) build() {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := c.TLS
	if c.Insecure {
		if cfg == nil {
			cfg = &tls.Config{}
		} else {
			cfg = cfg.Clone()
		}
		cfg.InsecureSkipVerify = true
	}
	tr.TLSClientConfig = cfg
	c.hc = &http.Client{Transport: tr}
}

// Do sends one request; body (when non-nil) is sent as JSON, or as is when
// it is a []byte. Only transport errors are returned as errors.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) (*Response, error) {
	base := strings.TrimSuffix(strings.TrimSuffix(c.BaseURL, "/"), "/patroni")
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				return nil, fmt.Errorf("api: encode %s %s body: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Username != "" || c.Password != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
	ua := c.UserAgent
	if ua == "" {
		ua = "Patroni/" + CompatVersion + " pgwarden"
	}
	req.Header.Set("User-Agent", ua)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: read body: %w", method, path, err)
	}
	return &Response{Code: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	r, err := c.Do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if r.Code != 200 {
		return &HTTPError{Method: "GET", Path: path, Code: r.Code, Body: r.Text()}
	}
	if err := json.Unmarshal(r.Body, out); err != nil {
		return fmt.Errorf("api: GET %s: decode: %w", path, err)
	}
	return nil
}

// Patroni returns the member's status document (GET /patroni).
func (c *Client) Patroni(ctx context.Context) (*StatusDocument, error) {
	var d StatusDocument
	if err := c.getJSON(ctx, "/patroni", &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Health runs a GET health check (/primary, /replica?lag=1MB, ...) and
// returns the code and the status document.
func (c *Client) Health(ctx context.Context, path string, query url.Values) (int, *StatusDocument, error) {
	r, err := c.Do(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return 0, nil, err
	}
	var d StatusDocument
	if err := json.Unmarshal(r.Body, &d); err != nil {
		return r.Code, nil, nil
	}
	return r.Code, &d, nil
}

// Check runs a health check with HEAD (or OPTIONS) and returns the code.
func (c *Client) Check(ctx context.Context, method, path string, query url.Values) (int, error) {
	r, err := c.Do(ctx, method, path, query, nil)
	if err != nil {
		return 0, err
	}
	return r.Code, nil
}

// Liveness returns the code of GET /liveness.
func (c *Client) Liveness(ctx context.Context) (int, error) {
	return c.Check(ctx, http.MethodGet, "/liveness", nil)
}

// Readiness returns the code of GET /readiness; lag ("" for the default)
// and mode ("apply" or "write", "" for apply) are optional.
func (c *Client) Readiness(ctx context.Context, lag, mode string) (int, error) {
	q := url.Values{}
	if lag != "" {
		q.Set("lag", lag)
	}
	if mode != "" {
		q.Set("mode", mode)
	}
	return c.Check(ctx, http.MethodGet, "/readiness", q)
}

// Cluster returns GET /cluster.
func (c *Client) Cluster(ctx context.Context) (*ClusterDocument, error) {
	var d ClusterDocument
	if err := c.getJSON(ctx, "/cluster", &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// History returns GET /history: one [timeline, lsn, reason, timestamp,
// new_leader] line per switch (numbers as json.Number).
func (c *Client) History(ctx context.Context) ([][]any, error) {
	r, err := c.Do(ctx, http.MethodGet, "/history", nil, nil)
	if err != nil {
		return nil, err
	}
	if r.Code != 200 {
		return nil, &HTTPError{Method: "GET", Path: "/history", Code: r.Code, Body: r.Text()}
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var out [][]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("api: GET /history: decode: %w", err)
	}
	return out, nil
}

// Config returns the dynamic configuration (GET /config).
func (c *Client) Config(ctx context.Context) (json.RawMessage, error) {
	r, err := c.Do(ctx, http.MethodGet, "/config", nil, nil)
	if err != nil {
		return nil, err
	}
	if r.Code != 200 {
		return nil, &HTTPError{Method: "GET", Path: "/config", Code: r.Code, Body: r.Text()}
	}
	return r.Body, nil
}

func (c *Client) sendConfig(ctx context.Context, method string, body any) (json.RawMessage, error) {
	r, err := c.Do(ctx, method, "/config", nil, body)
	if err != nil {
		return nil, err
	}
	if r.Code != 200 {
		return nil, &HTTPError{Method: method, Path: "/config", Code: r.Code, Body: r.Text()}
	}
	return r.Body, nil
}

// PatchConfig merges patch (a JSON object; null deletes) into the dynamic
// configuration and returns the result (PATCH /config).
func (c *Client) PatchConfig(ctx context.Context, patch any) (json.RawMessage, error) {
	return c.sendConfig(ctx, http.MethodPatch, patch)
}

// PutConfig replaces the dynamic configuration (PUT /config).
func (c *Client) PutConfig(ctx context.Context, cfg any) (json.RawMessage, error) {
	return c.sendConfig(ctx, http.MethodPut, cfg)
}

// Failsafe returns the failsafe member map (GET /failsafe).
func (c *Client) Failsafe(ctx context.Context) (map[string]string, error) {
	var m map[string]string
	if err := c.getJSON(ctx, "/failsafe", &m); err != nil {
		return nil, err
	}
	return m, nil
}

// SendFailsafe posts a failsafe heartbeat (POST /failsafe); success is
// code 200 with body "Accepted".
func (c *Client) SendFailsafe(ctx context.Context, req FailsafeRequest) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/failsafe", nil, req)
}

// Metrics returns the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	r, err := c.Do(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return "", err
	}
	if r.Code != 200 {
		return "", &HTTPError{Method: "GET", Path: "/metrics", Code: r.Code, Body: r.Text()}
	}
	return r.Text(), nil
}

func switchoverBody(leader, candidate string, at *time.Time) map[string]any {
	b := map[string]any{}
	if leader != "" {
		b["leader"] = leader
	}
	if candidate != "" {
		b["candidate"] = candidate
	}
	if at != nil {
		b["scheduled_at"] = at.Format(time.RFC3339)
	}
	return b
}

// Switchover asks for a switchover from leader to candidate ("" for any),
// now or at a time (POST /switchover). It returns the answer: 200 when
// done, 202 when scheduled, 4xx/5xx with the reason.
func (c *Client) Switchover(ctx context.Context, leader, candidate string, at *time.Time) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/switchover", nil, switchoverBody(leader, candidate, at))
}

// Failover asks for a failover to candidate (POST /failover).
func (c *Client) Failover(ctx context.Context, candidate string) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/failover", nil, switchoverBody("", candidate, nil))
}

// CancelSwitchover deletes a scheduled switchover (DELETE /switchover).
func (c *Client) CancelSwitchover(ctx context.Context) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, "/switchover", nil, nil)
}

// RestartOptions are the conditions of POST /restart.
type RestartOptions struct {
	Schedule        *time.Time
	Role            string
	PostgresVersion string
	Timeout         time.Duration
	RestartPending  bool
}

// Restart restarts PostgreSQL now or at a time (POST /restart).
func (c *Client) Restart(ctx context.Context, o RestartOptions) (*Response, error) {
	b := map[string]any{}
	if o.Schedule != nil {
		b["schedule"] = o.Schedule.Format(time.RFC3339)
	}
	if o.Role != "" {
		b["role"] = o.Role
	}
	if o.PostgresVersion != "" {
		b["postgres_version"] = o.PostgresVersion
	}
	if o.Timeout > 0 {
		b["timeout"] = strconv.FormatFloat(o.Timeout.Seconds(), 'f', -1, 64)
	}
	if o.RestartPending {
		b["restart_pending"] = true
	}
	return c.Do(ctx, http.MethodPost, "/restart", nil, b)
}

// CancelRestart deletes a scheduled restart (DELETE /restart).
func (c *Client) CancelRestart(ctx context.Context) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, "/restart", nil, nil)
}

// Reload schedules a configuration reload (POST /reload).
func (c *Client) Reload(ctx context.Context) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/reload", nil, nil)
}

// Reinitialize re-creates the member from the leader (POST /reinitialize).
func (c *Client) Reinitialize(ctx context.Context, force, fromLeader bool) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/reinitialize", nil, map[string]any{"force": force, "from_leader": fromLeader})
}

// Sigterm asks the node to shut down (POST /sigterm).
func (c *Client) Sigterm(ctx context.Context) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/sigterm", nil, nil)
}
