package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os/exec"

	"github.com/pgwarden/pgwarden/callbacks"
	"github.com/pgwarden/pgwarden/postgres"
)

// Register a custom bootstrap method written in Go and a Go callback. The
// method here restores a cluster from a directory copy; a real one would
// fetch a backup. (Not run: it needs PostgreSQL binaries.)
func Example_customBootstrapAndCallback() {
	ctx := context.Background()
	notify := callbacks.Func(func(ctx context.Context, ev callbacks.Event, role, scope string) error {
		fmt.Printf("%s: %s is now %s\n", scope, ev, role)
		return nil
	})
	ex := callbacks.NewExecutor(callbacks.Config{
		Scope: "batman",
		Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart:      notify,
			callbacks.OnRoleChange: notify,
		},
	})
	defer ex.Close()

	restore := postgres.BootstrapFunc(func(ctx context.Context, m *postgres.Manager) error {
		// The data directory exists, is empty and belongs to RunAs.
		return exec.CommandContext(ctx, "cp", "-a", "/srv/golden-cluster/.", m.DataDir()).Run()
	})
	m, err := postgres.New(postgres.Config{
		Name:        "node1",
		Scope:       "batman",
		BinDir:      "/usr/lib/postgresql/15/bin",
		DataDir:     "/var/lib/postgresql/15/batman",
		Port:        5432,
		RunAs:       "postgres",
		Superuser:   postgres.User{Username: "postgres", Password: "secret"},
		Replication: postgres.User{Username: "replicator", Password: "secret"},
		Bootstrap: postgres.BootstrapConfig{
			Method:  "golden",
			Methods: map[string]postgres.BootstrapMethod{"golden": restore},
		},
		Callbacks: ex,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Bootstrap(ctx); err != nil { // fires on_start once running
		log.Fatal(err)
	}
	if err := m.PostBootstrap(ctx); err != nil {
		log.Fatal(err)
	}
}
