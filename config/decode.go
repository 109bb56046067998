package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem with one configuration value. Load and Validate
// return every FieldError they find, joined with errors.Join.
type FieldError struct {
	// Path is the dotted key path ("postgresql.data_dir").
	Path string
	// Value is the offending value as written ("" when missing).
	Value string
	// Message says what is wrong and what is allowed.
	Message string
	// Line is the 1-based line in the YAML file, 0 when the value did not
	// come from a file (environment, JSON, missing key).
	Line int
}

// Error formats the problem like Patroni's --validate-config does
// ("<path> <value> <message>"), prefixed by the line when known.
func (e *FieldError) Error() string {
	s := e.Path + " " + e.Value + " " + e.Message
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, s)
	}
	return s
}

// Warning is a non-fatal problem found while loading: an unknown key, a
// value replaced by a default, a deprecated setting.
type Warning struct {
	Path    string
	Line    int
	Message string
}

func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", w.Line, w.Path, w.Message)
	}
	return w.Path + ": " + w.Message
}

// decoder fills typed structs from a node tree, collecting every type error
// and warning about unknown keys instead of stopping at the first.
type decoder struct {
	errs     []error
	warnings []Warning
}

func (d *decoder) fail(path string, n *yaml.Node, msg string) {
	val, line := "", 0
	if n != nil {
		line = n.Line
		if n.Kind == yaml.ScalarNode {
			val = n.Value
		} else {
			val = kindName(n)
		}
	}
	d.errs = append(d.errs, &FieldError{Path: path, Value: val, Message: msg, Line: line})
}

func (d *decoder) warn(path string, n *yaml.Node, msg string) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.warnings = append(d.warnings, Warning{Path: path, Line: line, Message: msg})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "<map>"
	case yaml.SequenceNode:
		return "<list>"
	}
	return n.Value
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// nodeDecoder is implemented by types that decode themselves from a node.
type nodeDecoder interface {
	decodeNode(d *decoder, path string, n *yaml.Node)
}

var (
	nodeDecoderType = reflect.TypeFor[nodeDecoder]()
	yamlNodePtrType = reflect.TypeFor[*yaml.Node]()
)

// decode fills v (a pointer) from n.
func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if n == nil {
		return
	}
	if v.Type() == yamlNodePtrType {
		v.Set(reflect.ValueOf(clone(n)))
		return
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			v.SetZero()
			return
		}
		wasNil := v.IsNil()
		if wasNil {
			v.Set(reflect.New(v.Type().Elem()))
		}
		before := len(d.errs)
		d.decode(path, n, v.Elem())
		if wasNil && len(d.errs) > before && v.Elem().Kind() != reflect.Struct {
			v.SetZero() // a bad scalar stays unset, so its default applies
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, path, n)
		return
	}
	if isNull(n) && v.Kind() != reflect.Interface {
		return // an explicit null leaves the default
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(path, n, v)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "must be a string")
			return
		}
		v.SetString(scalarString(n))
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "must be a boolean (true/false, on/off, yes/no, 1/0)")
			return
		}
		b, ok := parseBool(n.Value)
		if !ok {
			d.fail(path, n, "must be a boolean (true/false, on/off, yes/no, 1/0)")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, ok := scalarInt(n)
		if !ok {
			d.fail(path, n, "must be an integer")
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "must be a number")
			return
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(path, n, "must be a number")
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		d.decodeSlice(path, n, v)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "must be a mapping of key: value")
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(join(path, k), n.Content[i+1], ev)
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
	case reflect.Interface:
		if g := toGeneric(n); g != nil {
			v.Set(reflect.ValueOf(g))
		} else {
			v.SetZero()
		}
	default:
		d.fail(path, n, fmt.Sprintf("cannot be decoded into %s", v.Type()))
	}
}

func (d *decoder) decodeSlice(path string, n *yaml.Node, v reflect.Value) {
	switch n.Kind {
	case yaml.SequenceNode:
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), c, s.Index(i))
		}
		v.Set(s)
	case yaml.ScalarNode:
		// Patroni accepts a comma-separated string wherever a list of
		// strings is expected (hosts, allowlist, ...).
		if v.Type().Elem().Kind() != reflect.String {
			d.fail(path, n, "must be a list")
			return
		}
		var s []string
		for p := range strings.SplitSeq(n.Value, ",") {
			if p = strings.TrimSpace(p); p != "" {
				s = append(s, p)
			}
		}
		sv := reflect.MakeSlice(v.Type(), len(s), len(s))
		for i, x := range s {
			sv.Index(i).SetString(x)
		}
		v.Set(sv)
	default:
		d.fail(path, n, "must be a list")
	}
}

// structFields maps yaml names to field indexes, and finds the ",inline"
// map that receives unknown keys (nil when unknown keys are warned about).
func structFields(t reflect.Type) (map[string]int, int) {
	fields := map[string]int{}
	extra := -1
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			extra = i
			continue
		}
		if name == "" {
			continue
		}
		fields[name] = i
		for a := range strings.SplitSeq(f.Tag.Get("alias"), ",") {
			if a != "" {
				fields[a] = i
			}
		}
	}
	return fields, extra
}

func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "must be a mapping (a section of key: value lines)")
		return
	}
	fields, extra := structFields(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i].Value, n.Content[i+1]
		if idx, ok := fields[k]; ok {
			d.decode(join(path, k), val, v.Field(idx))
			continue
		}
		if extra >= 0 {
			m := v.Field(extra)
			if m.IsNil() {
				m.Set(reflect.MakeMap(m.Type()))
			}
			ev := reflect.New(m.Type().Elem()).Elem()
			d.decode(join(path, k), val, ev)
			m.SetMapIndex(reflect.ValueOf(k), ev)
			continue
		}
		d.warn(join(path, k), n.Content[i], "unknown key, ignored")
	}
}

// scalarInt reads an integer scalar; quoted digits and integral floats are
// accepted, as Patroni's int() would.
func scalarInt(n *yaml.Node) (int64, bool) {
	if n.Kind != yaml.ScalarNode {
		return 0, false
	}
	s := strings.TrimSpace(n.Value)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<62 {
		return int64(f), true
	}
	return 0, false
}

// decodeInto decodes n into v and returns the problems found.
func decodeInto(path string, n *yaml.Node, v any) ([]error, []Warning) {
	var d decoder
	d.decode(path, n, reflect.ValueOf(v).Elem())
	return d.errs, d.warnings
}

// reflectValue returns the addressable value p points to.
func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
