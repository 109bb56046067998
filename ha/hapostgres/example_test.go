package hapostgres_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/etcd"
	"github.com/pgwarden/pgwarden/ha"
	"github.com/pgwarden/pgwarden/ha/hapostgres"
	"github.com/pgwarden/pgwarden/postgres"
)

// A node assembled from the library's packages: postgres.Manager for the
// data directory, an etcd dcs.Store, hapostgres for ha.Postgres and
// api.NewPeers for ha.Peers. It needs PostgreSQL and etcd, so it is only
// compiled. A real node also serves api.NewHandler, which its peers probe
// and post failsafe heartbeats to.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	const name, scope = "node1", "demo"

	m, err := postgres.New(postgres.Config{
		Name: name, Scope: scope, BinDir: "/usr/lib/postgresql/15/bin",
		DataDir: "/var/lib/postgresql/15/demo", Port: 5432,
		Superuser:   postgres.User{Username: "postgres", Password: "secret"},
		Replication: postgres.User{Username: "replicator", Password: "secret"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	store, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{"127.0.0.1:2379"},
		Scope: scope, Name: name, TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = store.Close() }()

	pg := hapostgres.New(m, hapostgres.Options{
		Name:      name,
		UseRewind: true,
		History: func(ctx context.Context) (*dcs.TimelineHistory, error) {
			cl, err := store.Cluster(ctx)
			if err != nil {
				return nil, err
			}
			return cl.History, nil
		},
	})
	peers := api.NewPeers(api.PeersConfig{Username: "patroni", Password: "secret"})

	cfg := ha.DefaultConfig()
	cfg.Name = name
	cfg.UsePgRewind = true
	node, err := ha.New(ha.Options{
		Config:   cfg,
		Store:    store,
		Postgres: pg,
		Peers:    peers,
		APIURL:   "http://10.0.0.1:8008/patroni",
		ConnURL:  "postgres://10.0.0.1:5432/postgres",
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Print(err)
	}
}
