package testutil

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the package's tests and then fails the run if
// goroutines are left, like goleak.VerifyTestMain, but gives them up to
// grace to finish first (goleak alone waits about a second). Use it where a
// server the tests ran in-process closes its connections on its own
// schedule: an embedded etcd member's peer connections, for example, end
// only at their 5 s read timeout after the member stopped.
func VerifyTestMain(m *testing.M, grace time.Duration, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(grace)
		for {
			err := goleak.Find(opts...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines still running %s after the tests ended: %v\n", grace, err)
				code = 1
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	os.Exit(code)
}
