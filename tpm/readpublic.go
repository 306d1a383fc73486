package tpm

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// readPublicCommand returns TPM2_ReadPublic of h: tag TPM_ST_NO_SESSIONS,
// size, command code and the object handle, all big-endian.
func readPublicCommand(h uint32) []byte {
	cmd := make([]byte, 14)
	binary.BigEndian.PutUint16(cmd[0:2], uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(cmd[2:6], uint32(len(cmd)))
	binary.BigEndian.PutUint32(cmd[6:10], uint32(tpm2.TPMCCReadPublic))
	binary.BigEndian.PutUint32(cmd[10:14], h)
	return cmd
}

// sendReadPublic runs TPM2_ReadPublic of h and returns the TPMT_PUBLIC and
// the TPM2B_NAME from its response. getpub is the most frequent request,
// and go-tpm encodes and parses commands by reflection, so this one command
// is built and read directly. An error response comes back as the
// tpm2.TPMRC that go-tpm's Execute would return.
func sendReadPublic(t transport.TPM, h uint32) (public []byte, name tpm2.TPM2BName, err error) {
	rsp, err := t.Send(readPublicCommand(h))
	if err != nil {
		return nil, name, err
	}
	return parseReadPublicResponse(rsp)
}

// parseReadPublicResponse reads a TPM2_ReadPublic response: the header (tag,
// size, response code), then TPM2B_PUBLIC outPublic, TPM2B_NAME name and
// TPM2B_NAME qualifiedName, with nothing after them.
func parseReadPublicResponse(rsp []byte) (public []byte, name tpm2.TPM2BName, err error) {
	if len(rsp) < 10 {
		return nil, name, fmt.Errorf("ReadPublic response of %d bytes is shorter than a response header", len(rsp))
	}
	if size := binary.BigEndian.Uint32(rsp[2:6]); int(size) != len(rsp) {
		return nil, name, fmt.Errorf("ReadPublic response is %d bytes, but its header says %d", len(rsp), size)
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return nil, name, rc
	}
	if tag := tpm2.TPMST(binary.BigEndian.Uint16(rsp[0:2])); tag != tpm2.TPMSTNoSessions {
		return nil, name, fmt.Errorf("ReadPublic response has tag 0x%04x, not TPM_ST_NO_SESSIONS", uint16(tag))
	}

	body := rsp[10:]
	public, body, err = next2B(body, "outPublic")
	if err != nil {
		return nil, name, err
	}
	nameBytes, body, err := next2B(body, "name")
	if err != nil {
		return nil, name, err
	}
	if _, body, err = next2B(body, "qualifiedName"); err != nil {
		return nil, name, err
	}
	if len(body) != 0 {
		return nil, name, fmt.Errorf("ReadPublic response has %d bytes after its parameters", len(body))
	}
	if len(public) == 0 {
		return nil, name, fmt.Errorf("ReadPublic response has an empty outPublic")
	}
	return public, tpm2.TPM2BName{Buffer: nameBytes}, nil
}

// next2B splits a TPM2B (a 2-byte big-endian size, then that many bytes)
// from the front of b.
func next2B(b []byte, field string) (content, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("ReadPublic response ends before the size of %s", field)
	}
	size := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < size {
		return nil, nil, fmt.Errorf("ReadPublic response ends inside %s", field)
	}
	return b[2 : 2+size], b[2+size:], nil
}
