package dcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file holds the tolerant readers the decoders use. Patroni is written
// in Python, so a value may arrive as an int or as a float (67108960.0), and
// older versions stored some numbers as strings; every reader accepts what a
// Python reader of the same field would accept and reports anything else as
// an error. A JSON null always reads as "absent".

var errNotObject = errors.New("not a JSON object")

// decodeAny decodes one JSON value with numbers kept as json.Number.
func decodeAny(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("invalid character after top-level value")
	}
	return v, nil
}

// decodeFields splits a JSON object into its members. A value that is not an
// object (including null) is an error.
func decodeFields(data []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		return nil, errNotObject
	}
	return fields, nil
}

func isNull(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }

// readString reads a string field; null or absent reads as "".
func readString(fields map[string]json.RawMessage, name string) (string, error) {
	raw := fields[name]
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: want a string, got %s", name, short(raw))
	}
	return s, nil
}

// readBool reads a boolean field; null or absent reads as false.
func readBool(fields map[string]json.RawMessage, name string) (bool, error) {
	raw := fields[name]
	if isNull(raw) {
		return false, nil
	}
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s: want true or false, got %s", name, short(raw))
}

// numberText returns the text of a number given as a JSON number or as a
// JSON string holding one, as Python's int(value) would accept it.
func numberText(raw json.RawMessage) (string, bool) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return strings.TrimSpace(s), true
	}
	s := string(raw)
	return s, isJSONNumber(s)
}

// parseUint reads a non-negative integer; a float is truncated as Python's
// int() does.
func parseUint(raw json.RawMessage) (uint64, bool) {
	s, ok := numberText(raw)
	if !ok {
		return 0, false
	}
	if n, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= -1 || f >= math.MaxUint64 {
		return 0, false
	}
	if f < 0 {
		return 0, true
	}
	return uint64(f), true
}

// parseInt reads an integer that fits an int; a float is truncated.
func parseInt(raw json.RawMessage) (int, bool) {
	s, ok := numberText(raw)
	if !ok {
		return 0, false
	}
	if n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
		if n < math.MinInt || n > math.MaxInt {
			return 0, false
		}
		return int(n), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int(f), true
}

// readLSN reads a WAL position field: nil when absent or null.
func readLSN(fields map[string]json.RawMessage, name string) (*LSN, error) {
	raw := fields[name]
	if isNull(raw) {
		return nil, nil
	}
	n, ok := parseUint(raw)
	if !ok {
		return nil, fmt.Errorf("%s: want a WAL position in bytes, got %s", name, short(raw))
	}
	l := LSN(n)
	return &l, nil
}

// readIntPtr reads an integer field: nil when absent or null.
func readIntPtr(fields map[string]json.RawMessage, name string) (*int, error) {
	raw := fields[name]
	if isNull(raw) {
		return nil, nil
	}
	n, ok := parseInt(raw)
	if !ok {
		return nil, fmt.Errorf("%s: want an integer, got %s", name, short(raw))
	}
	return &n, nil
}

// scalarText reads a string, or the literal text of a number, as a string.
func scalarText(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	if raw[0] == '"' {
		var s string
		return s, json.Unmarshal(raw, &s) == nil
	}
	s := string(raw)
	return s, isJSONNumber(s)
}

// pyTruthy reports whether a JSON value is true by Python's rules: false,
// null, 0, "", [] and {} are false, anything else is true.
func pyTruthy(raw json.RawMessage) bool {
	v, err := decodeAny(raw)
	if err != nil {
		return false
	}
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		f, err := x.Float64()
		return err != nil || f != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// maxShown bounds how much of a bad value an error quotes.
const maxShown = 200

func short(raw []byte) string {
	if len(raw) > maxShown {
		return string(raw[:maxShown]) + "..."
	}
	return string(raw)
}

func decodeError(key string, data []byte, err error) *DecodeError {
	return &DecodeError{Key: key, Value: short(data), Err: err}
}

// Timestamps. Patroni writes datetime.isoformat(): "2023-09-13T18:00:00-03:00",
// with ".ffffff" only when the microseconds are non-zero, and "+00:00" for
// UTC. It reads them with dateutil, which is lenient; parseTime accepts the
// ISO-8601 variants a person or another tool would write.

var timeLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
}

// maxTimeLen bounds the timestamps parseTime tries, far above the 32 bytes
// of the longest isoformat output.
const maxTimeLen = 64

// parseTime parses an ISO-8601 timestamp. A time without a zone is taken as
// UTC. The result is truncated to microseconds (Python's precision) and
// carries a fixed zone with the written offset (time.UTC for offset 0), so
// that it formats back as written.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxTimeLen {
		return time.Time{}, fmt.Errorf("timestamp of %d bytes is too long", len(s))
	}
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	var firstErr error
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err == nil {
			return normalizeTime(t), nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return time.Time{}, firstErr
}

func normalizeTime(t time.Time) time.Time {
	t = t.Truncate(time.Microsecond)
	_, off := t.Zone()
	if off == 0 {
		return t.In(time.UTC)
	}
	return t.In(time.FixedZone("", off))
}

// formatTime formats t as Python's datetime.isoformat does.
func formatTime(t time.Time) string {
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = append(b, fmt.Sprintf("%06d", us)...)
	}
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	b = append(b, sign)
	b = append(b, fmt.Sprintf("%02d:%02d", off/3600, off/60%60)...)
	if off%60 != 0 {
		b = append(b, fmt.Sprintf(":%02d", off%60)...)
	}
	return string(b)
}
