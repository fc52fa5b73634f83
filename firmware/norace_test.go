//go:build !race

package firmware_test

const raceEnabled = false
