package consul

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// spec/config.md, DCS sections: the "consul" keys and their defaults.
func TestFileConfig(t *testing.T) {
	f := false
	cases := []struct {
		name    string
		in      FileConfig
		check   func(t *testing.T, c Config)
		wantErr bool
	}{
		{
			name: "defaults",
			in:   FileConfig{},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "127.0.0.1:8500", c.Address)
				require.Equal(t, "http", c.Scheme)
				require.Equal(t, ConsistencyDefault, c.Consistency)
				require.Equal(t, 5*time.Second, c.Service.CheckInterval)
				require.False(t, c.Service.Register)
				require.False(t, c.TLS.InsecureSkipVerify)
			},
		},
		{
			name: "host without port takes port",
			in:   FileConfig{Host: "consul.local", Port: 8501},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "consul.local:8501", c.Address)
			},
		},
		{
			name: "host without port defaults to 8500",
			in:   FileConfig{Host: "consul.local"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "consul.local:8500", c.Address)
			},
		},
		{
			name: "url wins over host and scheme",
			in:   FileConfig{URL: "https://10.0.0.1:8501", Host: "ignored:1", Scheme: "http"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "10.0.0.1:8501", c.Address)
				require.Equal(t, "https", c.Scheme)
			},
		},
		{
			name: "everything else",
			in: FileConfig{
				Token: "tok", DC: "dc2", Consistency: "consistent", Verify: &f,
				CACert: "/ca", Cert: "/c", Key: "/k", Checks: []string{"serfHealth"},
				RegisterService: true, ServiceTags: []string{"pg"},
				ServiceCheckInterval: "15", ServiceCheckTLSServerName: "pg.local",
			},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "tok", c.Token)
				require.Equal(t, "dc2", c.Datacenter)
				require.Equal(t, ConsistencyConsistent, c.Consistency)
				require.Equal(t, TLSConfig{CACert: "/ca", Cert: "/c", Key: "/k", InsecureSkipVerify: true}, c.TLS)
				require.Equal(t, []string{"serfHealth"}, c.Checks)
				require.Equal(t, ServiceConfig{Register: true, Tags: []string{"pg"},
					CheckInterval: 15 * time.Second, CheckTLSServerName: "pg.local"}, c.Service)
			},
		},
		{name: "bad consistency", in: FileConfig{Consistency: "eventual"}, wantErr: true},
		{name: "bad interval", in: FileConfig{ServiceCheckInterval: "often"}, wantErr: true},
		{name: "cert without key", in: FileConfig{Cert: "/c"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.in.Config("batman", "pg0")
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "batman", c.Scope)
			require.Equal(t, "pg0", c.Name)
			tc.check(t, c)
		})
	}
}

// spec/config.md: the section decodes from Patroni's YAML keys.
func TestFileConfigYAML(t *testing.T) {
	var f FileConfig
	require.NoError(t, yaml.Unmarshal([]byte(`
host: 127.0.0.1:8500
token: secret
consistency: stale
register_service: true
service_tags: [a, b]
service_check_interval: 10s
service_check_tls_server_name: pg
verify: false
`), &f))
	require.Equal(t, FileConfig{
		Host: "127.0.0.1:8500", Token: "secret", Consistency: "stale", RegisterService: true,
		ServiceTags: []string{"a", "b"}, ServiceCheckInterval: "10s",
		ServiceCheckTLSServerName: "pg", Verify: new(false),
	}, f)
}

// Validate reports every problem at once (STYLE.md §6).
func TestValidateJoinsErrors(t *testing.T) {
	c := Config{Scheme: "ftp", Consistency: "x"}.withDefaults()
	err := c.Validate()
	require.Error(t, err)
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	require.Len(t, joined.Unwrap(), 3) // scope, scheme, consistency
}

// spec/dcs-layout.md §1: Consul keys have no leading slash; the namespace
// tolerates leading, trailing and repeated slashes.
func TestPrefix(t *testing.T) {
	cases := []struct {
		name, namespace, want string
	}{
		{"default", "", "service/batman/"},
		{"slashes", "/service/", "service/batman/"},
		{"nested", "//a//b/", "a/b/batman/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Namespace: tc.namespace, Scope: "batman"}.withDefaults()
			require.Equal(t, tc.want, c.prefix())
		})
	}
}

// spec/dcs-layout.md §6: service name from the scope.
func TestServiceName(t *testing.T) {
	cases := []struct {
		name, scope, want string
	}{
		{"plain", "batman", "batman"},
		{"lower and dashes", "My.Cluster_1 x", "my-cluster-1-x"},
		{"other characters", "a+b", "au0043b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ServiceName(tc.scope))
		})
	}
	require.Len(t, ServiceName(string(make([]byte, 300))), maxServiceName)
}

// spec/dcs-layout.md §6: role tags.
func TestServiceTags(t *testing.T) {
	cases := []struct {
		name, role string
		want       []string
	}{
		{"primary also master", "primary", []string{"x", "primary", "master"}},
		{"replica", "replica", []string{"x", "replica"}},
		{"standby leader", "standby-leader", []string{"x", "standby-leader"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := []string{"x"}
			require.Equal(t, tc.want, serviceTags(conf, tc.role))
			require.Equal(t, []string{"x"}, conf, "configured tags must not change")
		})
	}
}

// spec/dcs-layout.md §6: a session TTL below the agent minimum is raised to it.
func TestMinTTLFromError(t *testing.T) {
	cases := []struct {
		name string
		msg  string
		want time.Duration
		ok   bool
	}{
		{"consul message", "Unexpected response code: 400 (Session TTL '5s' must be between [10s=24h0m0s])", 10 * time.Second, true},
		{"unparsable bound", "Session TTL '5s' must be between something", minSessionTTL, true},
		{"other error", "connection refused", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := minTTLFromError(errors.New(tc.msg))
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, d)
		})
	}
}

// The session TTL is half the cluster ttl (spec/dcs-layout.md §6).
func TestSessionTTL(t *testing.T) {
	require.Equal(t, 15*time.Second, sessionTTL(30*time.Second))
	require.Equal(t, 2*time.Second, sessionTTL(4*time.Second))
}
