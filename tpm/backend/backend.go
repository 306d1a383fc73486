// Package backend opens the TPM that the agent serves: a TPM character
// device, a raw TPM command socket such as swtpm's, or the embedded TPM 2.0
// reference simulator.
package backend

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Kind is a type of TPM backend.
type Kind int

const (
	// Device is a TPM character device such as /dev/tpmrm0.
	Device Kind = iota + 1
	// Socket is a Unix socket that carries raw TPM commands, as swtpm's
	// "--server type=unixio" serves.
	Socket
	// Simulator is the embedded TPM 2.0 reference simulator, provisioned at
	// start with the well-known layout.
	Simulator
)

// DefaultDevice is the TPM device the agent uses when none is named: the
// kernel's resource manager, which keeps each connection's transient objects
// and sessions apart.
const DefaultDevice = "/dev/tpmrm0"

// Spec is a parsed --tpm value.
type Spec struct {
	Kind Kind
	Path string // device or socket path; empty for the simulator
}

// ParseSpec parses a --tpm value: a device path, unix:///path/to/socket, or
// "simulator".
func ParseSpec(s string) (Spec, error) {
	switch {
	case s == "":
		return Spec{Kind: Device, Path: DefaultDevice}, nil
	case s == "simulator":
		if !SimulatorAvailable {
			return Spec{}, fmt.Errorf("invalid --tpm value %q: %w", s, errNoSimulator)
		}
		return Spec{Kind: Simulator}, nil
	case strings.HasPrefix(s, "unix:"):
		u, err := url.Parse(s)
		if err != nil {
			return Spec{}, fmt.Errorf("invalid --tpm value %q: %v", s, err)
		}
		if u.Host != "" || u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return Spec{}, fmt.Errorf("invalid --tpm value %q: a socket must be written unix:///absolute/path", s)
		}
		return Spec{Kind: Socket, Path: u.Path}, nil
	case strings.HasPrefix(s, "/"):
		return Spec{Kind: Device, Path: s}, nil
	}
	return Spec{}, errors.New("invalid --tpm value " + fmt.Sprintf("%q", s) + ": use a device path such as /dev/tpmrm0, unix:///path/to/swtpm.sock, or simulator")
}

func (s Spec) String() string {
	switch s.Kind {
	case Socket:
		return "unix://" + s.Path
	case Simulator:
		return "simulator"
	}
	return s.Path
}
