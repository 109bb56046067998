package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The generic form of every configuration document in this package is a
// *yaml.Node tree: it keeps the order of keys the user wrote (so the dynamic
// configuration is written to the DCS in that order) and the line of every
// value (so errors can point at it). Trees built from environment variables
// or JSON have line 0.

// parseYAML parses one YAML document into its root node. An empty document
// is an empty mapping.
func parseYAML(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	root := doc.Content[0]
	if err := rejectAliases(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

// rejectAliases refuses YAML aliases and anchors that nest too deep: they
// are never needed in a configuration and make merging cyclic.
func rejectAliases(n *yaml.Node, depth int) error {
	if depth > 100 {
		return fmt.Errorf("line %d: document nested deeper than 100 levels", n.Line)
	}
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("line %d: YAML aliases (*%s) are not supported in configuration", n.Line, n.Value)
	}
	for _, c := range n.Content {
		if err := rejectAliases(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// parseJSONObject parses a JSON object into a mapping node, keeping key
// order and number text. It rejects anything but a single object.
func parseJSONObject(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := jsonValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("not a JSON object")
	}
	return n, nil
}

func jsonValue(dec *json.Decoder, depth int) (*yaml.Node, error) {
	if depth > 100 {
		return nil, errors.New("JSON nested deeper than 100 levels")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, errors.New("JSON object key is not a string")
				}
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				setKey(m, key, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return m, nil
		case '[':
			s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				s.Content = append(s.Content, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return s, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return strNode(t), nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t)}, nil
	case nil:
		return nullNode(), nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func nullNode() *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"} }

func mapNode() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// lookup returns the value of key in a mapping node, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// lookupPath follows dotted keys through nested mappings.
func lookupPath(m *yaml.Node, path ...string) *yaml.Node {
	for _, p := range path {
		m = lookup(m, p)
		if m == nil {
			return nil
		}
	}
	return m
}

// setKey sets key in a mapping node, replacing an existing value in place
// (so the key keeps its position) or appending it.
func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, strNode(key), v)
}

// deleteKey removes key from a mapping node.
func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i:i], m.Content[i+2:]...)
			return
		}
	}
}

// ensureMap returns the mapping under key, creating it when absent or not a
// mapping.
func ensureMap(m *yaml.Node, key string) *yaml.Node {
	v := lookup(m, key)
	if v == nil || v.Kind != yaml.MappingNode {
		v = mapNode()
		setKey(m, key, v)
	}
	return v
}

// clone deep-copies a node tree.
func clone(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	c := *n
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, x := range n.Content {
			c.Content[i] = clone(x)
		}
	}
	return &c
}

// deepMerge merges src over dst (both mappings) in place: nested mappings
// merge recursively, a null in src deletes the key, anything else replaces.
// Keys new to dst are appended in src's order.
func deepMerge(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i].Value, src.Content[i+1]
		if isNull(v) {
			deleteKey(dst, k)
			continue
		}
		cur := lookup(dst, k)
		if cur != nil && cur.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
			deepMerge(cur, v)
			continue
		}
		setKey(dst, k, clone(v))
	}
}

// writeJSON writes n as compact JSON, the way Patroni writes the DCS
// config (json.dumps with separators=(',', ':')).
func writeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
			return nil
		}
		return writeJSON(b, n.Content[0])
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, n.Content[i].Value)
			b.WriteByte(':')
			if err := writeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			b.WriteString("null")
		case "!!bool":
			v, ok := parseBool(n.Value)
			if !ok {
				return fmt.Errorf("line %d: bad boolean %q", n.Line, n.Value)
			}
			b.WriteString(strconv.FormatBool(v))
		case "!!int":
			if json.Valid([]byte(n.Value)) {
				b.WriteString(n.Value)
				break
			}
			var v int64
			if err := n.Decode(&v); err != nil {
				writeJSONString(b, n.Value)
				break
			}
			b.WriteString(strconv.FormatInt(v, 10))
		case "!!float":
			if json.Valid([]byte(n.Value)) {
				b.WriteString(n.Value)
				break
			}
			var v float64
			if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				writeJSONString(b, n.Value)
				break
			}
			b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		default:
			writeJSONString(b, n.Value)
		}
	case yaml.AliasNode:
		return fmt.Errorf("line %d: YAML alias not supported", n.Line)
	default:
		b.WriteString("null")
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// toGeneric converts a node tree to plain Go values: map[string]any,
// []any, string, bool, json.Number, nil.
func toGeneric(n *yaml.Node) any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = toGeneric(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			s = append(s, toGeneric(c))
		}
		return s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			v, _ := parseBool(n.Value)
			return v
		case "!!int", "!!float":
			var b bytes.Buffer
			if err := writeJSON(&b, n); err == nil && b.Len() > 0 && b.Bytes()[0] != '"' {
				return json.Number(b.String())
			}
			return n.Value
		}
		return n.Value
	}
	return nil
}

// fromGeneric converts plain Go values back into a node tree. Map keys are
// sorted for a stable result.
func fromGeneric(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return strNode(fmt.Sprint(v))
	}
	return &n
}

// scalarString is the text of a scalar as Python's str() would show it for
// comparisons: booleans as true/false.
func scalarString(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		var b bytes.Buffer
		_ = writeJSON(&b, n)
		return b.String()
	}
	if n.ShortTag() == "!!bool" {
		v, _ := parseBool(n.Value)
		return strconv.FormatBool(v)
	}
	return n.Value
}

// parseBool accepts Patroni's boolean spellings, case-insensitively.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "yes", "1", "y":
		return true, true
	case "off", "false", "no", "0", "n":
		return false, true
	}
	return false, false
}
