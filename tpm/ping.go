package tpm

import (
	"context"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PingPeer is the peer name under which Ping takes its turn at the TPM.
const PingPeer = "agent:readiness"

// Ping sends one cheap command (GetCapability of TPM_PT_NV_BUFFER_MAX) to
// the TPM in its turn, and returns an error unless the TPM answers.
func (s *Service) Ping(ctx context.Context) error {
	return s.run(ctx, PingPeer, "ping", 0, func(t transport.TPM) error {
		_, err := tpmProperty(t, tpm2.TPMPTNVBufferMax)
		return err
	})
}
