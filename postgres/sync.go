package postgres

import (
	"context"
	"fmt"
	"regexp"
	"sort"
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
