// Package zookeeper is a dcs.Store on Apache ZooKeeper (3.5 or later), with
// the znode layout Patroni uses, so that Patroni tools read our clusters
// (spec/dcs-layout.md §1, §2, §7).
//
// Usage:
//
//  1. Fill a Config: Hosts ("zk1:2181", ...) or Exhibitor, Scope, and for a
//     daemon the member Name; TTL, LoopWait and RetryTimeout come from the
//     dynamic configuration (Patroni's ttl, loop_wait, retry_timeout).
//  2. Open returns a Store and starts connecting; it does not wait for
//     ZooKeeper. Every call waits for a session at most until its context
//     is done (RetryTimeout when the context has no deadline) and then fails
//     with dcs.ErrUnavailable.
//  3. Drive it from the HA loop: Cluster, TouchMember, AcquireLeader,
//     UpdateLeader, ...; wait on Changes between cycles.
//  4. On shutdown call ReleaseLeader (if leading), then Close.
//
// # Layout
//
// Everything lives under /<namespace>/<scope> (default /service/<scope>).
// "leader" and "members/<name>" are ephemeral znodes of the Store's
// ZooKeeper session, whose timeout is the ttl; every other key is a
// persistent znode holding the same bytes Patroni writes. Parents are
// created on demand.
//
// # Versions and fencing
//
// A dcs.Version is the znode's mzxid (the zxid of its last change), which
// never repeats, even after a delete and re-create, and is what Patroni
// calls the config's modify-version. Conditional writes turn it into a
// znode version check. Leader-only writes (UpdateLeader's status and
// failsafe, SetSync, DeleteSync, SetHistory) are one multi-operation
// transaction whose first operation checks the version of the leader
// znode, after the Store read that znode and saw it owned by its own
// session: if the leader znode was deleted or re-created meanwhile, nothing
// is written and the call returns dcs.ErrLeaderLost. (ZooKeeper can check a
// znode's version but not its owner in a transaction, so a leader znode
// deleted and re-created by someone else between that read and the
// transaction would pass; only TakeLeader and DeleteCluster do that.)
//
// # Sessions
//
// As in Patroni, giving up the leader key (ReleaseLeader) ends the session
// after deleting the leader znode, which also drops the member znode; the
// next call opens a new session and the next TouchMember re-creates the
// member. A session the server expired (after a partition longer than ttl)
// is replaced by a new one the same way; the Store then reports
// dcs.ErrLeaderLost from UpdateLeader unless the leader znode still carries
// its name, in which case it re-creates it in the new session, as Patroni
// does. A ttl changed by SetTTL applies to the next session; the session is
// restarted for it at the next TouchMember, but never while this member
// holds the leader key (Patroni restarts at once and so drops its lock).
//
// # Liveness
//
// The ZooKeeper client heartbeats on its own goroutines, so without care
// a hung HA loop would keep its leader znode as long as the process lives.
// dcs.Store forbids that: the Store therefore ends its session when neither
// TouchMember nor AcquireLeader, TakeLeader or UpdateLeader refreshed it for
// ttl (and the session owns an ephemeral znode), so the leader and member
// znodes vanish ttl after the last refresh, as an expiring lease would. A
// dead process or a partition loses them by the server's session timeout,
// which is also ttl. Close does not end the session (it stops the client
// without telling the server), so a closed Store's keys expire after ttl, as
// dcs.Store.Close requires.
//
// # Cache and watches
//
// Cluster serves a watch-fed cache. Every known znode carries a ZooKeeper
// watch (data watches on present znodes, exists watches on absent fixed
// keys, a child watch on members/); a fired watch marks its key, and only
// marked keys are read again, which re-arms their watches (ZooKeeper
// watches fire once). A steady-state Cluster call therefore costs one
// sync round trip, which guarantees that the watch events of every change
// committed before it have arrived, plus one read per znode that changed.
// Losing the connection or the session reloads everything. Changes fires
// on events of leader, failover, config, sync and initialize and when the
// session is lost or regained; watches are re-armed in the background so
// that a waiting loop is woken without reading in between.
//
// # Timeouts
//
// go-zookeeper requests can wait for a reconnect longer than a caller may,
// so every request runs bounded by the caller's context. A connect attempt
// to one server times out after max(1 s, RetryTimeout/2). go-zookeeper
// derives its read timeout (2/3 of the session timeout) and ping interval
// (1/3) from the negotiated session timeout; Patroni's max(loop_wait-2, 2)
// read timeout is not available in this client, so a hung (not crashed)
// server is noticed after 2/3 ttl at worst, still inside the session
// timeout, and calls meanwhile fail by their deadline.
//
// # Exhibitor
//
// With Config.Exhibitor the ensemble comes from Exhibitor's REST API
// (ExhibitorPath), read at Open and every PollInterval. A changed list is
// used for every later connection, and when the server the client is
// connected to left the ensemble the client moves to one that is in it,
// keeping its session.
package zookeeper
