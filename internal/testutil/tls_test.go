package testutil

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// handshake runs a TLS handshake between a server presenting srv and
// requiring a client certificate signed by srvCA, and a client that
// dials addr as host, trusts cliCA and presents cli.
func handshake(t *testing.T, srvCA *CA, srv Cert, cliCA *CA, cli Cert, host string) error {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(srv.CertFile, srv.KeyFile) // the files, as servers read them
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: srvCA.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{
		RootCAs: cliCA.Pool, Certificates: []tls.Certificate{cli.TLS}, ServerName: host,
	})
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if srvErr := <-done; err == nil {
		err = srvErr
	}
	return err
}

// A certificate issued by NewTestCA's CA is accepted by a server and a
// client that trust that CA, for the hosts it names only; one from another
// CA is refused.
func TestTestCA(t *testing.T) {
	ca := NewTestCA(t, "ca")
	rogue := NewTestCA(t, "rogue")
	srv, cli := ca.IssueCert("server"), ca.IssueCert("client")
	require.NoError(t, handshake(t, ca, srv, ca, cli, "localhost"))
	require.NoError(t, handshake(t, ca, srv, ca, cli, "127.0.0.1"))
	require.Error(t, handshake(t, ca, srv, ca, rogue.IssueCert("intruder"), "localhost"), "client certificate from another CA")
	require.Error(t, handshake(t, ca, srv, rogue, cli, "localhost"), "server certificate from an untrusted CA")
	ipOnly := ca.IssueCert("ip-only", "127.0.0.1")
	require.Error(t, handshake(t, ca, ipOnly, ca, cli, "localhost"), "host name not in the certificate")
	require.NotEqual(t, srv.CertFile, cli.CertFile)
}
