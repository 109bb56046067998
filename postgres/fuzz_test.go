package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/postgres"
)

// Parsers of server output and settings never panic, and a parsed
// synchronous_standby_names renders back to an equivalent value.
func FuzzParseSyncStandbyNames(f *testing.F) {
	for _, s := range []string{"", "FIRST 1 (a,b)", `ANY 2 ("X", y)`, "a, b", "*", "2 (a)", "ANY (", "FIRST x (a)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := postgres.ParseSyncStandbyNames(s)
		if err != nil || len(spec.Names) == 0 || spec.Num <= 0 {
			return
		}
		again, err := postgres.ParseSyncStandbyNames(spec.String())
		require.NoError(t, err, "rendered %q", spec.String())
		require.ElementsMatch(t, spec.Names, again.Names)
		require.Equal(t, spec.Quorum, again.Quorum)
	})
}

func FuzzParseControlDataAndHistory(f *testing.F) {
	f.Add("Database system identifier: 1\nDatabase cluster state: shut down\nLatest checkpoint location: 0/1\n")
	f.Add("1\t0/3000000\treason\n")
	f.Add("Latest checkpoint location: zz/1\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = postgres.ParseControlData(s)
		_, _ = postgres.ParseHistory(s)
	})
}
