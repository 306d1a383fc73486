package provision

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// nvIndex is an NV index that Provision defines and fills.
type nvIndex struct {
	handle     tpm2.TPMHandle
	attributes tpm2.TPMANV
	data       []byte
}

// hierarchy is the hierarchy whose authorization defines and writes the
// index: platform for a TPMA_NV_PLATFORMCREATE index, owner for the others.
func (index nvIndex) hierarchy() tpm2.TPMHandle {
	if index.attributes.PlatformCreate {
		return tpm2.TPMRHPlatform
	}
	return tpm2.TPMRHOwner
}

// ekCertAttributes are the attributes of the EK certificate index, as a TPM
// manufacturer defines it: created and written under platform authorization,
// then write-locked for good (TPMA_NV_WRITEDEFINE), and readable with the
// index's empty auth value without dictionary-attack protection.
func ekCertAttributes() tpm2.TPMANV {
	return tpm2.TPMANV{
		PPWrite:        true,
		WriteDefine:    true,
		PPRead:         true,
		OwnerRead:      true,
		AuthRead:       true,
		NoDA:           true,
		PlatformCreate: true,
		NT:             tpm2.TPMNTOrdinary,
	}
}

// ownerIndexAttributes are the attributes of an index that the owner writes
// and reads. With authRead, the index's own empty auth value also reads it.
func ownerIndexAttributes(authRead bool) tpm2.TPMANV {
	return tpm2.TPMANV{
		OwnerWrite: true,
		OwnerRead:  true,
		AuthRead:   authRead,
		NoDA:       true,
		NT:         tpm2.TPMNTOrdinary,
	}
}

// defineAndWrite defines index with an empty auth value and writes its data
// in chunks of at most bufferMax bytes. An index with TPMA_NV_WRITEDEFINE is
// then write-locked.
func defineAndWrite(tpm transport.TPM, index nvIndex, bufferMax int) error {
	if len(index.data) == 0 || len(index.data) > 0xFFFF {
		return fmt.Errorf("NV index 0x%08X: data size %d is outside 1..65535 bytes",
			uint32(index.handle), len(index.data))
	}

	authHandle := tpm2.AuthHandle{
		Handle: index.hierarchy(),
		Auth:   tpm2.PasswordAuth(nil),
	}
	public := tpm2.TPMSNVPublic{
		NVIndex:    index.handle,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: index.attributes,
		DataSize:   uint16(len(index.data)),
	}

	_, err := tpm2.NVDefineSpace{
		AuthHandle: authHandle,
		PublicInfo: tpm2.New2B(public),
	}.Execute(tpm)
	if err != nil {
		return fmt.Errorf("NV_DefineSpace of NV index 0x%08X: %w", uint32(index.handle), inUse(err))
	}

	// The first NV_Write sets TPMA_NV_WRITTEN, which changes the index's
	// name. A password session does not cover names, so the later chunks
	// may keep the name from before.
	name, err := tpm2.NVName(&public)
	if err != nil {
		return fmt.Errorf("name of NV index 0x%08X: %w", uint32(index.handle), err)
	}
	nvHandle := tpm2.NamedHandle{Handle: index.handle, Name: *name}

	for offset := 0; offset < len(index.data); offset += bufferMax {
		end := min(offset+bufferMax, len(index.data))
		_, err := tpm2.NVWrite{
			AuthHandle: authHandle,
			NVIndex:    nvHandle,
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: index.data[offset:end]},
			Offset:     uint16(offset),
		}.Execute(tpm)
		if err != nil {
			return fmt.Errorf("NV_Write of NV index 0x%08X at offset %d: %w", uint32(index.handle), offset, err)
		}
	}

	if index.attributes.WriteDefine {
		_, err := tpm2.NVWriteLock{AuthHandle: authHandle, NVIndex: nvHandle}.Execute(tpm)
		if err != nil {
			return fmt.Errorf("NV_WriteLock of NV index 0x%08X: %w", uint32(index.handle), err)
		}
	}
	return nil
}
