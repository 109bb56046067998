//go:build race

package ha_test

// raceEnabled is true when the test binary runs under the race detector.
const raceEnabled = true
