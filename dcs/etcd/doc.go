// Package etcd is the etcd v3 backend of dcs.Store, laid out exactly like
// Patroni's etcd3 backend (spec/dcs-layout.md §1, §2, §4), so patronictl
// and vip-manager see a pgwarden cluster as a Patroni cluster. It also
// runs an etcd member inside the process (embedded mode), so three daemons
// can form their own etcd cluster and need no external DCS.
//
// Using the Store:
//
//  1. Fill a Config: Endpoints (or a Patroni `etcd3:` section through
//     ParseEtcd3Section and StoreConfig), Scope, the member Name, TTL, and
//     optionally Username/Password and CACert/Cert/Key.
//  2. Open connects, reads the cluster prefix once and starts one prefix
//     watch that keeps a cache current. Errors wrap dcs.ErrUnavailable; a
//     rejected password also wraps ErrAuth and a certificate or protocol
//     mismatch ErrTLS.
//  3. Each HA cycle calls Cluster (served from the cache: no range
//     request), TouchMember (one keepalive of the member's lease plus one
//     put when the member value changed) and, on the leader, UpdateLeader
//     (one keepalive plus one transaction fenced on the leader key holding
//     our name and lease, carrying the status and failsafe keys).
//  4. Wait on Changes: it fires when the leader, failover, config, sync or
//     initialize key changes, including when the leader key expires.
//  5. On shutdown call ReleaseLeader (one transaction: last status, then
//     delete if still ours) and Close. Nothing keeps the lease alive in the
//     background: a hung loop loses its keys after TTL.
//
// Keys and atomicity: one lease per Store (TTL = ttl) bound to
// members/<name> and, while leading, to leader; the leader key is acquired
// with a create_revision == 0 transaction; config, failover and sync use
// mod_revision compares (versions are mod_revisions in decimal); sync and
// history writes are fenced on the leader key; DeleteCluster deletes the
// prefix.
//
// The cache only moves forward: a key is replaced only by a newer
// mod_revision, deletions leave tombstones, and responses from an etcd
// member whose raft term or revision is behind what the Store already saw
// are rejected (a lagging member is abandoned and the prefix re-read).
// The range read is linearizable and the watch requires a leader, so a
// partitioned member cannot feed it. ReadMode chooses how fresh Cluster is:
// ReadSynced (default) asks the watch stream for a progress notification
// first, ReadCache serves the cache as is (Patroni's behaviour), and
// ReadConsistent does a range read every time (ctl-style stores without a
// member name always do).
//
// Embedded mode:
//
//  1. Fill a ServerConfig (Name, DataDir, client and peer URLs,
//     InitialCluster, ClusterState), or derive one from a Patroni `raft:`
//     section with ParseRaftSection and RaftSection.ServerConfig.
//  2. StartServer starts the member and waits until it has joined its
//     cluster, logging progress. A member restarted on its DataDir rejoins
//     with its data. To grow a running cluster, call AddMember through a
//     client of the running members, then start the new member with the
//     InitialCluster it returns and ClusterState StateExisting.
//  3. Open a Store on the members' client URLs; Close the Server last.
package etcd
