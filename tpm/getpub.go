package tpm

import (
	"context"
	"encoding/binary"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// GetPub returns the public area, type and attributes of the persistent key
// h.
func (s *Service) GetPub(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseGetPub, error) {
	const op = "getpub"
	if err := CheckPersistent(op, "index", h); err != nil {
		return nil, err
	}

	var rsp *vcom.TpmResponseGetPub
	err := s.run(ctx, peer, op, h, func(t transport.TPM) error {
		obj, err := readPublic(t, op, h)
		if err != nil {
			return err
		}
		rsp = &vcom.TpmResponseGetPub{
			Public:     obj.raw,
			Algorithm:  uint32(obj.public.Type),
			Attributes: attributeBits(obj.raw),
		}
		return nil
	})
	return rsp, err
}

// attributeBits returns the TPMA_OBJECT bits of a TPMT_PUBLIC that has
// parsed: the 4 bytes after type and nameAlg (2 bytes each). Reading them
// from the TPM's bytes gives what tpm2.Marshal of the parsed attributes
// gives, reserved bits included, without go-tpm's reflection.
func attributeBits(public []byte) uint32 {
	return binary.BigEndian.Uint32(public[4:8])
}
