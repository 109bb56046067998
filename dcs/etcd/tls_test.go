package etcd_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestTLS runs a Store against an embedded member that serves clients over
// TLS and requires client certificates (spec/config.md etcd3 cacert, cert,
// key), and checks that each kind of mismatch is reported as ErrTLS.
func TestTLS(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	ca := testutil.NewTestCA(t, "ca")
	rogue := testutil.NewTestCA(t, "rogue")
	server, cli, intruder := ca.IssueCert("server"), ca.IssueCert("client"), rogue.IssueCert("intruder")

	ports := testutil.FreePorts(t, 2)
	url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv, err := etcd.StartServer(ctx, etcd.ServerConfig{
		Name: "tls0", DataDir: filepath.Join(dir, "data"),
		ClientURLs: []string{url}, PeerURLs: []string{"http://127.0.0.1:" + strconv.Itoa(ports[1])},
		ClientTLS: &etcd.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CertFile, ClientCertAuth: true},
		Logger:    quietLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })

	st := openStore(t, []string{url}, "tls", "a", func(c *etcd.Config) {
		c.CACert, c.Cert, c.Key = ca.CertFile, cli.CertFile, cli.KeyFile
	})
	require.NoError(t, st.TouchMember(t.Context(), member("a", 1)))
	require.NoError(t, st.AcquireLeader(t.Context()))

	for _, tc := range []struct {
		name string
		cfg  etcd.Config
	}{
		{"server cert from an unknown CA", etcd.Config{Endpoints: []string{url}, CACert: rogue.CertFile, Cert: cli.CertFile, Key: cli.KeyFile}},
		{"no client certificate", etcd.Config{Endpoints: []string{url}, CACert: ca.CertFile}},
		{"client certificate from another CA", etcd.Config{Endpoints: []string{url}, CACert: ca.CertFile, Cert: intruder.CertFile, Key: intruder.KeyFile}},
		{"plain http to a TLS endpoint", etcd.Config{Endpoints: []string{"http" + url[len("https"):]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Scope, cfg.Name, cfg.Logger = "tls", "b", quietLogger(t)
			octx, ocancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer ocancel()
			_, err := etcd.Open(octx, cfg)
			require.ErrorIs(t, err, dcs.ErrUnavailable)
			require.ErrorIs(t, err, etcd.ErrTLS)
			t.Logf("%v", err)
		})
	}
}
