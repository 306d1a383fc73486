//go:build cgo

package backend

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/provision"
)

// SimulatorAvailable reports whether this binary has the embedded simulator,
// which needs cgo.
const SimulatorAvailable = true

// errNoSimulator is nil, because this binary has the simulator.
var errNoSimulator error

func openSimulator() (*Opened, error) {
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("start the TPM simulator: %w", err)
	}
	t := transport.FromReadWriteCloser(sim)
	// NOTE: the simulator has room in its NV for five of the six persistent
	// keys of the layout, so it has no SRK at 0x81000002; no guest
	// operation needs the SRK.
	result, err := provision.Provision(t, provision.Options{OmitSRK: true})
	if err != nil {
		sim.Close()
		return nil, fmt.Errorf("provision the TPM simulator: %w", err)
	}
	return &Opened{
		Open: once(t, func() (transport.TPMCloser, error) {
			return nil, errors.New("the TPM simulator cannot be reopened: its state lived in the closed connection")
		}),
		Provisioned: result,
	}, nil
}
