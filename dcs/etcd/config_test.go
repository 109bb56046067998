package etcd_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs/etcd"
)

// TestPrefix checks the base path rules of spec/dcs-layout.md §1.
func TestPrefix(t *testing.T) {
	for _, tc := range []struct{ name, ns, scope, want string }{
		{"default namespace", "", "batman", "/service/batman/"},
		{"plain", "service", "batman", "/service/batman/"},
		{"leading and trailing slash", "/service/", "batman", "/service/batman/"},
		{"repeated slashes collapse", "//a//b/", "batman", "/a/b/batman/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, etcd.Prefix(tc.ns, tc.scope))
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  etcd.Config
		ok   bool
	}{
		{"minimal", etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Scope: "b"}, true},
		{"no endpoints", etcd.Config{Scope: "b"}, false},
		{"no scope", etcd.Config{Endpoints: []string{"h:1"}}, false},
		{"bad scheme", etcd.Config{Endpoints: []string{"ftp://h:1"}, Scope: "b"}, false},
		{"password without user", etcd.Config{Endpoints: []string{"h:1"}, Scope: "b", Password: "x"}, false},
		{"cert without key", etcd.Config{Endpoints: []string{"h:1"}, Scope: "b", Cert: "c.pem"}, false},
		{"slash in name", etcd.Config{Endpoints: []string{"h:1"}, Scope: "b", Name: "a/b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// TestEtcd3Section checks the etcd3 keys of spec/config.md "DCS sections".
func TestEtcd3Section(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      map[string]any
		want    []string
		wantErr bool
	}{
		{"host", map[string]any{"host": "10.0.0.1:2379"}, []string{"http://10.0.0.1:2379"}, false},
		{"host default port", map[string]any{"host": "10.0.0.1"}, []string{"http://10.0.0.1:2379"}, false},
		{"hosts list", map[string]any{"hosts": []any{"a:1", "b:2"}}, []string{"http://a:1", "http://b:2"}, false},
		{"hosts comma string", map[string]any{"hosts": "a:1, b:2", "protocol": "https"}, []string{"https://a:1", "https://b:2"}, false},
		{"hosts win over host", map[string]any{"hosts": "a:1", "host": "c:3"}, []string{"http://a:1"}, false},
		{"url wins", map[string]any{"url": "https://u:9", "hosts": "a:1"}, []string{"https://u:9"}, false},
		{"proxy", map[string]any{"proxy": "http://p:1"}, []string{"http://p:1"}, false},
		{"default", map[string]any{}, []string{"http://127.0.0.1:2379"}, false},
		{"unknown key", map[string]any{"hots": "a"}, nil, true},
		{"bad protocol", map[string]any{"protocol": "grpc"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := etcd.ParseEtcd3Section(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			eps, err := s.Endpoints(t.Context())
			require.NoError(t, err)
			require.Equal(t, tc.want, eps)
		})
	}
	t.Run("credentials and TLS", func(t *testing.T) {
		s, err := etcd.ParseEtcd3Section(map[string]any{"hosts": "a:1", "username": "u", "password": "p",
			"cacert": "/ca.pem", "cert": "/c.pem", "key": "/k.pem", "use_proxies": true})
		require.NoError(t, err)
		cfg, err := s.StoreConfig(t.Context(), "/service", "batman", "pg0")
		require.NoError(t, err)
		require.Equal(t, etcd.Config{Endpoints: []string{"http://a:1"}, Namespace: "/service", Scope: "batman",
			Name: "pg0", Username: "u", Password: "p", CACert: "/ca.pem", Cert: "/c.pem", Key: "/k.pem"}, cfg)
	})
}

// TestRaftSection checks that Patroni's raft section maps to an embedded
// etcd member (spec/config.md "raft").
func TestRaftSection(t *testing.T) {
	s, err := etcd.ParseRaftSection(map[string]any{
		"self_addr":     "127.0.0.1:2222",
		"partner_addrs": []any{"127.0.0.1:2223", "127.0.0.1:2224"},
		"data_dir":      "/var/lib/raft",
		"password":      "secret",
		"min_timeout":   0.4,
	})
	require.NoError(t, err)
	require.Equal(t, []string{"min_timeout", "password"}, s.Ignored)
	require.Equal(t, []string{"http://127.0.0.1:12222", "http://127.0.0.1:12223", "http://127.0.0.1:12224"}, s.Endpoints())
	sc, err := s.ServerConfig("batman")
	require.NoError(t, err)
	require.Equal(t, etcd.ServerConfig{
		Name:                "127.0.0.1:2222",
		DataDir:             "/var/lib/raft/etcd",
		ClientURLs:          []string{"http://127.0.0.1:12222"},
		AdvertiseClientURLs: []string{"http://127.0.0.1:12222"},
		PeerURLs:            []string{"http://127.0.0.1:2222"},
		AdvertisePeerURLs:   []string{"http://127.0.0.1:2222"},
		InitialCluster:      "127.0.0.1:2222=http://127.0.0.1:2222,127.0.0.1:2223=http://127.0.0.1:2223,127.0.0.1:2224=http://127.0.0.1:2224",
		ClusterState:        etcd.StateNew,
		ClusterToken:        "pgwarden-batman",
	}, sc)

	for _, tc := range []struct {
		name string
		in   map[string]any
	}{
		{"missing self_addr", map[string]any{"partner_addrs": "a:1"}},
		{"bad address", map[string]any{"self_addr": "nohost"}},
		{"port too high", map[string]any{"self_addr": "h:60000"}},
		{"unknown key", map[string]any{"self_addr": "h:1", "selfaddr": "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := etcd.ParseRaftSection(tc.in)
			require.Error(t, err)
		})
	}
}
