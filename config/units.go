package config

import (
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Bytes is a size in bytes. YAML may give a plain integer (bytes) or a
// number with a unit: B, kB, MB, GB, TB (powers of 1024, as PostgreSQL).
type Bytes int64

// Seconds is a duration in whole seconds. YAML may give a plain integer
// (seconds) or a number with a unit: ms, s, min, h, d.
type Seconds int64

var byteUnits = map[string]float64{
	"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
}

var secondUnits = map[string]float64{
	"": 1, "ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400,
}

func parseUnit(s string, units map[string]float64) (float64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] == '-' || s[i] == '+' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
		i++
	}
	if i == 0 {
		return 0, false
	}
	num, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || math.IsNaN(num) || math.IsInf(num, 0) {
		return 0, false
	}
	mul, ok := units[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, false
	}
	v := num * mul
	if math.Abs(v) > 1<<62 {
		return 0, false
	}
	return v, true
}

// ParseBytes parses a size such as "1048576", "16MB" or "1kB" into bytes,
// the way the REST API reads its lag parameter.
func ParseBytes(s string) (int64, bool) {
	v, ok := parseUnit(s, byteUnits)
	return int64(math.Round(v)), ok
}

// ParseSeconds parses a duration such as "30", "30s", "30min" or "1h" into
// seconds (fractions kept).
func ParseSeconds(s string) (float64, bool) {
	return parseUnit(s, secondUnits)
}

func (b *Bytes) decodeNode(d *decoder, path string, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind == yaml.ScalarNode {
		if v, ok := ParseBytes(n.Value); ok {
			*b = Bytes(v)
			return
		}
	}
	d.fail(path, n, "must be a size in bytes, optionally with a unit (B, kB, MB, GB, TB)")
}

func (s *Seconds) decodeNode(d *decoder, path string, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind == yaml.ScalarNode {
		if v, ok := ParseSeconds(n.Value); ok {
			*s = Seconds(math.Round(v))
			return
		}
	}
	d.fail(path, n, "must be a number of seconds, optionally with a unit (ms, s, min, h, d)")
}
