package tpm

import (
	"context"
	"errors"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PingPeer is the peer name under which Ping takes its turn at the TPM.
const PingPeer = "agent:readiness"

// Ping sends one cheap command (GetCapability of TPM_PT_NV_BUFFER_MAX) to
// the TPM in its turn, and returns an error unless the TPM responds. The
// error is the cause, for the host's operator, without the advice to retry
// that a guest's error carries.
func (s *Service) Ping(ctx context.Context) error {
	err := s.run(ctx, PingPeer, "ping", 0, func(t transport.TPM) error {
		_, err := tpmProperty(t, tpm2.TPMPTNVBufferMax)
		return err
	})
	var e *Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err
	}
	return err
}
