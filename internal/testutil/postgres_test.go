package testutil_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/internal/testutil"
	"github.com/pgwarden/pgwarden/postgres"
)

// PGTempDir is traversable and, as root, owned by the Postgres user.
func TestPGTempDir(t *testing.T) {
	d := testutil.PGTempDir(t)
	for _, p := range []string{filepath.Dir(d), d} {
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o755), st.Mode().Perm(), p)
	}
	if name := testutil.PGRunAs(t); name != "" {
		u, err := user.Lookup(name)
		require.NoError(t, err)
		st, err := os.Stat(d)
		require.NoError(t, err)
		require.Equal(t, u.Uid, strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)))
	}
}

// PGConfig is valid as returned.
func TestPGConfigValid(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the PostgreSQL binaries")
	}
	cfg := testutil.PGConfig(t, "scope", "member")
	require.NoError(t, cfg.Validate())
}

// A template-bootstrapped server starts and the cleanup stops it.
func TestPGManagerTemplate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	cfg := testutil.PGConfig(t, "scope", "member")
	cfg.Bootstrap.Method = "template"
	cfg.Bootstrap.Methods = map[string]postgres.BootstrapMethod{"template": testutil.PGTemplateBootstrap(t)}
	m := testutil.PGManager(t, cfg)
	require.NoError(t, m.Bootstrap(t.Context()))
	st, err := m.State(t.Context())
	require.NoError(t, err)
	require.True(t, st.Accepting)
	require.False(t, st.InRecovery)
}
