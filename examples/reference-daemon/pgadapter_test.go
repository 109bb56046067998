package main

import (
	"context"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/internal/testutil"
	"github.com/pgwarden/pgwarden/postgres"
)

// A node looks at its data directory before it has one (while it waits to
// clone). Once the data directory exists, pg_rewind must be reported as
// possible: a cached "no" from the empty directory once left a replica that
// had to be rewound after a failover following the new primary without ever
// streaming (spec ha-loop §6.2, can_rewind).
func TestRewindPossibleOnceDataExists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testutil.PGConfig(t, "rewindcheck", "node1")
	cfg.Bootstrap.Method = "template"
	cfg.Bootstrap.Methods = map[string]postgres.BootstrapMethod{"template": testutil.PGTemplateBootstrap(t)}
	m := testutil.PGManager(t, cfg)
	a := &pgAdapter{m: m, name: cfg.Name, useRewind: true}

	st, err := a.State(ctx)
	if err != nil {
		t.Fatalf("state of an empty data directory: %v", err)
	}
	if st.DataDir != ha.DataEmpty || st.CanRewind {
		t.Fatalf("empty data directory: DataDir=%v CanRewind=%v, want empty and false", st.DataDir, st.CanRewind)
	}

	if err := m.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	st, err = a.State(ctx)
	if err != nil {
		t.Fatalf("state after bootstrap: %v", err)
	}
	if st.DataDir != ha.DataPresent || !st.Running || !st.CanRewind {
		t.Fatalf("data directory with checksums, running: DataDir=%v Running=%v CanRewind=%v, want present, true, true",
			st.DataDir, st.Running, st.CanRewind)
	}

	// With use_pg_rewind off the answer is no, whatever the data directory.
	off := &pgAdapter{m: m, name: cfg.Name}
	if st, err := off.State(ctx); err != nil || st.CanRewind {
		t.Fatalf("use_pg_rewind off: CanRewind=%v err=%v, want false", st.CanRewind, err)
	}
}
