package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// protectedParam describes one GUC Patroni controls (spec/config.md §5).
type protectedParam struct {
	def     string
	min     int64 // for integers
	isBool  bool
	choices []string
}

// ProtectedParameters are the GUCs that may only be set dynamically; they
// are written to postgresql.conf and passed on the postmaster command line.
// listen_addresses, port and cluster_name are derived and not settable.
var protectedParams = map[string]protectedParam{
	"wal_level":                 {def: "hot_standby", choices: []string{"hot_standby", "replica", "logical"}},
	"hot_standby":               {def: "on", choices: []string{"on"}},
	"max_connections":           {def: "100", min: 25},
	"max_wal_senders":           {def: "10", min: 3},
	"wal_keep_segments":         {def: "8", min: 1},
	"wal_keep_size":             {def: "128MB", min: 16 << 20},
	"max_prepared_transactions": {def: "0", min: 0},
	"max_locks_per_transaction": {def: "64", min: 32},
	"track_commit_timestamp":    {def: "off", isBool: true},
	"max_replication_slots":     {def: "10", min: 4},
	"max_worker_processes":      {def: "8", min: 2},
	"wal_log_hints":             {def: "on", isBool: true},
}

// notSettable are derived from other settings.
var notSettable = []string{"listen_addresses", "port", "cluster_name"}

// IsProtected reports whether a GUC is controlled by pgwarden and may only
// be set in the dynamic configuration.
func IsProtected(name string) bool {
	_, ok := protectedParams[name]
	return ok || slices.Contains(notSettable, name)
}

// checkProtected returns "" when v is acceptable for the protected GUC
// name (or name is not protected), else what is allowed.
func checkProtected(name string, v any) string {
	if slices.Contains(notSettable, name) {
		return "is derived by pgwarden and cannot be set"
	}
	p, ok := protectedParams[name]
	if !ok {
		return ""
	}
	s := strings.TrimSpace(fmt.Sprint(v))
	if b, isb := v.(bool); isb {
		s = map[bool]string{true: "on", false: "off"}[b]
	}
	switch {
	case p.isBool:
		if _, ok := parseBool(s); !ok {
			return "must be a boolean (on/off)"
		}
	case p.choices != nil:
		if b, ok := parseBool(s); ok && slices.Contains(p.choices, "on") && b {
			return ""
		}
		if !slices.Contains(p.choices, strings.ToLower(s)) {
			return "must be one of " + strings.Join(p.choices, ", ")
		}
	default:
		var n int64
		var ok bool
		i, err := strconv.ParseInt(s, 10, 64)
		switch {
		case name == "wal_keep_size" && err == nil:
			n, ok = i<<20, true // a plain number is megabytes
		case name == "wal_keep_size":
			n, ok = ParseBytes(s)
		default:
			n, ok = i, err == nil
		}
		if !ok || n < p.min {
			if name == "wal_keep_size" {
				return "must be a size >= 16MB"
			}
			return fmt.Sprintf("must be an integer >= %d", p.min)
		}
	}
	return ""
}

// postmasterGUCs need a PostgreSQL restart to change (context postmaster
// in pg_settings, PostgreSQL 12-17). The running server's pg_settings is
// the authority; this table serves Diff before a server is reachable.
var postmasterGUCs = map[string]bool{}

func init() {
	for g := range strings.FieldsSeq(`archive_mode autovacuum_freeze_max_age autovacuum_max_workers
	autovacuum_multixact_freeze_max_age bonjour bonjour_name cluster_name config_file data_directory
	data_sync_retry dynamic_shared_memory_type event_source external_pid_file hba_file hot_standby
	huge_pages huge_page_size ident_file io_method io_max_concurrency io_workers jit_provider
	listen_addresses logging_collector max_connections max_files_per_process
	max_locks_per_transaction max_logical_replication_workers max_pred_locks_per_transaction
	max_prepared_transactions max_replication_slots max_wal_senders max_worker_processes
	min_dynamic_shared_memory old_snapshot_threshold port recovery_target recovery_target_action
	recovery_target_inclusive recovery_target_lsn recovery_target_name recovery_target_time
	recovery_target_timeline recovery_target_xid reserved_connections shared_buffers
	shared_memory_type shared_preload_libraries superuser_reserved_connections
	track_activity_query_size track_commit_timestamp unix_socket_directories unix_socket_group
	unix_socket_permissions wal_buffers wal_decode_buffer_size wal_level wal_log_hints
	allow_alter_system summarize_wal_files autovacuum_worker_slots`) {
		postmasterGUCs[g] = true
	}
}

// NeedsRestart reports whether changing the GUC needs a PostgreSQL restart
// (as opposed to a reload).
func NeedsRestart(guc string) bool { return postmasterGUCs[strings.ToLower(guc)] }

// Change is one difference between two dynamic configurations.
type Change struct {
	// Path is the dotted key ("postgresql.parameters.shared_buffers").
	Path string
	// Old and New are the values as text; "" when absent.
	Old, New string
	// Restart is true when the change takes effect only after a
	// PostgreSQL restart; otherwise a reload (or nothing) applies it.
	Restart bool
}

// Diff lists what changed from old to new, sorted by path, and whether
// each change needs a PostgreSQL restart or only a reload.
func Diff(old, new *Dynamic) []Change {
	a, b := map[string]string{}, map[string]string{}
	flatten("", old.Tree(), a)
	flatten("", new.Tree(), b)
	var out []Change
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for _, k := range slicesSorted(keys) {
		if a[k] == b[k] {
			continue
		}
		c := Change{Path: k, Old: a[k], New: b[k]}
		for _, sec := range []string{"postgresql.parameters.", "postgresql.parameters_primary.",
			"postgresql.parameters_replica.", "postgresql.parameters_standby_leader."} {
			if g, ok := strings.CutPrefix(k, sec); ok && NeedsRestart(g) {
				c.Restart = true
			}
		}
		out = append(out, c)
	}
	return out
}

func slicesSorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func flatten(prefix string, n *yaml.Node, out map[string]string) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			flatten(join(prefix, n.Content[i].Value), n.Content[i+1], out)
		}
		return
	}
	if isNull(n) {
		return
	}
	out[prefix] = scalarString(n)
}
