package postgres

import (
	"errors"
	"fmt"
	"sort"

	"github.com/pgwarden/pgwarden/callbacks"
)

// Option is one command line option of initdb, pg_basebackup or pg_rewind
// in Patroni's configuration format (spec/postgres.md §10).
type Option struct {
	Name string
	// Value is used when HasValue; rendered --name=value.
	Value    string
	HasValue bool
}

// Options is an ordered option list.
type Options []Option

// ErrMalformedOption is returned by ParseOptions for an option it cannot
// render.
var ErrMalformedOption = errors.New("postgres: malformed option")

// ErrForbiddenOption is returned when an option pgwarden sets itself is
// configured.
var ErrForbiddenOption = errors.New("postgres: forbidden option")

// ParseOptions converts a decoded YAML/JSON value in Patroni's format: a
// list of strings ("x" -> --x) and single-key maps ({k: v} -> --k=v, v must
// be a string), or a map (--k=v per entry, empty values skipped, in sorted
// key order since decoded maps have none).
func ParseOptions(v any) (Options, error) {
	var out Options
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		for _, item := range x {
			switch it := item.(type) {
			case string:
				out = append(out, Option{Name: it})
			case map[string]any:
				if len(it) != 1 {
					return nil, fmt.Errorf("%w: %v: a map item must have exactly one key", ErrMalformedOption, it)
				}
				for k, val := range it {
					s, ok := val.(string)
					if !ok {
						return nil, fmt.Errorf("%w: %s: value %v must be a string", ErrMalformedOption, k, val)
					}
					out = append(out, Option{Name: k, Value: unquoteOne(s), HasValue: true})
				}
			default:
				return nil, fmt.Errorf("%w: %v: want a string or a single-key map", ErrMalformedOption, item)
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := fmt.Sprint(x[k])
			if x[k] == nil || s == "" {
				continue
			}
			out = append(out, Option{Name: k, Value: unquoteOne(s), HasValue: true})
		}
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = v
		}
		return ParseOptions(m)
	default:
		return nil, fmt.Errorf("%w: %T: want a list or a map", ErrMalformedOption, v)
	}
	return out, nil
}

// unquoteOne replaces a value that shell-splits into one token by that
// token (quotes removed), as Patroni does.
func unquoteOne(s string) string {
	w, err := callbacks.Split(s)
	if err == nil && len(w) == 1 {
		return w[0]
	}
	return s
}

// Args renders the options, one argv element each.
func (o Options) Args() []string {
	out := make([]string, 0, len(o))
	for _, op := range o {
		if op.HasValue {
			out = append(out, "--"+op.Name+"="+op.Value)
		} else {
			out = append(out, "--"+op.Name)
		}
	}
	return out
}

var (
	forbiddenInitdb     = []string{"pgdata", "nosync", "pwfile", "sync-only", "version"}
	forbiddenBasebackup = []string{"pgdata", "format", "wal-method", "xlog-method", "gzip", "version", "dbname", "host", "port", "username", "password"}
	forbiddenRewind     = []string{"target-pgdata", "source-pgdata", "source-server", "write-recovery-conf", "dry-run", "restore-target-wal", "config-file", "no-ensure-shutdown", "version", "help"}
)

func (o Options) check(forbidden []string) error {
	var errs []error
	for _, op := range o {
		if op.Name == "" {
			errs = append(errs, fmt.Errorf("%w: empty name", ErrMalformedOption))
		}
		for _, f := range forbidden {
			if op.Name == f {
				errs = append(errs, fmt.Errorf("%w: --%s is set by pgwarden", ErrForbiddenOption, op.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// without drops forbidden options (basebackup skips them with an error log
// instead of failing, as Patroni does).
func (o Options) without(forbidden []string) (kept Options, dropped []string) {
	for _, op := range o {
		bad := false
		for _, f := range forbidden {
			if op.Name == f {
				bad = true
			}
		}
		if bad {
			dropped = append(dropped, op.Name)
		} else {
			kept = append(kept, op)
		}
	}
	return kept, dropped
}
