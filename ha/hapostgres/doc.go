// Package hapostgres adapts a postgres.Manager to the small interfaces the
// HA loop needs: Adapter implements ha.Postgres and the optional
// ha.GracefulStopper, ha.DataDirRemover and ha.BasebackupCloner. It is the
// adapter the reference daemon runs, so a controller built from pgwarden's
// packages needs no code of its own between ha and postgres.
//
// To assemble a node (see the package example):
//
//  1. postgres.New(cfg) for the member's data directory, and open a
//     dcs.Store for the member (dcs/etcd or another backend).
//  2. New(manager, Options{...}): Name is the member name; UseRewind is
//     use_pg_rewind; History reads the timeline history from the store so
//     that Diverged can check a running replica; Changed and Promoted tell
//     a status cache (the REST API's) that Postgres started or was
//     promoted. In a standby cluster call SetStandby with the
//     standby_cluster section, and again whenever the dynamic
//     configuration changes.
//  3. api.NewPeers for ha.Peers: members ask each other over the REST API.
//  4. ha.New(ha.Options{Postgres: adapter, Peers: peers, Store: store, ...})
//     and Run.
//
// A status publisher (the REST API's GET /patroni) reads what the HA loop
// does not publish from the Adapter: Upstream and UpstreamOf for the member
// Postgres follows, ReplicaTimeline for a replica's timeline that never
// goes back while its postmaster runs.
//
// The Adapter holds no goroutine. Its methods are safe for concurrent use:
// ha.Node calls State from its loop while a long operation (start,
// promote, clone) runs in the background.
package hapostgres
