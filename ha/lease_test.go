package ha

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLeaseBelief checks the write rule of ARCHITECTURE.md: the node's own
// lease ends ttl − margin after the renewal was issued, with the ttl that
// renewal used; a later refresh issued with a lower ttl (which the DCS may
// apply even if the reply is lost) caps it.
func TestLeaseBelief(t *testing.T) {
	tests := []struct {
		name      string
		lease     Lease
		refreshAt time.Duration
		ttl       time.Duration
		want      time.Time
	}{
		{"renewed with ttl 30s", Lease{Held: true, RenewedAt: t0, TTL: 30 * time.Second}, 0, 0, t0.Add(27 * time.Second)},
		{"ttl lowered to 5s one second later", Lease{Held: true, RenewedAt: t0, TTL: 30 * time.Second}, time.Second, 5 * time.Second, t0.Add(5500 * time.Millisecond)},
		{"ttl raised: no extension without a successful renewal", Lease{Held: true, RenewedAt: t0, TTL: 5 * time.Second}, time.Second, 30 * time.Second, t0.Add(4500 * time.Millisecond)},
		{"not held", Lease{}, time.Second, 5 * time.Second, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{lease: tc.lease}
			if tc.ttl > 0 {
				n.refreshing(t0.Add(tc.refreshAt), tc.ttl)
			}
			require.Equal(t, tc.want, n.lease.ValidUntil(0))
		})
	}
}
