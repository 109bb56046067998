package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
)

func fuzzHandler(f *testing.F, dcsFails bool) (*Handler, *fakeDCS) {
	st := &fakeStatus{}
	st.set(primaryStatus())
	d := &fakeDCS{c: baseCluster(), failSet: dcsFails}
	h, err := NewHandler(Config{Status: st, Controller: &fakeController{}, DCS: d, Peers: fakeProber{},
		Clock: clocktesting.NewFakeClock(specNow)})
	require.NoError(f, err)
	return h, d
}

func serve(h http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// FuzzPatchConfig: PATCH /config never panics; a 200 answer is a JSON object
// equal to what was stored (spec/rest-api.md §6).
func FuzzPatchConfig(f *testing.F) {
	h, d := fuzzHandler(f, false)
	for _, s := range []string{`{"ttl":40}`, `{"postgresql":{"parameters":{"work_mem":null}}}`, `{"a":[1,{"b":null}]}`, `{}`, `[]`, `{"a":1e999}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, http.MethodPatch, "/config", body)
		if rec.Code == 200 {
			require.True(t, json.Valid(rec.Body.Bytes()), rec.Body.String())
			require.Equal(t, byte('{'), rec.Body.Bytes()[0])
			d.mu.Lock()
			stored := string(d.c.Config.Raw)
			d.mu.Unlock()
			require.Equal(t, stored, rec.Body.String())
		} else {
			require.Contains(t, []int{400, 409, 411, 503}, rec.Code)
		}
	})
}

// FuzzSwitchover: POST /switchover and /failover bodies never panic and
// only produce the spec's codes.
func FuzzSwitchover(f *testing.F) {
	h, _ := fuzzHandler(f, true) // writes fail: no waiting for an outcome
	for _, s := range []string{`{"leader":"patroni1","candidate":"patroni2"}`, `{"leader":"patroni1","scheduled_at":"2099-01-01T00:00:00+00:00"}`,
		`{"candidate":"patroni3"}`, `{"member":1,"leader":null}`, `{"scheduled_at":"2001-01-01"}`, `{`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, failover bool) {
		path := "/switchover"
		if failover {
			path = "/failover"
		}
		rec := serve(h, http.MethodPost, path, body)
		require.Contains(t, []int{400, 411, 412, 422, 503}, rec.Code, rec.Body.String())
	})
}

// FuzzRestart: POST /restart bodies never panic and only produce the spec's
// codes.
func FuzzRestart(f *testing.F) {
	h, _ := fuzzHandler(f, false)
	for _, s := range []string{``, `{}`, `{"schedule":"2099-01-01T00:00:00+00:00","role":"replica"}`, `{"postgres_version":"15.4","timeout":"1min"}`,
		`{"restart_pending":true}`, `{"timeout":0}`, `{"role":7}`, `{"schedule":"2099-01-01"}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, http.MethodPost, "/restart", body)
		require.Contains(t, []int{200, 202, 400, 409, 422, 500, 503}, rec.Code, rec.Body.String())
	})
}
