// Package ha is the high-availability state machine of pgwarden: what a
// node does each cycle to keep exactly one writable PostgreSQL primary in
// a cluster, with Patroni's behaviour (spec/ha-loop.md) and its known
// weaknesses fixed.
//
// It has two halves.
//
//  1. Decide is a pure function. Given an Observation (the DCS snapshot,
//     local Postgres state, configuration and tags, peer answers when it
//     asked for them, the background operation, Now and the node's own
//     lease bookkeeping) it returns a Decision: an ordered list of Actions
//     (AcquireLeader, UpdateLeader, Promote, Demote, Follow, SetSync, ...)
//     and the one-line message Patroni would log ("no action. I am
//     (node1), the leader with the lock"). It does no I/O and keeps no
//     state, so every rule is a table test and every decision can be
//     replayed from its inputs. When it needs peer answers it returns a
//     lone ProbePeers action and is called again with Observation.Peers;
//     when an acquire or renewal fails it is called again with
//     Observation.Failure.
//
//  2. Node runs the loop: observe (dcs.Store.Cluster, Postgres.State, and
//     Peers.Probe when asked), Decide, run the actions in order stopping at
//     the first failure, publish the member key, then wait for loop_wait,
//     a dcs.Store.Changes wake-up or Wake (a REST request), whichever comes
//     first. Long operations (bootstrap, clone, start, promote, rewind,
//     crash recovery) run in the background while the loop keeps renewing
//     the lease. Status returns the last published state without blocking;
//     History the last changed decisions.
//
// To use it:
//
//  1. Get a Postgres (package ha/hapostgres adapts a postgres.Manager) and
//     Peers (api.NewPeers asks the other members' REST APIs), and open a
//     dcs.Store for the member.
//
//  2. Fill a Config from DefaultConfig: Name, Tags and the timing values.
//     The dynamic "config" key overrides ttl, loop_wait, retry_timeout,
//     maximum_lag_on_failover, synchronous_mode and pause every cycle.
//
//  3. New(Options{...}) and Run(ctx) in a goroutine. Cancelling ctx shuts
//     down cleanly: unless paused, Postgres is stopped and the leader key
//     released at once, so a replica takes over without waiting for ttl.
//
//  4. Hand the REST API's requests to the Node: Restart, ScheduleRestart,
//     CancelScheduledRestart, Reinitialize and Failsafe (POST /restart,
//     DELETE /restart, POST /reinitialize, POST /failsafe) queue work for
//     the loop, so Decide sees each request and every rule of the cycle
//     (lease, sync duty, pause) applies; Wake after a config or failover
//     write. Refusals are ErrRestartConditions, ErrNoLeader, ErrIsLeader,
//     ErrRunningAsLeader or a *BusyError.
//
// Safety rules enforced here:
//
//   - A node may accept writes only while it holds the leader key and its
//     lease has not expired by its own clock: Lease.RenewedAt is taken
//     before the renewal is sent, so RenewedAt + ttl − margin is never
//     later than the DCS's own expiry (CanAcceptWrites).
//   - Renewal is fenced (dcs.Store.UpdateLeader never recreates a key
//     another member holds); a node whose renewal fails demotes.
//   - Promote runs only after a successful acquire or renewal in the same
//     cycle, and Node refuses it when the lease is not valid.
//   - In synchronous modes a node is added to /sync only after it streams
//     and caught up with the last synchronous_standby_names change, leaves
//     /sync before synchronous_standby_names drops it, and only /sync
//     members (or quorum-vote winners) are promoted.
//
// Where pgwarden deliberately differs from Patroni (each found by the
// simulation in internal/sim): check_timeline defaults to true; a named
// switchover candidate that is unhealthy falls back to the automatic rules
// with the lag check; a named candidate outside /sync, behind the cluster
// timeline, or without quorum votes is not promoted; a paused stale primary
// does not retake the key; a key holder outside /sync releases the key
// instead of promoting; lag and "ahead" comparisons ignore peers on an
// older timeline; lowering the quorum waits until the remaining voters
// caught up.
package ha
