package kubernetes

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestDefaults checks the defaults of the kubernetes section
// (spec/config.md "DCS sections", spec/dcs-layout.md §8).
func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	require.Equal(t, "default", c.Namespace)
	require.Equal(t, "cluster-name", c.ScopeLabel)
	require.Equal(t, "role", c.RoleLabel)
	require.Equal(t, "primary", c.LeaderLabelValue)
	require.Equal(t, "replica", c.FollowerLabelValue)
	require.Equal(t, "primary", c.StandbyLeaderLabelValue)
	require.Empty(t, c.TmpRoleLabel)
	require.False(t, c.UseEndpoints)
	require.Equal(t, []Port{{Port: 5432}}, c.Ports)
	require.Equal(t, 30*time.Second, c.TTL)
	require.Equal(t, 10*time.Second, c.RetryTimeout)
	require.Equal(t, ReadConsistent, c.ReadMode, "a store without a member reads like ctl")
	c = Config{Name: "pg0"}.withDefaults()
	require.Equal(t, ReadCache, c.ReadMode, "a member reads the watch caches")
}

// TestFileConfig checks the mapping of a Patroni "kubernetes:" section.
func TestFileConfig(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		check   func(t *testing.T, c Config)
		wantErr []string
	}{
		{
			name: "full section",
			yaml: `
namespace: pg
labels: {application: patroni}
scope_label: cluster
role_label: pgrole
leader_label_value: master
follower_label_value: standby
standby_leader_label_value: standby-leader
tmp_role_label: tmprole
use_endpoints: "on"
pod_ip: 10.0.0.5
ports: [{name: postgresql, port: 5432}, {name: patroni, port: 8008}]
cacert: /ca.pem
retriable_http_codes: [401, 418]
bypass_api_service: true
bootstrap_labels: {bootstrapping: "yes"}
context: kind-kind
`,
			check: func(t *testing.T, c Config) {
				require.Equal(t, "pg", c.Namespace)
				require.Equal(t, map[string]string{"application": "patroni"}, c.Labels)
				require.Equal(t, "cluster", c.ScopeLabel)
				require.Equal(t, "pgrole", c.RoleLabel)
				require.Equal(t, "master", c.LeaderLabelValue)
				require.Equal(t, "standby", c.FollowerLabelValue)
				require.Equal(t, "standby-leader", c.StandbyLeaderLabelValue)
				require.Equal(t, "tmprole", c.TmpRoleLabel)
				require.True(t, c.UseEndpoints)
				require.Equal(t, "10.0.0.5", c.PodIP)
				require.Equal(t, []Port{{Name: "postgresql", Port: 5432}, {Name: "patroni", Port: 8008}}, c.Ports)
				require.Equal(t, "/ca.pem", c.CACert)
				require.Equal(t, []int{401, 418}, c.RetriableHTTPCodes)
				require.True(t, c.BypassAPIService)
				require.Equal(t, map[string]string{"bootstrapping": "yes"}, c.BootstrapLabels)
				require.Equal(t, "kind-kind", c.Context)
				require.Equal(t, "application=patroni,cluster=batman", c.selector())
			},
		},
		{
			name: "single retriable code",
			yaml: "labels: {app: x}\nretriable_http_codes: 401\n",
			check: func(t *testing.T, c Config) {
				require.Equal(t, []int{401}, c.RetriableHTTPCodes)
				require.Equal(t, "default", c.Namespace)
			},
		},
		{
			name:    "labels required",
			yaml:    "namespace: pg\n",
			wantErr: []string{"labels are required"},
		},
		{
			name:    "every problem reported",
			yaml:    "labels: {'bad key!': x}\nnamespace: Not_Valid\nports: [{port: 0}, {port: 5432}]\nuse_endpoints: maybe\n",
			wantErr: []string{"label key", "namespace", "port 0", "name is required", "use_endpoints"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f FileConfig
			require.NoError(t, yaml.Unmarshal([]byte(tc.yaml), &f))
			c, err := f.Config("batman", "pg0")
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					require.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

// TestValidate checks that object and label names are checked before any
// request (spec/dcs-layout.md §8: object names <scope>-<suffix>).
func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{Scope: "batman", Name: "pg-0"}, ""},
		{"no scope", Config{}, "scope is required"},
		{"scope with capitals", Config{Scope: "Batman"}, "valid object name"},
		{"pod name", Config{Scope: "b", Name: "pg_0"}, "not a valid pod name"},
		{"scope label in labels", Config{Scope: "b", Labels: map[string]string{"cluster-name": "x"}}, "scope label"},
		{"bad role value", Config{Scope: "b", LeaderLabelValue: "a b"}, "role_label"},
		{"ttl", Config{Scope: "b", TTL: time.Millisecond}, "ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, strings.Contains(err.Error(), tc.want), "%v", err)
		})
	}
}

// TestAnnotationsFromJSON checks how codec JSON becomes annotations
// (spec/dcs-layout.md §8: failover and sync annotations; nulls removed).
func TestAnnotationsFromJSON(t *testing.T) {
	got := annotationsFromJSON([]byte(`{"leader":"m1","quorum":1,"sync_standby":null}`), "leader", "quorum", "sync_standby", "x")
	require.Equal(t, "m1", *got["leader"])
	require.Equal(t, "1", *got["quorum"])
	require.Nil(t, got["sync_standby"])
	require.Contains(t, got, "x")
	require.Nil(t, got["x"])
}

// TestRVNewer checks the resourceVersion order used by the caches.
func TestRVNewer(t *testing.T) {
	require.True(t, rvNewer("11", "9"))
	require.False(t, rvNewer("9", "11"))
	require.False(t, rvNewer("9", "9"))
	require.True(t, rvNewer("", ""), "unversioned objects (fake clientset) always replace")
}
