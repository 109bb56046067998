// Package consul is the Consul backend of dcs.Store, with the key layout,
// sessions and CAS rules Patroni uses (spec/dcs-layout.md §6), so a Patroni
// client reading the same Consul sees our cluster as a Patroni cluster.
//
// Usage:
//
//  1. Build a Config: DefaultConfig, or FileConfig.Config from the "consul"
//     section of a Patroni YAML file. Set Scope, Name and the cluster TTL.
//  2. Open the store with New. It starts one watcher goroutine and makes no
//     request until it is used.
//  3. Hand it to the HA loop as a dcs.Store. If the section has
//     register_service, TouchMember also keeps the member's catalog entry up
//     to date; Registrar exposes that step on its own.
//  4. Close it on shutdown (after ReleaseLeader for a clean hand-over).
//
// How the contract maps onto Consul:
//
//   - Keys live under "<namespace>/<scope>/" without a leading slash
//     ("service/batman/leader").
//   - Each member has one session named "<scope>-<name>" with TTL ttl/2
//     (Consul invalidates a session up to twice its TTL after the last
//     renewal, so keys expire about ttl after the last refresh),
//     Behavior "delete", no health checks and a 1 ms lock-delay, so a dead
//     leader's key is gone after ttl and can be taken at once. The session
//     is renewed only by TouchMember, AcquireLeader, TakeLeader and
//     UpdateLeader: a hung loop loses its keys.
//   - The member and leader keys are Consul locks held by that session
//     (?acquire). AcquireLeader is a lock, which fails while another session
//     holds the key.
//   - Every write is a Consul transaction. config, failover and sync use
//     ModifyIndex CAS (cas=0 is the create-if-absent of "initialize").
//     Leader-only writes (status, failsafe, sync, history, release) begin
//     with a check that the leader key is held by our session, so they land
//     only while we hold it.
//   - A watcher goroutine runs blocking queries (index + wait) on the
//     cluster prefix and keeps a cache. Cluster answers from the cache
//     without a request while the watcher is healthy and has seen this
//     store's writes, and Changes fires within milliseconds of a change of
//     the leader, failover, config, sync or initialize key.
//   - Client errors become dcs.ErrUnavailable (wrapping the cause); a lost
//     CAS is dcs.ErrConflict and a failed fence dcs.ErrLeaderLost.
package consul
