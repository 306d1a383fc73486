package tpm

import (
	"context"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// ReadNV returns the whole content of NV index h, read in chunks no larger
// than TPM_PT_NV_BUFFER_MAX. The index is read with its own authorisation
// (AUTHREAD) and the auth value the host configured, empty by default; owner
// authorisation is used only for indices listed in Config.OwnerReadNV or by
// SetOwnerReadNV.
func (s *Service) ReadNV(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseReadNv, error) {
	const op = "readnv"
	if err := CheckNVIndex(op, "index", h); err != nil {
		return nil, err
	}

	var data []byte
	err := s.run(ctx, peer, op, h, func(t transport.TPM) error {
		pub, name, err := nvReadPublic(t, op, h)
		if err != nil {
			return err
		}
		auth, err := s.nvReadAuth(op, h, pub, name)
		if err != nil {
			return err
		}
		if !pub.Attributes.Written {
			return newError(op, h, ErrNotFound, "the NV index has never been written, so it holds no data")
		}
		if pub.Attributes.ReadLocked {
			return newError(op, h, ErrForbidden, "the NV index is read-locked until the next TPM reset")
		}

		index := tpm2.NamedHandle{Handle: tpm2.TPMHandle(h), Name: name}
		data = make([]byte, 0, pub.DataSize)
		for offset := 0; offset < int(pub.DataSize); {
			size := min(int(pub.DataSize)-offset, s.nvBufferMax)
			rsp, err := tpm2.NVRead{
				AuthHandle: auth,
				NVIndex:    index,
				Size:       uint16(size),
				Offset:     uint16(offset),
			}.Execute(t)
			if err != nil {
				return tpmError(op, h, "NV_Read", err)
			}
			if len(rsp.Data.Buffer) != size {
				return newError(op, h, ErrTPM, "NV_Read returned %d bytes at offset %d, not the %d requested", len(rsp.Data.Buffer), offset, size)
			}
			data = append(data, rsp.Data.Buffer...)
			offset += size
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &vcom.TpmResponseReadNv{Data: data}, nil
}

func nvReadPublic(t transport.TPM, op string, h uint32) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(h)}.Execute(t)
	if err != nil {
		return nil, tpm2.TPM2BName{}, tpmError(op, h, "NV_ReadPublic", err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, newError(op, h, ErrTPM, "the TPM returned an NV public area that does not parse: %v", err)
	}
	return pub, rsp.NVName, nil
}

// nvReadAuth chooses the authorisation that reads index h: owner
// authorisation where the host allows it, else the index's own.
func (s *Service) nvReadAuth(op string, h uint32, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName) (tpm2.AuthHandle, error) {
	if (*s.ownerReadNV.Load())[h] && pub.Attributes.OwnerRead {
		return tpm2.AuthHandle{
			Handle: tpm2.TPMRHOwner,
			Name:   tpm2.HandleName(tpm2.TPMRHOwner),
			Auth:   tpm2.PasswordAuth(s.cfg.Auth[uint32(tpm2.TPMRHOwner)]),
		}, nil
	}
	if !pub.Attributes.AuthRead {
		return tpm2.AuthHandle{}, newError(op, h, ErrForbidden,
			"the NV index cannot be read with its own authorisation (no AUTHREAD), and the agent uses owner or platform authorisation only for indices the host names")
	}
	return s.authHandle(op, h, name, pub.Attributes.NoDA)
}
