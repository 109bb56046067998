package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/api"
	"github.com/pgwarden/pgwarden/dcs"
)

func nullLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// table is what patronictl prints: a header, rows, right-aligned columns.
type table struct {
	header []string
	rows   [][]string
	right  map[int]bool
	// keys are the json/yaml keys when they differ from the header.
	keys []string
}

// write prints the table in one of patronictl's formats (spec §2).
func (t table) write(w io.Writer, format, title string) error {
	switch format {
	case "pretty", "topology":
		_, err := io.WriteString(w, t.pretty(title))
		return err
	case "tsv":
		fmt.Fprintln(w, strings.Join(t.header, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(w, strings.Join(r, "\t"))
		}
		return nil
	case "json", "yaml", "yml":
		keys := t.keys
		if keys == nil {
			keys = t.header
		}
		var list []map[string]any
		for _, r := range t.rows {
			m := map[string]any{}
			for i, v := range r {
				if v == "" {
					continue
				}
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					m[keys[i]] = n
				} else {
					m[keys[i]] = v
				}
			}
			list = append(list, m)
		}
		if format == "json" {
			b, err := json.Marshal(list)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(w, string(b))
			return err
		}
		b, err := yaml.Marshal(list)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fail("Unknown format %s", format)
}

func (t table) pretty(title string) string {
	widths := make([]int, len(t.header))
	multiline := false
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			for _, l := range strings.Split(c, "\n") {
				widths[i] = max(widths[i], utf8.RuneCountInString(l))
			}
			if strings.Contains(c, "\n") {
				multiline = true
			}
		}
	}
	var rule strings.Builder
	rule.WriteString("+")
	for _, wd := range widths {
		rule.WriteString(strings.Repeat("-", wd+2) + "+")
	}
	ruleS := rule.String()
	var b strings.Builder
	top := ruleS
	if title != "" {
		t := "+ " + title + " "
		if utf8.RuneCountInString(t) < len(ruleS) {
			rest := []rune(ruleS)[utf8.RuneCountInString(t):]
			top = t + string(rest)
		} else {
			top = t + "+"
		}
	}
	b.WriteString(top + "\n")
	line := func(cells []string) {
		split := make([][]string, len(cells))
		n := 1
		for i, c := range cells {
			split[i] = strings.Split(c, "\n")
			n = max(n, len(split[i]))
		}
		for k := 0; k < n; k++ {
			b.WriteString("|")
			for i := range cells {
				v := ""
				if k < len(split[i]) {
					v = split[i][k]
				}
				pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(v))
				if t.right[i] {
					b.WriteString(" " + pad + v + " |")
				} else {
					b.WriteString(" " + v + pad + " |")
				}
			}
			b.WriteString("\n")
		}
	}
	line(t.header)
	b.WriteString(ruleS + "\n")
	for i, r := range t.rows {
		if multiline && i > 0 {
			b.WriteString(ruleS + "\n")
		}
		line(r)
	}
	b.WriteString(ruleS + "\n")
	return b.String()
}

func lagMB(v any) string {
	switch n := v.(type) {
	case int64:
		return strconv.FormatInt((n+512*1024)/(1024*1024), 10)
	case int:
		return strconv.Itoa((n + 512*1024) / (1024 * 1024))
	}
	return ""
}

