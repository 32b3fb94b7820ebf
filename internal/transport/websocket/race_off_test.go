//go:build !race

package websocket

// raceEnabled: see race_on_test.go.
const raceEnabled = false
