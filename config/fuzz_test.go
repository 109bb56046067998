package config

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary YAML to the loader: it must never panic, and a
// document that loads must survive validation, defaults, merging and the
// JSON encoding of its bootstrap.dcs section (spec/config.md §4).
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile("testdata/postgres0.yml")
	require.NoError(f, err)
	f.Add(sample)
	f.Add([]byte(minimal))
	f.Add([]byte("tags: {nofailover: on, failover_priority: x}\nbootstrap: {dcs: {ttl: -1, slots: {a: null}}}"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("postgresql: {parameters: {max_connections: 1e400}}\nlog: {mode: 0o777}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse(data)
		if cfg == nil {
			return
		}
		_ = err
		_ = cfg.Validate()
		d := cfg.WithDefaults()
		_, _ = d.YAML()
		eff, _ := Effective(cfg, cfg.Bootstrap.DCS)
		require.NotNil(t, eff)
		if cfg.Bootstrap.DCS != nil {
			js := cfg.Bootstrap.DCS.JSON()
			back, err := ParseDynamic(js)
			require.NoError(t, err, "%s", js)
			require.Equal(t, string(js), string(back.JSON()))
			_, _ = back.Settings()
		}
	})
}

// FuzzDynamicPatch feeds arbitrary PATCH /config bodies (spec/rest-api.md
// §6): never a panic, and an accepted patch yields valid compact JSON that
// re-applying leaves unchanged.
func FuzzDynamicPatch(f *testing.F) {
	base := []byte(`{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"4MB"}},"pause":true}`)
	f.Add(base, []byte(`{"ttl":60}`))
	f.Add(base, []byte(`{"postgresql":{"parameters":{"work_mem":null}}}`))
	f.Add(base, []byte(`{"a":[1,{"b":null}],"pause":null}`))
	f.Add([]byte(`{}`), []byte(`{"x":{"y":{"z":1e5}}}`))
	f.Fuzz(func(t *testing.T, orig, patch []byte) {
		d, err := ParseDynamic(orig)
		if err != nil {
			return
		}
		out, _, err := d.Patch(patch)
		if err != nil {
			return
		}
		js := out.JSON()
		back, err := ParseDynamic(js)
		require.NoError(t, err, "%s", js)
		again, changed, err := back.Patch(patch)
		require.NoError(t, err)
		if changed {
			// Only new objects holding nulls may differ on a second pass.
			require.Equal(t, string(again.JSON()), string(out.JSON()))
		}
		_, _ = out.Settings()
		_ = Diff(d, out)
	})
}