func anyString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// clusterTable builds the member table of spec/patronictl.md §2 from the
// same per-member view as GET /cluster.
func clusterTable(cl *dcs.Cluster, scope string, format string, extended bool) (table, string) {
	doc := api.BuildClusterDocument(cl, scope)
	members := doc.Members
	slices.SortFunc(members, func(a, b api.ClusterMember) int { return strings.Compare(a.Name, b.Name) })
	if format == "topology" {
		members = topologyOrder(cl, members)
	}
	// host:port when any member uses a port other than 5432 or two share a host.
	withPort := false
	hosts := map[string]int{}
	for _, m := range members {
		if m.Host == "" {
			continue
		}
		hosts[m.Host]++
		if (m.Port != 0 && m.Port != 5432) || hosts[m.Host] > 1 {
			withPort = true
		}
	}
	for _, m := range members {
		if m.Host == "" {
			continue
		}
		if m.PendingRestart || m.ScheduledRestart != nil || len(m.Tags) > 0 {
			extended = true
		}
	}
	t := table{
		header: []string{"Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag", "Replay LSN", "Lag"},
		keys:   []string{"Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"},
		right:  map[int]bool{5: true, 6: true, 7: true, 8: true, 9: true},
	}
	if extended {
		t.header = append(t.header, "Pending restart", "Pending restart reason", "Scheduled restart", "Tags")
		t.keys = append(t.keys, "Pending restart", "Pending restart reason", "Scheduled restart", "Tags")
	}
	leader := ""
	if cl.Leader != nil {
		leader = cl.Leader.Name
	}
	depth := topologyDepth(cl)
	for _, m := range members {
		host := m.Host
		if withPort && host != "" {
			host = fmt.Sprintf("%s:%d", m.Host, max(m.Port, 5432))
			if m.Port == 0 {
				host = m.Host + ":5432"
			}
		}
		name := m.Name
		if format == "topology" {
			d := depth[m.Name]
			if m.Name != leader {
				name = strings.Repeat("  ", max(d-1, 0)) + "+ " + m.Name
			}
		}
		tl := ""
		if m.Timeline != nil {
			tl = strconv.Itoa(*m.Timeline)
		}
		row := []string{scope, name, host, roleTitle(m.Role), m.State, tl,
			anyString(m.ReceiveLSN), lagMB(m.ReceiveLag), anyString(m.ReplayLSN), lagMB(m.ReplayLag)}
		if extended {
			pending, reason := "", ""
			if m.PendingRestart {
				pending = "*"
			}
			var lines []string
			for _, k := range slices.Sorted(maps.Keys(m.PendingRestartReason)) {
				p := m.PendingRestartReason[k]
				l := fmt.Sprintf("%s: %s->%s", k, p.OldValue, p.NewValue)
				if format == "pretty" && len(l) > 50 {
					l = k + ": [hidden - too long]"
				}
				lines = append(lines, l)
			}
			reason = strings.Join(lines, "\n")
			sched := ""
			if s := m.ScheduledRestart; s != nil {
				sched = anyString(s["schedule"])
				if v := anyString(s["postgres_version"]); v != "" {
					sched += " if version < " + v
				}
			}
			tags := ""
			if len(m.Tags) > 0 {
				if format == "pretty" {
					b, _ := yaml.Marshal(m.Tags)
					tags = strings.TrimRight(string(b), "\n")
				} else {
					b, _ := json.Marshal(m.Tags)
					tags = string(b)
				}
			}
			row = append(row, pending, reason, sched, tags)
		}
		t.rows = append(t.rows, row)
	}
	title := "Cluster: " + scope
	switch {
	case cl.Initialize == nil:
		title += " (uninitialized)"
	case cl.Initialize.SystemID == "":
		title += " (initializing)"
	default:
		title += " (" + cl.Initialize.SystemID + ")"
	}
	return t, title
}

