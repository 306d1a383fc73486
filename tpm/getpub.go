package tpm

import (
	"context"
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
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
			Attributes: attributeBits(obj.public.ObjectAttributes),
		}
		return nil
	})
	return rsp, err
}

// attributeBits returns the TPMA_OBJECT bits as the TPM encodes them.
func attributeBits(a tpm2.TPMAObject) uint32 {
	return binary.BigEndian.Uint32(tpm2.Marshal(a))
}
