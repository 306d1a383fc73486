//go:build !cgo

package backend

import "errors"

// SimulatorAvailable reports whether this binary has the embedded simulator,
// which needs cgo.
const SimulatorAvailable = false

// errNoSimulator is the error for --tpm simulator in a binary without it.
var errNoSimulator = errors.New("this vcomlink binary was built without cgo, so it has no TPM simulator; build one with CGO_ENABLED=1 go build ./cmd/vcomlink (a C compiler is needed)")

func openSimulator() (*Opened, error) {
	return nil, errNoSimulator
}
