package backend

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/provision"
)

// dialTimeout bounds connecting to a TPM socket.
const dialTimeout = 5 * time.Second

// Opened is a backend ready for the TPM service.
type Opened struct {
	// Open opens a connection to the TPM. The service calls it once at
	// start and again after a connection fails.
	Open func() (transport.TPMCloser, error)
	// Provisioned is what the simulator was provisioned with, including the
	// CA that issued its EK certificate; nil for other backends.
	Provisioned *provision.Result
}

// Open checks that the backend of spec can be reached and returns it. For
// the simulator it starts and provisions one; only one simulator can run in
// a process.
func Open(spec Spec) (*Opened, error) {
	switch spec.Kind {
	case Device:
		t, err := OpenDevice(spec.Path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no TPM device at %s: name one with --tpm PATH or a swtpm socket with --tpm unix:///path, or try the agent with --tpm simulator", spec.Path)
			}
			return nil, fmt.Errorf("%s: %w", spec.Path, err)
		}
		return &Opened{Open: once(t, func() (transport.TPMCloser, error) { return OpenDevice(spec.Path) })}, nil

	case Socket:
		t, err := OpenSocket(spec.Path, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("%s: %w; is swtpm running with --server type=unixio,path=%s?", spec, err, spec.Path)
		}
		return &Opened{Open: once(t, func() (transport.TPMCloser, error) { return OpenSocket(spec.Path, dialTimeout) })}, nil

	case Simulator:
		return openSimulator()
	}
	return nil, fmt.Errorf("unknown TPM backend %v", spec)
}

// once returns an opener that hands out first on its first call and calls
// reopen on later ones.
func once(first transport.TPMCloser, reopen func() (transport.TPMCloser, error)) func() (transport.TPMCloser, error) {
	return func() (transport.TPMCloser, error) {
		if first != nil {
			t := first
			first = nil
			return t, nil
		}
		return reopen()
	}
}
