package zookeeper

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/dcstest"
	"github.com/pgwarden/pgwarden/internal/testutil"
)

// testTTL is the session timeout of the test stores: short, so expiry
// tests are quick, but 4 s so that go-zookeeper's read timeout (2/3 of it)
// does not fire spuriously on a loaded machine.
const testTTL = 4 * time.Second

// openStore opens a Store on hosts for scope and member name; it is closed
// when t ends.
func openStore(t *testing.T, hosts []string, scope, name string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Hosts: hosts, Scope: scope, Name: name, TTL: testTTL, RetryTimeout: 5 * time.Second,
		Logger: testutil.Logger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	st, err := Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func harness(hosts func() []string) dcstest.Harness {
	return dcstest.Harness{
		New: func(t *testing.T, scope, name string) dcs.Store {
			return openStore(t, hosts(), scope, name)
		},
		TTL: testTTL,
	}
}

// TestConformance runs the dcs.Store conformance suite against a real
// standalone ZooKeeper (spec/dcs-layout.md §1–3, §7, §10).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	zk := testutil.StartZooKeeper(t)
	dcstest.Run(t, harness(func() []string { return []string{zk.Addr()} }))
}
