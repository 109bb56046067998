package etcd_test

import (
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/internal/testutil"
)

// TestMain checks that every Store, client and embedded server the tests
// start has stopped its goroutines. A stopped embedded member's peer
// connections (lease renewals a follower forwarded to the raft leader) end
// at their 5 s read timeout, hence the grace.
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m, 15*time.Second)
}
