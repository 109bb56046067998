package postgres

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// SyncSpec describes synchronous_standby_names.
type SyncSpec struct {
	// Quorum selects "ANY n (...)" instead of "FIRST n (...)".
	Quorum bool
	// Num is n; 0 with names means 1.
	Num int
	// Names are the standby application names (member names).
	Names []string
}

var plainName = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// String renders the value: "" for no standbys, else "FIRST n (a,b)" or
// "ANY n (a,b)" with names sorted and double-quoted when needed.
func (s SyncSpec) String() string {
	if len(s.Names) == 0 {
		return ""
	}
	names := append([]string(nil), s.Names...)
	sort.Strings(names)
	for i, n := range names {
		if !plainName.MatchString(n) {
			names[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
		}
	}
	num := s.Num
	if num <= 0 {
		num = 1
	}
	kind := "FIRST"
	if s.Quorum {
		kind = "ANY"
	}
	return fmt.Sprintf("%s %d (%s)", kind, num, strings.Join(names, ","))
}

// SetSynchronousStandbyNames sets synchronous_standby_names, rewrites
// postgresql.conf and reloads a running server. It returns whether the
// value changed.
func (m *Manager) SetSynchronousStandbyNames(ctx context.Context, spec SyncSpec) (bool, error) {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	v := spec.String()
	m.mu.Lock()
	if m.overrides == nil {
		m.overrides = map[string]string{}
	}
	old, had := m.overrides["synchronous_standby_names"]
	m.overrides["synchronous_standby_names"] = v
	m.mu.Unlock()
	if had && old == v {
		return false, nil
	}
	ch, err := m.WriteConfig(ctx, m.Role(), nil)
	if err != nil {
		return false, err
	}
	if ch.Changed() && m.IsRunning() {
		if err := m.reload(); err != nil {
			return true, err
		}
	}
	return true, nil
}

// SyncStandbys returns the application names pg_stat_replication reports
// as synchronous (sync_state "sync" or "quorum", state "streaming"),
// sorted.
func (m *Manager) SyncStandbys(ctx context.Context) ([]string, error) {
	st, err := m.State(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range st.Replication {
		if r.State == "streaming" && (r.SyncState == "sync" || r.SyncState == "quorum") {
			out = append(out, r.ApplicationName)
		}
	}
	sort.Strings(out)
	return out, nil
}

// ParseSyncStandbyNames decodes synchronous_standby_names in its three
// forms: "FIRST n (a, b)", "ANY n (a, b)", "n (a, b)" (FIRST), and the
// legacy plain list "a, b" (FIRST 1). Double-quoted names keep their case;
// "*" stays "*".
func ParseSyncStandbyNames(v string) (SyncSpec, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return SyncSpec{}, nil
	}
	spec := SyncSpec{Num: 1}
	rest := v
	if kw, after, ok := strings.Cut(v, " "); ok {
		switch strings.ToUpper(kw) {
		case "ANY":
			spec.Quorum = true
			rest = strings.TrimSpace(after)
		case "FIRST":
			rest = strings.TrimSpace(after)
		}
	}
	if i := strings.IndexByte(rest, '('); i >= 0 {
		if !strings.HasSuffix(rest, ")") {
			return SyncSpec{}, fmt.Errorf("postgres: parse synchronous_standby_names %q: missing )", v)
		}
		n, err := strconv.Atoi(strings.TrimSpace(rest[:i]))
		if err != nil {
			return SyncSpec{}, fmt.Errorf("postgres: parse synchronous_standby_names %q: %w", v, err)
		}
		spec.Num = n
		rest = rest[i+1 : len(rest)-1]
	} else if spec.Quorum {
		return SyncSpec{}, fmt.Errorf("postgres: parse synchronous_standby_names %q: ANY needs a list", v)
	}
	for _, name := range strings.Split(rest, ",") {
		name = strings.TrimSpace(name)
		if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		} else {
			name = strings.ToLower(name)
		}
		if name != "" {
			spec.Names = append(spec.Names, name)
		}
	}
	return spec, nil
}
