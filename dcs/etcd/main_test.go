package etcd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every Store, client and embedded server the tests
// start has stopped its goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