func roleTitle(r string) string {
	words := strings.Split(r, "_")
	for i, w := range words {
		if w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// topologyDepth is each member's depth in the replication tree: the
// leader 0, its direct followers 1, members that replicatefrom those 2...
func topologyDepth(cl *dcs.Cluster) map[string]int {
	depth := map[string]int{}
	leader := ""
	if cl.Leader != nil {
		leader = cl.Leader.Name
	}
	var d func(name string, seen map[string]bool) int
	d = func(name string, seen map[string]bool) int {
		if name == leader {
			return 0
		}
		m := cl.Member(name)
		if m == nil || seen[name] {
			return 1
		}
		seen[name] = true
		up := m.ReplicateFrom()
		if up == "" || cl.Member(up) == nil || up == name {
			return 1
		}
		return d(up, seen) + 1
	}
	for _, m := range cl.Members {
		depth[m.Name] = d(m.Name, map[string]bool{})
	}
	return depth
}

func topologyOrder(cl *dcs.Cluster, ms []api.ClusterMember) []api.ClusterMember {
	leader := ""
	if cl.Leader != nil {
		leader = cl.Leader.Name
	}
	children := map[string][]api.ClusterMember{}
	var roots []api.ClusterMember
	for _, m := range ms {
		if m.Name == leader {
			continue
		}
		dm := cl.Member(m.Name)
		up := ""
		if dm != nil {
			up = dm.ReplicateFrom()
		}
		if up == "" || cl.Member(up) == nil || up == leader || up == m.Name {
			roots = append(roots, m)
		} else {
			children[up] = append(children[up], m)
		}
	}
	var out []api.ClusterMember
	seen := map[string]bool{}
	var walk func(m api.ClusterMember)
	walk = func(m api.ClusterMember) {
		if seen[m.Name] {
			return
		}
		seen[m.Name] = true
		out = append(out, m)
		for _, c := range children[m.Name] {
			walk(c)
		}
	}
	for _, m := range ms {
		if m.Name == leader {
			walk(m)
		}
	}
	for _, m := range roots {
		walk(m)
	}
	for _, m := range ms { // cycles
		walk(m)
	}
	return out
}

// printCluster prints the cluster table and, for pretty output, the footer.
func printCluster(w io.Writer, cl *dcs.Cluster, scope, format string, extended bool) error {
	t, title := clusterTable(cl, scope, format, extended)
	if format == "pretty" || format == "topology" {
		t.header = t.header[1:]
		for i := range t.rows {
			t.rows[i] = t.rows[i][1:]
		}
		right := map[int]bool{}
		for k := range t.right {
			right[k-1] = true
		}
		t.right = right
		if err := t.write(w, format, title); err != nil {
			return err
		}
		if cl.IsPaused() {
			fmt.Fprintln(w, " Maintenance mode: on")
		}
		if f := cl.Failover; f != nil && f.ScheduledAt != nil {
			fmt.Fprintf(w, " Switchover scheduled at: %s\n", f.ScheduledAt.Format("2006-01-02T15:04:05-07:00"))
			if f.Leader != "" {
				fmt.Fprintf(w, "%24s %s\n", "from:", f.Leader)
			}
			if f.Candidate != "" {
				fmt.Fprintf(w, "%24s %s\n", "to:", f.Candidate)
			}
		}
		return nil
	}
	return t.write(w, format, "")
}

// ---- YAML helpers for show-config / edit-config ---------------------------

func dumpYAML(v any) (string, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("encode yaml: %w", err)
	}
	return b.String(), nil
}

func cloneAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneAny(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = cloneAny(e)
		}
		return s
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	}
	return v
}

func readYAMLFile(path string, stdin io.Reader) (map[string]any, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fail("read %s: %v", path, err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fail("parse %s: %v", path, err)
	}
	return m, nil
}

// mergeInto deep-merges src into dst; nil values delete keys.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// setPath applies one -s a.b.c=VALUE (spec §3.10): VALUE is YAML, null
// removes the key, under postgresql.parameters the rest of the path is one
// GUC name, emptied parents are removed.
func setPath(m map[string]any, kv, orig string) error {
	key, val, ok := strings.Cut(kv, "=")
	if !ok || key == "" {
		return fail("Invalid parameter setting %s", orig)
	}
	var v any
	if err := yaml.Unmarshal([]byte(val), &v); err != nil {
		v = val
	}
	path := strings.Split(key, ".")
	if len(path) > 2 && path[0] == "postgresql" && path[1] == "parameters" {
		path = []string{path[0], path[1], strings.Join(path[2:], ".")}
	}
	var set func(cur map[string]any, p []string)
	set = func(cur map[string]any, p []string) {
		if len(p) == 1 {
			if v == nil {
				delete(cur, p[0])
			} else {
				cur[p[0]] = v
			}
			return
		}
		next, ok := cur[p[0]].(map[string]any)
		if !ok {
			if v == nil {
				return
			}
			next = map[string]any{}
			cur[p[0]] = next
		}
		set(next, p[1:])
		if len(next) == 0 {
			delete(cur, p[0])
		}
	}
	set(m, path)
	return nil
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fail("encode config: %v", err)
	}
	return b, nil
}

// unifiedDiff is a minimal line diff (LCS) in unified style.
func unifiedDiff(a, b string) string {
	x, y := strings.Split(strings.TrimRight(a, "\n"), "\n"), strings.Split(strings.TrimRight(b, "\n"), "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	out.WriteString("--- \n+++ \n")
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			out.WriteString(" " + x[i] + "\n")
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("-" + x[i] + "\n")
			i++
		default:
			out.WriteString("+" + y[j] + "\n")
			j++
		}
	}
	return out.String()
}
