// Package dcs is pgwarden's view of the distributed configuration store
// (DCS) that a Patroni-compatible cluster shares: the cluster model, the
// Store interface every backend implements, the sentinel errors, and the
// exact encodings Patroni 4.x uses for every key, so that a Patroni node,
// patronictl or vip-manager reading the same DCS sees a Patroni cluster
// (spec/dcs-layout.md).
//
// The package imports no backend or client library. Backends live in
// sub-packages (dcs/etcd, dcs/consul, dcs/zookeeper, dcs/kubernetes, and
// dcs/memory, an in-memory Store driven by a fake clock for tests) and all
// pass the same conformance suite, dcs/dcstest.
//
// # Using a Store
//
// The HA loop (ha.Node) is the main user; a ctl tool uses the read and CAS
// methods only.
//
//  1. Open a Store with a backend package, for one cluster (scope) and, in
//     a daemon, one member name. The Store owns that member's lease, session
//     or ephemeral owner; a Store opened without a member name returns
//     ErrNoMember from the methods that act for a member.
//
//  2. Read a snapshot with Cluster. It is built from one prefix read (or a
//     watch-fed cache) and is a value: never modified after it is returned,
//     safe to share, not to be changed by the caller. Absent keys are nil or
//     zero, never an error. Every part carries the backend Version of its
//     key, which later conditional writes take.
//
//  3. Publish the member with TouchMember once per cycle. This is what keeps
//     the member's lease alive: a Store never refreshes it in the background,
//     so a hung loop loses its keys after ttl.
//
//  4. Race for the leader with AcquireLeader (create-if-absent, bound to the
//     lease). ErrConflict means another member holds the key. The bootstrap
//     race is Initialize(ctx, "", true), then Initialize(ctx, sysid, false)
//     and TakeLeader once the data directory exists; CancelInitialize undoes
//     a failed bootstrap.
//
//  5. While leading, renew with UpdateLeader every cycle, publishing the
//     status (optime, slots) and failsafe map with it. ErrLeaderLost means
//     the key expired or was taken: stop acting as the leader at once. A
//     clean shutdown calls ReleaseLeader so that another member can take
//     over without waiting for ttl.
//
//  6. Between cycles, wait on Changes (with loop_wait as the timeout). It
//     fires when the leader, failover, config, sync or initialize key
//     changed; several changes coalesce into one wake-up, and the receiver
//     reads Cluster again.
//
//  7. Write shared keys with compare-and-set on the version last read:
//     SetConfig with Config.Version, SetFailover with Failover.Version,
//     SetSync and DeleteSync with Sync.Version (each the empty Version when
//     the snapshot has none). An empty Version means "unconditional".
//     SetSync returns the new version for the next write. The leader-only
//     writes (sync, history) are also fenced on the leader key.
//
//  8. Match errors with errors.Is against the sentinels: ErrConflict (a CAS
//     or create-if-absent lost, re-read and decide again), ErrLeaderLost
//     (demote), ErrUnavailable (the DCS did not answer by the context's
//     deadline; the outcome of a write is unknown), ErrNoMember, ErrClosed.
//     Backends wrap the client error together with the sentinel.
//
// Extras a backend may offer are small interfaces found by type assertion,
// such as RawWriter, which the conformance suite uses to store garbage.
//
// # Key layout
//
// Keys are relative to /<namespace>/<scope>/ (namespace defaults to
// "service"; Consul drops the leading slash, Kubernetes maps them to
// annotations). The Key* constants name them.
//
//	key             value                          bound to the lease  model
//	initialize      system identifier, "" = racing no                  Cluster.Initialize
//	config          dynamic configuration (JSON)   no                  Cluster.Config
//	leader          member name                    yes                 Cluster.Leader
//	members/<name>  member JSON                    yes                 Cluster.Members
//	status          {"optime":..,"slots":..,..}    no                  Cluster.Status
//	optime/leader   legacy optime integer          no                  Cluster.Status
//	history         [[tl,lsn,reason,time,leader]]  no                  Cluster.History
//	failover        {"leader":..,"member":..}      no                  Cluster.Failover
//	sync            {"leader":..,"quorum":..,..}   no                  Cluster.Sync
//	failsafe        {"<name>":"<api_url>",..}      no                  Cluster.Failsafe
//
// # Encodings
//
// The Encode* functions write compact JSON exactly as Patroni does: fields
// in Patroni's order, no spaces, characters outside printable ASCII escaped
// as \uXXXX. Maps that Patroni writes in Python dict order (tags, slots,
// failsafe, pending_restart_reason) are written with sorted keys, which is
// what the spec examples show. The Decode* functions accept the legacy
// forms: role "master" (read as "primary"), a member value that is a bare
// postgres:// URL with the API URL in application_name, a status that is a
// bare integer or holds string-encoded slots, a "leader:candidate" failover,
// a null sync_standby or absent quorum, history lines of 3, 4 or 5 elements,
// and numbers written as floats or numeric strings. Numbers inside tags and
// the config are json.Number. Failover times are written like Python's
// datetime.isoformat (2023-09-13T18:00:00-03:00, microseconds only when
// non-zero). A backend that stores keys in a key-value map hands the raw
// entries of one prefix read to BuildCluster.
//
// # Bad data
//
// A value that cannot be decoded never fails a snapshot and never panics. It
// degrades, and a *DecodeError naming the key is listed in Cluster.Problems:
//
//   - members/<name>: a member with only its name, version and session;
//   - config: Data {} with an empty Version, so the config is not valid and
//     nodes keep their last known one;
//   - status: the zero Status (a single bad field is dropped on its own);
//   - optime/leader: LastLSN 0;
//   - failover, sync, failsafe: nil, as if absent;
//   - history: an empty history.
//
// The leader key resolves to its member; a leader without a member key gets
// a member with only its name.
package dcs
