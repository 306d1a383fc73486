//go:build race

package server

// raceEnabled reports whether the test binary runs with the race detector.
const raceEnabled = true
