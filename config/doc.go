// Package config reads Patroni-compatible configuration: the local YAML file
// (or directory, or PATRONI_CONFIGURATION) with PATRONI_* environment
// variables merged over it, and the dynamic configuration stored as JSON in
// the DCS "config" key. It follows spec/config.md.
//
// Usage:
//
//  1. Load the local configuration: cfg, warnings, err := config.Load(path, nil).
//     err joins every type error (each a *FieldError with path, value, line);
//     warnings list unknown keys, which are not fatal.
//  2. Check it: cfg.Validate() reports every missing or invalid setting at
//     once; cfg.ValidateFull(ctx, opts) adds the machine checks of
//     validate-config (free ports, reachable DCS, binaries, data directory).
//  3. Fill defaults: cfg = cfg.WithDefaults().
//  4. Read the dynamic configuration from the DCS with ParseDynamic, or take
//     cfg.Bootstrap.DCS before the cluster exists; Settings() gives the typed
//     view with defaults and the timeout sanity rules applied.
//  5. Merge both with Effective(local, dynamic), which applies Patroni's
//     precedence (dynamic wins for ttl/loop_wait/retry_timeout and protected
//     PostgreSQL parameters, local wins for everything else).
//  6. On a change of the dynamic configuration, Diff(old, new) lists what
//     changed and which PostgreSQL parameters need a restart.
//
// SaveCache/LoadCache keep the last dynamic configuration in
// <data_dir>/patroni.dynamic.json; Sample and Generate implement
// --generate-sample-config and --generate-config for the CLI.
//
// Dynamic keeps the document as the user wrote it, key order included, and
// JSON() writes it compactly, as Patroni stores it.
//
// The package imports nothing else from pgwarden.
package config
