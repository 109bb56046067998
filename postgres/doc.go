// Package postgres manages one PostgreSQL data directory the way Patroni
// does (spec/postgres.md): bootstrap, clone, configuration files, start,
// stop, restart, reload, promote, demote, follow, crash recovery,
// pg_rewind, replication slots and synchronous_standby_names, plus state
// queries over one long-lived pgx connection. It decides nothing about the
// cluster: package ha calls it.
//
// Usage:
//
//  1. Fill a Config: member Name, cluster Scope, BinDir, DataDir, Port,
//     credentials, Parameters, PgHBA. When the process runs as root set
//     RunAs (for example "postgres"): every Postgres program then runs as
//     that user and the files pgwarden writes are owned by it.
//  2. New(cfg) validates it (every problem at once) and returns a Manager.
//  3. A new cluster: Bootstrap (initdb, a custom script method from
//     Config.Bootstrap.Scripts, or a Go BootstrapMethod registered by name
//     in Config.Bootstrap.Methods), then PostBootstrap once it is the
//     primary (sets passwords, runs post_bootstrap, creates roles).
//  4. A new replica: CreateReplica(ctx, &leader) tries
//     Config.CreateReplicaMethods in order (basebackup, script methods,
//     or Go ReplicaMethods), then Start with RoleReplica.
//  5. Each HA cycle: State for the observation; Promote, Demote (with
//     optional pg_rewind), Follow, Restart, Reload, Stop as decided;
//     EnsureSlots on the primary, CopyLogicalSlots/AdvanceSlots on
//     replicas; SetSynchronousStandbyNames and SyncStandbys in sync mode.
//  6. Callbacks (on_start, on_stop, on_restart, on_reload,
//     on_role_change) go to Config.Callbacks, a callbacks.Executor that
//     never blocks; Config.Hooks are Go functions called synchronously
//     around every lifecycle step.
//
// Lifecycle methods are serialized by the Manager; State and the query
// helpers may be called concurrently with them.
package postgres
