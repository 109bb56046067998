package procfs

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Stat
	}{
		{"4242 (postgres) S 4200 4242 4242 0 -1", Stat{State: 'S', PPID: 4200}},
		{"77 (a (b) c) Z 1 77 77 0", Stat{State: 'Z', PPID: 1}},
		{"12 (consul) T 11 12", Stat{State: 'T', PPID: 11}},
	} {
		got, err := parseStat([]byte(tc.in))
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", "12 consul S 1", "12 (x) S", "12 (x) S x", "12 (x) SS 1"} {
		_, err := parseStat([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
}

func TestReadStatOfThisProcess(t *testing.T) {
	st, err := ReadStat(Path(os.Getpid()))
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.PPID)
	// The process's own line shows its main thread, which may sleep; the
	// thread reading its own line is running.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st, err = ReadStat(fmt.Sprintf("/proc/%d/task/%d/stat", os.Getpid(), syscall.Gettid()))
	require.NoError(t, err)
	require.Equal(t, string('R'), string(st.State), "a thread reads its own stat while running")
	_, err = ReadStat(Path(1 << 30))
	require.ErrorIs(t, err, os.ErrNotExist)
}
