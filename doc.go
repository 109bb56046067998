// Package pgwarden is a library for building PostgreSQL high-availability
// controllers, compatible with Patroni's configuration, REST API and DCS
// layout. This package holds no code; it is the map of the others.
//
// # How a node works
//
// Every node runs one loop, [github.com/pgwarden/pgwarden/ha.Node]:
//
//  1. Observe: read the cluster from the distributed configuration store
//     through a [github.com/pgwarden/pgwarden/dcs.Store] (etcd, ZooKeeper,
//     Consul, Kubernetes, or the in-memory store in tests), read the local
//     PostgreSQL state, and, only when a decision needs it, ask peers over
//     their REST API.
//  2. Decide: [github.com/pgwarden/pgwarden/ha.Decide] is a pure function
//     from that observation to an ordered list of actions and the one-line
//     reason Patroni would log ("no action. I am (node1), the leader with the
//     lock"). Everything that can make a cluster unsafe lives here, so it is
//     tested exhaustively with a simulated DCS, a simulated PostgreSQL and a
//     fake clock.
//  3. Act: compare-and-set writes to the DCS, start/stop/promote/demote/rewind
//     through [github.com/pgwarden/pgwarden/postgres.Manager], and callbacks
//     through package callbacks.
//  4. Wait for the next tick or for the DCS to report a change (a released
//     leader key, a switchover request), whichever comes first, so a failover
//     does not sleep out loop_wait.
//
// # Packages
//
//   - dcs: the cluster model, the Store interface and Patroni's encodings.
//   - dcs/memory, dcs/dcstest: an in-memory Store and the conformance suite
//     every backend passes.
//   - dcs/etcd (and further backends): real DCS implementations.
//   - postgres, callbacks: managing one PostgreSQL data directory.
//   - ha: the decision, the loop and the simulation.
//   - ha/hapostgres: the ha.Postgres on top of postgres.Manager.
//   - config, api: Patroni-compatible configuration and REST API; api.NewPeers
//     is the ha.Peers that asks other members over that API.
//
// A controller of your own assembles an ha.Node from
// hapostgres.New(postgres.Manager), a dcs.Store and api.NewPeers (see the
// example of package hapostgres). The reference daemon in examples/reference-daemon assembles these into a
// drop-in replacement for a Patroni node.
package pgwarden
