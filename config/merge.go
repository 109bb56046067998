package config

import (
	"fmt"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// localOnlyPG are postgresql keys the dynamic configuration cannot set.
var localOnlyPG = []string{"connect_address", "proxy_address", "listen", "config_dir", "data_dir", "pgpass", "authentication"}

var standbyClusterKeys = []string{"create_replica_methods", "host", "port", "primary_slot_name",
	"restore_command", "archive_cleanup_command", "recovery_min_apply_delay"}

// Effective merges the local configuration with the dynamic one using
// Patroni's precedence (spec/config.md §2): built-in defaults, then the
// dynamic ttl/loop_wait/retry_timeout, postgresql (minus local-only keys)
// and standby_cluster, then the local file, where postgresql keys override
// (except use_slots) but protected parameters are dropped, and other
// top-level keys are taken only when not already present. dyn may be nil
// (no dynamic configuration yet). The result's TTL, LoopWait and
// RetryTimeout are set and sanitized; warnings say what was dropped.
func Effective(local *Config, dyn *Dynamic) (*Config, []Warning) {
	var warns []Warning
	eff := mapNode()
	setKey(eff, "ttl", intNode(30))
	setKey(eff, "loop_wait", intNode(10))
	setKey(eff, "retry_timeout", intNode(10))
	sc := mapNode()
	for _, k := range standbyClusterKeys {
		setKey(sc, k, strNode(""))
	}
	setKey(eff, "standby_cluster", sc)
	pg := mapNode()
	setKey(pg, "use_slots", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	params := mapNode()
	for _, k := range []string{"wal_level", "hot_standby", "max_connections", "max_wal_senders",
		"max_prepared_transactions", "max_locks_per_transaction", "track_commit_timestamp",
		"max_replication_slots", "max_worker_processes", "wal_log_hints"} {
		setKey(params, k, defaultParamNode(k))
	}
	setKey(pg, "parameters", params)
	setKey(eff, "postgresql", pg)

	if dyn != nil {
		dt := dyn.Tree()
		st, _ := dyn.Settings()
		setKey(eff, "ttl", intNode(st.TTL))
		setKey(eff, "loop_wait", intNode(st.LoopWait))
		setKey(eff, "retry_timeout", intNode(st.RetryTimeout))
		if dpg := lookup(dt, "postgresql"); dpg != nil && dpg.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(dpg.Content); i += 2 {
				k, v := dpg.Content[i].Value, dpg.Content[i+1]
				if slices.Contains(localOnlyPG, k) {
					continue
				}
				if k == "parameters" && v.Kind == yaml.MappingNode {
					for j := 0; j+1 < len(v.Content); j += 2 {
						name, pv := v.Content[j].Value, v.Content[j+1]
						if slices.Contains(notSettable, name) {
							continue
						}
						if msg := checkProtected(name, toGeneric(pv)); msg != "" {
							warns = append(warns, Warning{Path: "postgresql.parameters." + name,
								Message: fmt.Sprintf("value %s %s; keeping the default", scalarString(pv), msg)})
							continue
						}
						if isNull(pv) {
							deleteKey(params, name)
							continue
						}
						setKey(params, name, normalizeParam(name, pv))
					}
					continue
				}
				setKey(pg, k, clone(v))
			}
		}
		if dsc := lookup(dt, "standby_cluster"); dsc != nil && dsc.Kind == yaml.MappingNode {
			for _, k := range standbyClusterKeys {
				if v := lookup(dsc, k); v != nil {
					setKey(sc, k, clone(v))
				}
			}
		}
	}

	lt := local.Tree()
	if lt == nil {
		lt = mapNode()
	}
	for i := 0; i+1 < len(lt.Content); i += 2 {
		k, v := lt.Content[i].Value, lt.Content[i+1]
		switch k {
		case "postgresql":
			if v.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				pk, pv := v.Content[j].Value, v.Content[j+1]
				switch {
				case pk == "use_slots":
				case pk == "parameters" && pv.Kind == yaml.MappingNode:
					for x := 0; x+1 < len(pv.Content); x += 2 {
						name := pv.Content[x].Value
						if IsProtected(name) {
							continue // protected parameters are dynamic only
						}
						setKey(params, name, clone(pv.Content[x+1]))
					}
				default:
					setKey(pg, pk, clone(pv))
				}
			}
		case "watchdog":
			setKey(eff, k, clone(v))
		case "citus":
			g, db := lookup(v, "group"), lookup(v, "database")
			if _, ok := scalarIntOK(g); ok && db != nil && db.ShortTag() == "!!str" {
				setKey(eff, k, clone(v))
			} else {
				warns = append(warns, Warning{Path: "citus", Message: "ignored: needs an integer group and a database"})
			}
		default:
			if lookup(eff, k) == nil {
				setKey(eff, k, clone(v))
			}
		}
	}
	out, w, _ := Decode(eff)
	warns = append(warns, w...)
	if out.Name == "" {
		out.Name = out.PostgreSQL.Name
	}
	return out, warns
}

