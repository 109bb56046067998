// Package kubernetes is a dcs.Store on the Kubernetes API (client-go),
// compatible with Patroni's kubernetes DCS (spec/dcs-layout.md §8): a
// Patroni node, patronictl or an operator reading the same namespace sees
// our cluster as a Patroni cluster.
//
// # Usage
//
//  1. Fill a Config: Scope, Name (the member name, which is the name of
//     its pod), Namespace, Labels, and UseEndpoints for Endpoints mode. The
//     connection comes from Config.REST, else the in-cluster service
//     account, else a kubeconfig. FileConfig maps the "kubernetes:" section
//     of a Patroni configuration.
//  2. New opens the Store and starts two list+watch streams (the cluster's
//     ConfigMaps or Endpoints, and its pods, both by label selector).
//  3. Hand it to ha.Node. The first Cluster call waits until both watches
//     are established.
//  4. Close stops the watches. It does not release the leader record.
//
// # Layout
//
// ConfigMaps mode (default) keeps the leader record, status and failsafe
// in ConfigMap <scope>-leader, the config, initialize and history in
// <scope>-config, and the failover and sync requests in <scope>-failover
// and <scope>-sync. Endpoints mode keeps the leader record in Endpoints
// <scope>, whose subsets point at the leader pod (pod IP and
// Config.Ports) so a selector-less Service <scope> routes to the leader and
// the leader switch and traffic switch are one write; the other objects are
// Endpoints of the same names, and a headless Service <scope>-config is
// created so the config Endpoints is not garbage-collected. All state is
// in annotations named as Patroni names them. Members are the pods
// selected by the labels: the member JSON is the pod's "status"
// annotation.
//
// # Versions and fencing
//
// Every conditional write is a strategic-merge PATCH carrying
// metadata.resourceVersion; a 409 is dcs.ErrConflict. Writes after a
// conflict re-read the object directly (bypassing the cache) and retry only
// when the re-read says that is still right, as Patroni does: an acquire
// that finds its own earlier attempt succeeded, a renewal that finds the
// record still ours. Kubernetes has no multi-object transaction, so the
// fence of SetSync, DeleteSync and SetHistory is the cached leader record
// naming this member and being live, which is the check Patroni makes.
//
// # Liveness
//
// Kubernetes has no server-side TTL. A reader remembers, per leader
// record (leader, acquireTime, renewTime, ttl, transitions), when it last
// saw it change on its own clock (Config.Clock), and treats the leader as
// absent once that is ttl ago (the ttl annotation, written by the leader).
// Timestamps a peer wrote are never compared with our clock. Changes fires
// when the live leader changes, including when it expires locally.
//
// Members are timed the same way: each TouchMember rewrites the pod's
// "pgwarden.io/lease" annotation ({"renewTime":..,"ttl":..}), and a pod
// whose status and lease have not changed for that ttl is not listed. The
// leader's own member lives as long as its leader record, so the leader
// skips touches that would change nothing. Pods without the lease
// annotation (written by Patroni) are members as long as the pod exists,
// as in Patroni. Renewal happens only through TouchMember, AcquireLeader,
// TakeLeader and UpdateLeader (dcs.Store "Liveness").
//
// # Pod labels
//
// TouchMember sets the role label (Config.RoleLabel) on the member's pod
// in the same PATCH as the status: LeaderLabelValue while it holds the
// leader record (StandbyLeaderLabelValue for a standby leader),
// FollowerLabelValue for a running replica, other running roles verbatim,
// none otherwise; TmpRoleLabel carries the default values; BootstrapLabels
// are set while bootstrapping or creating a replica. After acquiring or
// releasing the leader record the labels are patched at once; a failed
// label PATCH is retried by the next TouchMember, which sees the labels
// differ. The REST API's role stays authoritative.
//
// # Cost
//
// Cluster is served from the watch caches (ReadCache, no request; Config
// ReadConsistent lists instead). A steady-state HA cycle costs each replica
// one pod PATCH (TouchMember) and the leader one PATCH of its record
// (UpdateLeader), and no GET.
//
// # Errors
//
// 409 maps to dcs.ErrConflict; transport errors, timeouts, 5xx, 429,
// 401/403, answers with Retry-After and Config.RetriableHTTPCodes are
// retried with backoff (max 1 s) until the call's deadline and then map to
// dcs.ErrUnavailable. Cluster returns dcs.ErrUnavailable while a watch is
// not established (the API server is down) once the deadline passes.
package kubernetes
