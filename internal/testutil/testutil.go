// Package testutil holds helpers for pgwarden's tests: free loopback ports,
// waiting for a condition without sleeping a fixed time, a per-test logger
// whose output shows only when the test fails, and a check that a required
// server binary is installed.
//
// It is imported only by tests, examples and benchmarks, never by library
// code (see ARCHITECTURE.md, "Packages and what each owns").
//
// Typical use:
//
//  1. Pick ports with FreePort or FreePorts and directories with t.TempDir.
//  2. Fail early with RequireBinary when a server binary is missing: the
//     failure says how to install it. Set PGWARDEN_ALLOW_SKIP=1 to skip such
//     tests on purpose instead.
//  3. Pass Logger(t) as the Logger of every component under test.
//  4. Wait for asynchronous outcomes with SucceedsSoon, whose function
//     returns an error that says what is not true yet.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// AllowSkipEnv is the environment variable that, set to "1", turns a missing
// test dependency (a server binary) from a test failure into a skip.
const AllowSkipEnv = "PGWARDEN_ALLOW_SKIP"

// AllowSkip reports whether the developer asked to skip tests whose
// dependencies are missing (PGWARDEN_ALLOW_SKIP=1).
func AllowSkip() bool { return os.Getenv(AllowSkipEnv) == "1" }

// RequireBinary returns the path of the executable path, looked up in PATH
// when it contains no slash. When it is missing the test fails with a
// message naming installHint (for example "apt-get install etcd-server" or
// "run scripts/install-deps.sh"), unless PGWARDEN_ALLOW_SKIP=1, in which case
// the test is skipped with the same message. A missing server binary is
// never a silent skip (ARCHITECTURE.md, "Tests: tiers").
func RequireBinary(t testing.TB, path, installHint string) string {
	t.Helper()
	resolved, err := exec.LookPath(path)
	if err == nil {
		return resolved
	}
	msg := fmt.Sprintf("required binary %s is not available: %v\ninstall it with: %s", path, err, installHint)
	if AllowSkip() {
		t.Skipf("%s\n(skipped because %s=1)", msg, AllowSkipEnv)
	}
	t.Fatalf("%s\n(set %s=1 to skip tests that need it)", msg, AllowSkipEnv)
	return ""
}
