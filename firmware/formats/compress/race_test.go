//go:build race

package compress

// raceEnabled skips the tests that decode hundreds of MiB, which take
// minutes under the race detector; they run in every normal test run.
const raceEnabled = true
