package dcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Keys of a cluster, relative to its prefix /<namespace>/<scope>/
// (spec/dcs-layout.md §1).
const (
	KeyInitialize = "initialize"
	KeyConfig     = "config"
	KeyLeader     = "leader"
	KeyMembers    = "members/" // followed by the member name
	KeyStatus     = "status"
	KeyOptime     = "optime/leader" // legacy status
	KeyHistory    = "history"
	KeyFailover   = "failover"
	KeySync       = "sync"
	KeyFailsafe   = "failsafe"
)

// Entry is one raw key as a key-value backend stores it, the input of
// BuildCluster.
type Entry struct {
	// Key is relative to the cluster prefix ("members/node1").
	Key string
	// Value is the stored bytes.
	Value []byte
	// Version is the backend version of the key.
	Version Version
	// Session is the lease/session/ephemeral owner the key is bound to, or "".
	Session string
}

// Every encoder below writes compact JSON exactly as Patroni 4.x writes it
// (spec/dcs-layout.md §2): fields in Patroni's order, no spaces, non-ASCII
// characters escaped. Maps whose order Patroni takes from a Python dict
// (tags, slots, failsafe, pending_restart_reason) are written with sorted
// keys. Every decoder accepts the legacy forms of §2 and never panics.

// EncodeMember returns the compact JSON Patroni writes for a member key
// (spec/dcs-layout.md §2.4). conn_url, api_url, state, role and version are
// always written; the other fields only when set, in this order:
// proxy_url, checkpoint_after_promote, tags, pending_restart,
// pending_restart_reason, xlog_location, replay_lsn, receive_lsn,
// replication_state, timeline, scheduled_restart, pause. Name, Version and
// Session are not part of the value.
func EncodeMember(m *Member) []byte {
	if m == nil {
		m = &Member{}
	}
	o := newObject()
	o.str("conn_url", m.ConnURL)
	o.str("api_url", m.APIURL)
	o.str("state", m.State)
	o.str("role", m.Role)
	o.str("version", m.PatroniVersion)
	if m.ProxyURL != "" {
		o.str("proxy_url", m.ProxyURL)
	}
	if m.CheckpointAfterPromote != nil {
		o.bool("checkpoint_after_promote", *m.CheckpointAfterPromote)
	}
	if len(m.Tags) > 0 {
		o.value("tags", m.Tags)
	}
	if m.PendingRestart {
		o.bool("pending_restart", true)
	}
	if len(m.PendingRestartReason) > 0 {
		o.key("pending_restart_reason")
		o.b = append(o.b, '{')
		for i, name := range sortedKeys(m.PendingRestartReason) {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			p := m.PendingRestartReason[name]
			o.b = appendString(o.b, name)
			o.b = append(o.b, ':')
			param := newObject()
			param.str("old_value", p.OldValue)
			param.str("new_value", p.NewValue)
			o.b = append(o.b, param.bytes()...)
		}
		o.b = append(o.b, '}')
	}
	if m.XLogLocation != nil {
		o.uint("xlog_location", uint64(*m.XLogLocation))
	}
	if m.ReplayLSN != nil {
		o.uint("replay_lsn", uint64(*m.ReplayLSN))
	}
	if m.ReceiveLSN != nil {
		o.uint("receive_lsn", uint64(*m.ReceiveLSN))
	}
	if m.ReplicationState != "" {
		o.str("replication_state", m.ReplicationState)
	}
	if m.Timeline != nil {
		o.int("timeline", *m.Timeline)
	}
	if r := m.ScheduledRestart; r != nil {
		sr := newObject()
		sr.str("schedule", r.Schedule)
		if r.PostmasterStartTime != "" {
			sr.str("postmaster_start_time", r.PostmasterStartTime)
		}
		if r.Role != "" {
			sr.str("role", r.Role)
		}
		if r.PostgresVersion != "" {
			sr.str("postgres_version", r.PostgresVersion)
		}
		if r.RestartPending {
			sr.bool("restart_pending", true)
		}
		if r.Timeout != "" {
			// Patroni stores the timeout as an int; keep text that is not
			// a number as a string rather than write invalid JSON.
			sr.key("timeout")
			if isJSONNumber(r.Timeout) {
				sr.b = append(sr.b, r.Timeout...)
			} else {
				sr.b = appendString(sr.b, r.Timeout)
			}
		}
		o.key("scheduled_restart")
		o.b = append(o.b, sr.bytes()...)
	}
	if m.Pause {
		o.bool("pause", true)
	}
	return o.bytes()
}