// RoleParameters returns the GUCs for a PostgreSQL role (primary, replica,
// standby_leader; promoted counts as primary and demoted as replica):
// parameters_<role> merged over parameters, protected ones ignored.
func (c *Config) RoleParameters(role string) map[string]any {
	switch role {
	case "promoted":
		role = "primary"
	case "demoted":
		role = "replica"
	}
	out := map[string]any{}
	for k, v := range c.PostgreSQL.Parameters {
		out[k] = v
	}
	var over map[string]any
	switch role {
	case "primary":
		over = c.PostgreSQL.ParametersPrimary
	case "replica":
		over = c.PostgreSQL.ParametersReplica
	case "standby_leader":
		over = c.PostgreSQL.ParametersStandbyLeader
	}
	for k, v := range over {
		if !IsProtected(k) {
			out[k] = v
		}
	}
	return out
}

// RoleHBA returns pg_hba lines for a role: pg_hba_<role> replaces pg_hba
// when set.
func (c *Config) RoleHBA(role string) []string {
	switch role {
	case "primary", "promoted":
		if c.PostgreSQL.PgHBAPrimary != nil {
			return c.PostgreSQL.PgHBAPrimary
		}
	case "replica", "demoted":
		if c.PostgreSQL.PgHBAReplica != nil {
			return c.PostgreSQL.PgHBAReplica
		}
	case "standby_leader":
		if c.PostgreSQL.PgHBAStandbyLeader != nil {
			return c.PostgreSQL.PgHBAStandbyLeader
		}
	}
	return c.PostgreSQL.PgHBA
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func scalarIntOK(n *yaml.Node) (int64, bool) {
	if n == nil {
		return 0, false
	}
	return scalarInt(n)
}

func defaultParamNode(name string) *yaml.Node {
	def := protectedParams[name].def
	if _, err := strconv.Atoi(def); err == nil {
		return intNode(mustAtoi(def))
	}
	return strNode(def)
}

func mustAtoi(s string) int {
	i, _ := strconv.Atoi(s)
	return i
}

// normalizeParam turns integer-valued protected parameters into ints.
func normalizeParam(name string, v *yaml.Node) *yaml.Node {
	if p, ok := protectedParams[name]; ok && !p.isBool && p.choices == nil && name != "wal_keep_size" {
		if i, ok := scalarInt(v); ok {
			return intNode(int(i))
		}
	}
	return clone(v)
}

// BootstrapDynamic returns the dynamic configuration a bootstrapping node
// writes to the DCS: bootstrap.dcs, with synchronous_mode defaulting to
// quorum when Citus is configured (spec/config.md §2).
func (c *Config) BootstrapDynamic() *Dynamic {
	t := c.Bootstrap.DCS.Tree()
	if c.Citus != nil && c.Citus.Group != nil && c.Citus.Database != "" && lookup(t, "synchronous_mode") == nil {
		setKey(t, "synchronous_mode", strNode("quorum"))
	}
	return &Dynamic{tree: t}
}
