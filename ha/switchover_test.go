package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgwarden/pgwarden/dcs"
)

// In a switchover the old primary releases the key at its shutdown
// checkpoint, possibly before its WAL senders delivered that checkpoint:
// the named candidate must not take the key before it replayed past it.
func TestSwitchoverCandidateWaitsForShutdownCheckpoint(t *testing.T) {
	const ckpt = dcs.LSN(0x3000100)
	world := func(replay dcs.LSN, unlockedFor time.Duration) Observation {
		return newWorld("n2", "").with(func(o *Observation) {
			o.Cluster.Failover = &dcs.Failover{Leader: "n1", Candidate: "n2", Version: "7"}
			o.Cluster.Status.LastLSN = ckpt
			o.PG.Upstream = "n1"
			o.PG.ReceiveLSN, o.PG.ReplayLSN, o.PG.LSN = replay, replay, replay
			o.UnlockedSince = t0.Add(-unlockedFor)
		}).o
	}
	acquires := func(d Decision) bool {
		for _, a := range d.Actions {
			if _, ok := a.(AcquireLeader); ok {
				return true
			}
		}
		return false
	}

	d := Decide(world(ckpt, 50*time.Millisecond))
	require.False(t, acquires(d), d.Message)
	require.True(t, strings.HasPrefix(d.Message, "waiting to replay the shutdown checkpoint"), d.Message)
	require.Equal(t, t0.Add(catchUpPoll), d.WakeAt, "looks again shortly, not after loop_wait")

	d = Decide(world(ckpt+0x78, 50*time.Millisecond))
	require.True(t, acquires(d), "replayed the checkpoint record: takes the key (%s)", d.Message)

	d = Decide(world(ckpt, shutdownCatchUp+time.Second))
	require.True(t, acquires(d), "a candidate that never gets the checkpoint falls back to the lag rules (%s)", d.Message)

	// A replica that is not the switchover's source of truth (no failover
	// key: an ordinary failover) is not held back.
	o := world(ckpt, 50*time.Millisecond)
	o.Cluster.Failover = nil
	require.False(t, strings.HasPrefix(Decide(o).Message, "waiting to replay"))
}