// DecodeMember decodes a member key (spec/dcs-layout.md §2.4): the JSON
// object, or the legacy bare "postgres://..." URL whose application_name
// query parameter carries the API URL. Role "master" reads as "primary".
// Numbers may be ints, floats or numeric strings; null reads as absent.
//
// On bad data (not a JSON object, or a field of the wrong type) it returns a
// member with only Name set and a *DecodeError: a member whose tags cannot be
// trusted must not be mistaken for one without tags.
func DecodeMember(name string, data []byte) (*Member, error) {
	m, err := decodeMember(name, data)
	if err != nil {
		return &Member{Name: name}, decodeError(KeyMembers+name, data, err)
	}
	return m, nil
}

func decodeMember(name string, data []byte) (*Member, error) {
	m := &Member{Name: name}
	if bytes.HasPrefix(data, []byte("postgres")) {
		// Not JSON, so invalid UTF-8 is replaced here as a JSON decoder
		// would have, to keep the value stable when written back as JSON.
		m.ConnURL, m.APIURL = parseLegacyURL(strings.ToValidUTF8(string(data), "\uFFFD"))
		return m, nil
	}
	f, err := decodeFields(data)
	if err != nil {
		return nil, err
	}
	var errs []error
	str := func(dst *string, field string) {
		s, err := readString(f, field)
		errs = append(errs, err)
		*dst = s
	}
	str(&m.ConnURL, "conn_url")
	str(&m.APIURL, "api_url")
	str(&m.State, "state")
	str(&m.Role, "role")
	if m.Role == "master" {
		m.Role = "primary"
	}
	str(&m.PatroniVersion, "version")
	str(&m.ProxyURL, "proxy_url")
	str(&m.ReplicationState, "replication_state")

	if raw := f["checkpoint_after_promote"]; !isNull(raw) {
		b, err := readBool(f, "checkpoint_after_promote")
		errs = append(errs, err)
		m.CheckpointAfterPromote = &b
	}
	m.PendingRestart, err = readBool(f, "pending_restart")
	errs = append(errs, err)
	m.Pause, err = readBool(f, "pause")
	errs = append(errs, err)

	m.XLogLocation, err = readLSN(f, "xlog_location")
	errs = append(errs, err)
	m.ReplayLSN, err = readLSN(f, "replay_lsn")
	errs = append(errs, err)
	m.ReceiveLSN, err = readLSN(f, "receive_lsn")
	errs = append(errs, err)
	m.Timeline, err = readIntPtr(f, "timeline")
	errs = append(errs, err)

	if raw := f["tags"]; !isNull(raw) {
		v, err := decodeAny(raw)
		tags, ok := v.(map[string]any)
		if err != nil || !ok {
			errs = append(errs, fmt.Errorf("tags: want an object, got %s", short(raw)))
		} else if len(tags) > 0 {
			m.Tags = tags
		}
	}
	if raw := f["pending_restart_reason"]; !isNull(raw) {
		m.PendingRestartReason, err = decodePendingReason(raw)
		errs = append(errs, err)
	}
	if raw := f["scheduled_restart"]; !isNull(raw) {
		m.ScheduledRestart, err = decodeScheduledRestart(raw)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// parseLegacyURL splits the pre-JSON member value
// postgres://user:pass@host:port/db?application_name=<api_url> into the
// connection URL (without the query) and the API URL.
func parseLegacyURL(s string) (connURL, apiURL string) {
	base, fragment, hasFragment := strings.Cut(s, "#")
	base, query, _ := strings.Cut(base, "?")
	connURL = base
	if hasFragment && fragment != "" {
		connURL += "#" + fragment
	}
	// Like Python's parse_qsl: malformed pairs are skipped.
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		k, errK := url.QueryUnescape(k)
		v, errV := url.QueryUnescape(v)
		if errK == nil && errV == nil && k == "application_name" {
			return connURL, strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return connURL, ""
}

func decodePendingReason(raw json.RawMessage) (map[string]PendingParam, error) {
	params, err := decodeFields(raw)
	if err != nil {
		return nil, fmt.Errorf("pending_restart_reason: want an object, got %s", short(raw))
	}
	out := make(map[string]PendingParam, len(params))
	for name, raw := range params {
		p, err := decodeFields(raw)
		if err != nil {
			return nil, fmt.Errorf("pending_restart_reason %q: want an object, got %s", name, short(raw))
		}
		oldV, okOld := scalarText(p["old_value"])
		newV, okNew := scalarText(p["new_value"])
		if !okOld || !okNew {
			return nil, fmt.Errorf("pending_restart_reason %q: want string values, got %s", name, short(raw))
		}
		out[name] = PendingParam{OldValue: oldV, NewValue: newV}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func decodeScheduledRestart(raw json.RawMessage) (*ScheduledRestart, error) {
	f, err := decodeFields(raw)
	if err != nil {
		return nil, fmt.Errorf("scheduled_restart: want an object, got %s", short(raw))
	}
	r := &ScheduledRestart{}
	var errs []error
	for _, field := range []struct {
		name string
		dst  *string
	}{
		{"schedule", &r.Schedule},
		{"postmaster_start_time", &r.PostmasterStartTime},
		{"role", &r.Role},
		{"postgres_version", &r.PostgresVersion},
	} {
		s, err := readString(f, field.name)
		errs = append(errs, err)
		*field.dst = s
	}
	// Patroni stores restart_pending as the REST request gave it and tests
	// it for truth, so any value is accepted by Python's rules.
	r.RestartPending = pyTruthy(f["restart_pending"])
	if t, ok := scalarText(f["timeout"]); ok {
		r.Timeout = t
	} else {
		errs = append(errs, fmt.Errorf("scheduled_restart timeout: want a number, got %s", short(f["timeout"])))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scheduled_restart: %w", err)
	}
	return r, nil
}

// EncodeStatus returns the JSON of the "status" key (spec/dcs-layout.md
// §2.5): optime always, slots and retain_slots only when non-empty (Patroni
// omits keys whose value would be null).
func EncodeStatus(s *Status) []byte {
	if s == nil {
		s = &Status{}
	}
	o := newObject()
	o.uint("optime", uint64(s.LastLSN))
	if len(s.Slots) > 0 {
		o.key("slots")
		o.b = append(o.b, '{')
		for i, name := range sortedKeys(s.Slots) {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendString(o.b, name)
			o.b = append(o.b, ':')
			o.b = appendValue(o.b, uint64(s.Slots[name]))
		}
		o.b = append(o.b, '}')
	}
	if len(s.RetainSlots) > 0 {
		o.value("retain_slots", s.RetainSlots)
	}
	return o.bytes()
}

// DecodeStatus decodes the "status" key (spec/dcs-layout.md §2.5), or a
// legacy bare optime integer. slots and retain_slots may be string-encoded
// JSON. Empty slots and retain_slots read as nil.
//
// A value that is neither an object nor a number gives the zero Status and a
// *DecodeError. Like Patroni, a bad field is dropped on its own (a bad
// optime reads as 0, bad slots as nil): the other fields are kept and the
// error names the field.
func DecodeStatus(data []byte) (Status, error) {
	var s Status
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '{' {
		n, ok := parseUint(trimmed)
		if !ok || trimmed[0] == '"' {
			return Status{}, decodeError(KeyStatus, data, errors.New("want an object or an integer optime"))
		}
		s.LastLSN = LSN(n)
		return s, nil
	}
	f, err := decodeFields(data)
	if err != nil {
		return Status{}, decodeError(KeyStatus, data, err)
	}
	var errs []error
	if raw := f["optime"]; !isNull(raw) {
		if n, ok := parseUint(raw); ok {
			s.LastLSN = LSN(n)
		} else {
			errs = append(errs, fmt.Errorf("optime: want an integer, got %s", short(raw)))
		}
	}
	if raw := unquoteJSON(f["slots"]); !isNull(raw) {
		slots, err := decodeSlots(raw)
		if err != nil {
			errs = append(errs, err)
		} else if len(slots) > 0 {
			s.Slots = slots
		}
	}
	if raw := unquoteJSON(f["retain_slots"]); !isNull(raw) {
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			errs = append(errs, fmt.Errorf("retain_slots: want an array of names, got %s", short(raw)))
		} else if len(names) > 0 {
			s.RetainSlots = names
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, decodeError(KeyStatus, data, err)
	}
	return s, nil
}

// unquoteJSON returns the JSON held in a string-encoded value (an old
// Patroni wrote slots as a JSON string), or raw itself.
func unquoteJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || raw[0] != '"' {
		return raw
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return raw
	}
	return json.RawMessage(s)
}

func decodeSlots(raw json.RawMessage) (map[string]LSN, error) {
	f, err := decodeFields(raw)
	if err != nil {
		return nil, fmt.Errorf("slots: want an object, got %s", short(raw))
	}
	slots := make(map[string]LSN, len(f))
	for name, v := range f {
		n, ok := parseUint(v)
		if !ok {
			return nil, fmt.Errorf("slots %q: want an integer, got %s", name, short(v))
		}
		slots[name] = LSN(n)
	}
	return slots, nil
}

// EncodeFailover returns the JSON of the "failover" key ("{}" for an empty
// request): leader, member and scheduled_at, each only when set, as
// Patroni's manual_failover writes them (spec/dcs-layout.md §2.7).
// scheduled_at is formatted like Python's isoformat, with microseconds only
// when non-zero.
func EncodeFailover(f *Failover) []byte {
	o := newObject()
	if f == nil {
		return o.bytes()
	}
	if f.Leader != "" {
		o.str("leader", f.Leader)
	}
	if f.Candidate != "" {
		o.str("member", f.Candidate)
	}
	if f.ScheduledAt != nil {
		o.str("scheduled_at", formatTime(*f.ScheduledAt))
	}
	return o.bytes()
}

// DecodeFailover decodes the "failover" key, including the legacy
// "leader:candidate" form. It returns nil for an empty request. scheduled_at
// is read as ISO-8601 (a time without a zone is taken as UTC). On bad data
// (JSON that is not an object, fields of the wrong type, an unreadable
// scheduled_at) it returns nil and a *DecodeError: a request that cannot be
// read in full is not acted on.
func DecodeFailover(data []byte) (*Failover, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if !json.Valid(trimmed) {
		if f, ok := decodeLegacyFailover(strings.ToValidUTF8(string(trimmed), "\uFFFD")); ok {
			return f, nil
		}
	}
	fields, err := decodeFields(trimmed)
	if err != nil {
		return nil, decodeError(KeyFailover, data, err)
	}
	f := &Failover{}
	var errs []error
	f.Leader, err = readString(fields, "leader")
	errs = append(errs, err)
	f.Candidate, err = readString(fields, "member")
	errs = append(errs, err)
	at, err := readString(fields, "scheduled_at")
	errs = append(errs, err)
	if at != "" {
		t, err := parseTime(at)
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduled_at: %w", err))
		}
		f.ScheduledAt = &t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, decodeError(KeyFailover, data, err)
	}
	if f.IsEmpty() {
		return nil, nil
	}
	return f, nil
}

// decodeLegacyFailover reads "leader:candidate" (either side may be empty).
// Text that looks like broken JSON is not taken for it.
func decodeLegacyFailover(s string) (*Failover, bool) {
	if strings.ContainsAny(s[:1], `{["`) {
		return nil, false
	}
	parts := strings.SplitN(s, ":", 3) // like Python's split(":"), of which Patroni uses two parts
	f := &Failover{Leader: strings.TrimSpace(parts[0])}
	if len(parts) > 1 {
		f.Candidate = strings.TrimSpace(parts[1])
	}
	if f.IsEmpty() {
		return nil, true
	}
	return f, true
}

// EncodeSync returns the JSON of the "sync" key (spec/dcs-layout.md §2.8):
// {"leader":..,"quorum":..,"sync_standby":..} with the standbys sorted and
// comma-joined, or null when there are none. An empty state (no leader)
// encodes as "{}", which is how ZooKeeper "deletes" the key.
func EncodeSync(s *SyncState) []byte {
	o := newObject()
	if s.IsEmpty() {
		return o.bytes()
	}
	o.str("leader", s.Leader)
	o.int("quorum", s.Quorum)
	if len(s.Standbys) == 0 {
		o.null("sync_standby")
	} else {
		names := slices.Clone(s.Standbys)
		slices.Sort(names)
		o.str("sync_standby", strings.Join(names, ","))
	}
	return o.bytes()
}

// DecodeSync decodes the "sync" key. It returns nil for an empty state (no
// leader). Standbys are split on commas, trimmed and sorted; quorum may be
// an int, a float or a numeric string and reads as 0 when absent. On bad
// data it returns nil and a *DecodeError.
func DecodeSync(data []byte) (*SyncState, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	f, err := decodeFields(data)
	if err != nil {
		return nil, decodeError(KeySync, data, err)
	}
	s := &SyncState{}
	var errs []error
	s.Leader, err = readString(f, "leader")
	errs = append(errs, err)
	standbys, err := readString(f, "sync_standby")
	errs = append(errs, err)
	if raw := f["quorum"]; !isNull(raw) {
		n, ok := parseInt(raw)
		if !ok {
			errs = append(errs, fmt.Errorf("quorum: want an integer, got %s", short(raw)))
		}
		s.Quorum = n
	}
	if err := errors.Join(errs...); err != nil {
		return nil, decodeError(KeySync, data, err)
	}
	if s.Leader == "" {
		return nil, nil
	}
	for name := range strings.SplitSeq(standbys, ",") {
		if name = strings.TrimSpace(name); name != "" {
			s.Standbys = append(s.Standbys, name)
		}
	}
	slices.Sort(s.Standbys)
	return s, nil
}

// EncodeHistory returns the JSON of the "history" key (spec/dcs-layout.md
// §2.6): an array of [timeline, lsn, reason, timestamp, new_leader] lines.
// A line without NewLeader omits it, and without Timestamp too omits both,
// as lines read from an old history are written back.
func EncodeHistory(h *TimelineHistory) []byte {
	b := []byte{'['}
	if h != nil {
		for i, l := range h.Lines {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendValue(b, l.Timeline)
			b = append(b, ',')
			b = appendValue(b, uint64(l.LSN))
			b = append(b, ',')
			b = appendString(b, l.Reason)
			if l.Timestamp != "" || l.NewLeader != "" {
				b = append(b, ',')
				b = appendString(b, l.Timestamp)
			}
			if l.NewLeader != "" {
				b = append(b, ',')
				b = appendString(b, l.NewLeader)
			}
			b = append(b, ']')
		}
	}
	return append(b, ']')
}

// DecodeHistory decodes the "history" key: lines of 3, 4 or 5 elements.
// The LSN may be an integer, a numeric string or PostgreSQL's "X/Y" text;
// null elements read as empty. An empty history has nil Lines. On bad data
// it returns an empty history and a *DecodeError.
func DecodeHistory(data []byte) (*TimelineHistory, error) {
	var lines []json.RawMessage
	if err := json.Unmarshal(data, &lines); err != nil {
		return &TimelineHistory{}, decodeError(KeyHistory, data, err)
	}
	if lines == nil { // null
		return &TimelineHistory{}, decodeError(KeyHistory, data, errors.New("not a JSON array"))
	}
	h := &TimelineHistory{}
	for i, raw := range lines {
		l, err := decodeHistoryLine(raw)
		if err != nil {
			return &TimelineHistory{}, decodeError(KeyHistory, data, fmt.Errorf("line %d: %w", i, err))
		}
		h.Lines = append(h.Lines, l)
	}
	return h, nil
}

func decodeHistoryLine(raw json.RawMessage) (HistoryLine, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) < 3 || len(items) > 5 {
		return HistoryLine{}, fmt.Errorf("want an array of 3 to 5 elements, got %s", short(raw))
	}
	var l HistoryLine
	tl, ok := parseInt(items[0])
	if !ok {
		return l, fmt.Errorf("timeline: want an integer, got %s", short(items[0]))
	}
	l.Timeline = tl
	if lsn, ok := parseUint(items[1]); ok {
		l.LSN = LSN(lsn)
	} else {
		var s string
		if json.Unmarshal(items[1], &s) != nil {
			return l, fmt.Errorf("lsn: want a WAL position, got %s", short(items[1]))
		}
		lsn, err := ParseLSN(s)
		if err != nil {
			return l, fmt.Errorf("lsn: %w", err)
		}
		l.LSN = lsn
	}
	texts := []*string{&l.Reason, &l.Timestamp, &l.NewLeader}
	for i, raw := range items[2:] {
		if isNull(raw) {
			continue
		}
		if err := json.Unmarshal(raw, texts[i]); err != nil {
			return l, fmt.Errorf("element %d: want a string, got %s", i+2, short(raw))
		}
	}
	return l, nil
}

// EncodeFailsafe returns the JSON of the "failsafe" key (spec/dcs-layout.md
// §2.9), member names sorted. nil and an empty map both encode as "{}".
func EncodeFailsafe(f Failsafe) []byte {
	return appendValue(nil, map[string]string(f))
}

// DecodeFailsafe decodes the "failsafe" key: an object of member name to
// API URL. "{}" gives an empty, non-nil map. On bad data it returns nil and
// a *DecodeError.
func DecodeFailsafe(data []byte) (Failsafe, error) {
	var f map[string]string
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, decodeError(KeyFailsafe, data, err)
	}
	if f == nil {
		return nil, decodeError(KeyFailsafe, data, errNotObject)
	}
	return Failsafe(f), nil
}

// EncodeConfig returns compact JSON for a dynamic configuration, keys
// sorted, as Python's json.dumps writes values. To change a stored config
// without reordering it, edit ClusterConfig.Raw instead.
func EncodeConfig(data map[string]any) []byte {
	if data == nil {
		data = map[string]any{}
	}
	return appendValue(nil, data)
}

// DecodeConfig decodes the "config" key (spec/dcs-layout.md §2.2): Raw is the
// stored object with insignificant whitespace removed (key order and escapes
// kept) and Data is the object with numbers as json.Number. Version is left
// for the caller to set. On bad data (not a JSON object, including an empty
// value) it returns a config with Raw "{}", Data {} and an empty Version
// (invalid), and a *DecodeError.
func DecodeConfig(data []byte) (*ClusterConfig, error) {
	v, err := decodeAny(data)
	obj, ok := v.(map[string]any)
	if err == nil && !ok {
		err = errNotObject
	}
	if err != nil {
		return &ClusterConfig{Raw: json.RawMessage("{}"), Data: map[string]any{}},
			decodeError(KeyConfig, data, err)
	}
	var raw bytes.Buffer
	if err := json.Compact(&raw, data); err != nil {
		// Unreachable: data was just decoded.
		return &ClusterConfig{Raw: json.RawMessage("{}"), Data: map[string]any{}},
			decodeError(KeyConfig, data, err)
	}
	return &ClusterConfig{Raw: raw.Bytes(), Data: obj}, nil
}

// BuildCluster assembles a snapshot from the raw entries of one prefix read
// (spec/dcs-layout.md §1). Unknown keys are ignored (including the keys of
// Citus worker groups); when a key appears twice the later entry wins.
// Undecodable entries degrade and are reported in Cluster.Problems, in key
// order:
//
//   - members/<name>: a member with only Name, Version and Session;
//   - config: Data {} and an empty Version, so the config is not valid;
//   - status: the zero Status (with the key's Version); a bad field alone
//     is dropped;
//   - optime/leader (read only when status is absent): LastLSN 0;
//   - failover, sync, failsafe: nil;
//   - history: an empty history.
//
// The leader key resolves to its member; a leader without a member key gets
// a member with only its name. An empty leader value reads as no leader.
func BuildCluster(entries []Entry) *Cluster {
	byKey := make(map[string]Entry, len(entries))
	for _, e := range entries {
		byKey[e.Key] = e
	}
	keys := sortedKeys(byKey)
	_, hasStatus := byKey[KeyStatus]
	c := &Cluster{}
	problem := func(err error) {
		if err != nil {
			c.Problems = append(c.Problems, err)
		}
	}
	for _, key := range keys {
		e := byKey[key]
		switch {
		case key == KeyInitialize:
			c.Initialize = &Initialize{SystemID: string(e.Value), Version: e.Version}
		case key == KeyConfig:
			cfg, err := DecodeConfig(e.Value)
			if err == nil {
				cfg.Version = e.Version
			}
			problem(err)
			c.Config = cfg
		case key == KeyStatus:
			s, err := DecodeStatus(e.Value)
			s.Version = e.Version
			problem(err)
			c.Status = s
		case key == KeyOptime && !hasStatus:
			// Python's int(value): digits with optional sign and spaces.
			text := strings.TrimPrefix(strings.TrimSpace(string(e.Value)), "+")
			n, err := strconv.ParseUint(text, 10, 64)
			if err != nil {
				problem(decodeError(KeyOptime, e.Value, errors.New("want an integer")))
				n = 0
			}
			c.Status = Status{LastLSN: LSN(n), Version: e.Version}
		case key == KeyHistory:
			h, err := DecodeHistory(e.Value)
			h.Version = e.Version
			problem(err)
			c.History = h
		case key == KeyFailover:
			f, err := DecodeFailover(e.Value)
			if f != nil {
				f.Version = e.Version
			}
			problem(err)
			c.Failover = f
		case key == KeySync:
			s, err := DecodeSync(e.Value)
			if s != nil {
				s.Version = e.Version
			}
			problem(err)
			c.Sync = s
		case key == KeyFailsafe:
			f, err := DecodeFailsafe(e.Value)
			problem(err)
			c.Failsafe = f
		case strings.HasPrefix(key, KeyMembers):
			name := key[len(KeyMembers):]
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			m, err := DecodeMember(name, e.Value)
			m.Version, m.Session = e.Version, e.Session
			problem(err)
			c.Members = append(c.Members, m) // keys are sorted, so members are too
		}
	}
	if e, ok := byKey[KeyLeader]; ok && len(e.Value) > 0 {
		name := string(e.Value)
		m := c.Member(name)
		if m == nil {
			m = &Member{Name: name}
		}
		c.Leader = &Leader{Name: name, Version: e.Version, Session: e.Session, Member: m}
	}
	return c
}
