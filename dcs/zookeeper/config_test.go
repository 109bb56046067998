package zookeeper

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// spec/config.md `zookeeper.hosts`: a list or a comma-separated string.
func TestParseHosts(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want []string
		err  bool
	}{
		{"nil", nil, nil, false},
		{"comma string", "zk1:2181, zk2:2181,,zk3", []string{"zk1:2181", "zk2:2181", "zk3"}, false},
		{"string list", []string{"a:1", " b:2 "}, []string{"a:1", "b:2"}, false},
		{"yaml list", []any{"a:1", "b"}, []string{"a:1", "b"}, false},
		{"yaml list with a number", []any{"a:1", 5}, nil, true},
		{"a number", 5, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHosts(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// spec/dcs-layout.md §1: base path /<namespace>/<scope>, slashes tolerated.
func TestPrefix(t *testing.T) {
	cases := []struct{ name, ns, scope, want string }{
		{"default namespace", "", "batman", "/service/batman"},
		{"slashes collapse", "//pg//", "batman", "/pg/batman"},
		{"no slashes", "pg", "batman", "/pg/batman"},
		{"nested namespace", "/a/b/", "c", "/a/b/c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, Prefix(tc.ns, tc.scope)) })
	}
}

func TestHostPort(t *testing.T) {
	cases := []struct {
		name, in, want string
		err            bool
	}{
		{"with port", "zk1:2182", "zk1:2182", false},
		{"default port", "zk1", "zk1:2181", false},
		{"ipv6 with port", "[::1]:2182", "[::1]:2182", false},
		{"bare ipv6", "::1", "[::1]:2181", false},
		{"bad port", "zk1:http", "", true},
		{"empty", " ", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostPort(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// spec/config.md `zookeeper.set_acls`: principal -> permissions, scheme
// x509 unless the principal names one.
func TestACLs(t *testing.T) {
	got, err := acls(map[string][]string{
		"CN=principal1":      {"ALL"},
		"CN=principal2":      {"read", "CREATE"},
		"digest:user:hashed": {"READ", "WRITE", "DELETE", "ADMIN"},
	})
	require.NoError(t, err)
	require.Equal(t, []zk.ACL{
		{Perms: zk.PermAll, Scheme: "x509", ID: "CN=principal1"},
		{Perms: zk.PermRead | zk.PermCreate, Scheme: "x509", ID: "CN=principal2"},
		{Perms: zk.PermRead | zk.PermWrite | zk.PermDelete | zk.PermAdmin, Scheme: "digest", ID: "user:hashed"},
	}, got)

	none, err := acls(nil)
	require.NoError(t, err)
	require.Nil(t, none, "no set_acls: the store uses world:anyone")

	_, err = acls(map[string][]string{"CN=x": {"READ", "FLY"}})
	require.ErrorContains(t, err, `"FLY"`)
}

// STYLE.md §4: Validate reports every problem with the values.
func TestValidate(t *testing.T) {
	require.NoError(t, Config{Hosts: []string{"zk:2181"}, Scope: "batman", Name: "pg0"}.Validate())
	require.NoError(t, Config{Exhibitor: &Exhibitor{Hosts: []string{"ex1"}}, Scope: "batman"}.Validate())

	err := Config{Hosts: []string{"zk:port"}, Scope: "a/b", Name: "x/y", Cert: "c.pem",
		SetACLs: map[string][]string{"CN=x": {"FLY"}}, Exhibitor: &Exhibitor{Scheme: "ftp"}}.Validate()
	require.Error(t, err)
	for _, want := range []string{`"zk:port"`, `scope "a/b"`, `member name "x/y"`, `cert "c.pem"`, `"FLY"`,
		"exhibitor has no hosts", `scheme "ftp"`} {
		require.ErrorContains(t, err, want)
	}
	require.ErrorContains(t, Config{Scope: "s"}.Validate(), "no hosts and no exhibitor")
}

func TestDefaults(t *testing.T) {
	c := Config{Exhibitor: &Exhibitor{Hosts: []string{"e"}}}.withDefaults()
	require.Equal(t, DefaultNamespace, c.Namespace)
	require.Equal(t, 30*time.Second, c.TTL)
	require.Equal(t, 10*time.Second, c.LoopWait)
	require.Equal(t, 10*time.Second, c.RetryTimeout)
	require.Equal(t, 8181, c.Exhibitor.Port)
	require.Equal(t, 300*time.Second, c.Exhibitor.PollInterval)
	require.NotNil(t, c.Clock)
	require.NotNil(t, c.Logger)
}

func TestTLSConfig(t *testing.T) {
	off, err := Config{}.tlsConfig()
	require.NoError(t, err)
	require.Nil(t, off, "use_ssl false: no TLS")

	on, err := Config{UseSSL: true, Verify: new(false)}.tlsConfig()
	require.NoError(t, err)
	require.True(t, on.InsecureSkipVerify, "verify: false skips verification")

	_, err = Config{UseSSL: true, CACert: "/nonexistent/ca.pem"}.tlsConfig()
	require.ErrorContains(t, err, "cacert")
}

// hostList hands out hosts round robin and signals go-zookeeper's retry
// pause only after a full round without success.
func TestHostList(t *testing.T) {
	h := newHostList([]string{"a:1", "b:1"})
	require.NoError(t, h.Init(nil))
	next := func() string {
		s, retry := h.Next()
		if retry {
			return s + " retry"
		}
		return s
	}
	require.Equal(t, "a:1", next())
	require.Equal(t, "b:1", next())
	require.Equal(t, "a:1 retry", next(), "a full round failed")
	h.Connected()
	require.Equal(t, "b:1", next())
	require.Equal(t, "a:1 retry", next())

	require.False(t, h.set([]string{"a:1", "b:1"}), "same list")
	require.False(t, h.set(nil), "an empty list is ignored")
	require.True(t, h.set([]string{"c:1"}))
	require.Equal(t, "c:1", next())
	require.Equal(t, []string{"c:1"}, h.list())
}

func TestRelKey(t *testing.T) {
	s := &Store{base: "/service/batman"}
	cases := []struct {
		path, want string
		ok         bool
	}{
		{"/service/batman/leader", "leader", true},
		{"/service/batman/optime/leader", "optime/leader", true},
		{"/service/batman/members", "members", true},
		{"/service/batman/members/pg0", "members/pg0", true},
		{"/service/batman/members/pg0/x", "", false},
		{"/service/batman/unknown", "", false},
		{"/service/batman", "", false},
		{"/service/batman2/leader", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := s.relKey(tc.path)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// The cache applies reads unless this Store wrote the key meanwhile, and
// follows the members directory.
func TestCache(t *testing.T) {
	c := newCache()
	keys, seqs, full := c.take()
	require.True(t, full, "a new cache loads everything")
	require.Contains(t, keys, dirMembers)
	require.Contains(t, keys, dcs.KeyLeader)

	res := make([]readResult, len(keys))
	for i, k := range keys {
		switch k {
		case dirMembers:
			res[i] = readResult{names: []string{"pg0", "pg1"}}
		case dcs.KeyConfig:
			res[i] = readResult{present: true, node: znode{data: []byte(`{}`), stat: zk.Stat{Mzxid: 7}}}
		}
	}
	c.wrote(dcs.KeyLeader, []byte("pg0"), &zk.Stat{Mzxid: 9, EphemeralOwner: 0x1f}, false)
	c.apply(keys, seqs, res)
	require.True(t, c.dirty[dcs.KeyLeader], "a read older than our write is redone")
	require.Equal(t, []byte("pg0"), c.nodes[dcs.KeyLeader].data, "our write stays")
	require.True(t, c.dirty["members/pg0"], "new members are read next")
	require.True(t, c.dirty["members/pg1"])

	got, _, full := c.take()
	require.False(t, full)
	require.Equal(t, []string{dcs.KeyLeader, "members/pg0", "members/pg1"}, got)

	entries := c.entries()
	require.Equal(t, []dcs.Entry{
		{Key: dcs.KeyConfig, Value: []byte(`{}`), Version: "7"},
		{Key: dcs.KeyLeader, Value: []byte("pg0"), Version: "9", Session: "0x1f"},
	}, entries)
}

// spec/config.md `exhibitor`: the ensemble from /exhibitor/v1/cluster/list.
func TestExhibitorPoll(t *testing.T) {
	body := `{"servers":["zk2","zk1","zk2"],"port":2182}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, ExhibitorPath, r.URL.Path)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)
	ex := newExhibitorPoller(&Exhibitor{Hosts: []string{"127.0.0.2", host}, Port: p, Scheme: "http"},
		testutil.Logger(t))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	hosts, err := ex.poll(ctx)
	require.NoError(t, err, "the first host is down; the second answers")
	require.Equal(t, []string{"zk1:2182", "zk2:2182"}, hosts)

	body = `{"servers":[],"port":2182}`
	_, err = ex.poll(ctx)
	require.ErrorContains(t, err, "no servers")
}
