package client

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// ReadNVResult is the data of an NV index.
type ReadNVResult struct {
	// Data is the whole content of the NV index.
	Data []byte
	// Response is the agent's response.
	Response *vcom.TpmResponseReadNv
}

// ReadNV reads the whole data of the NV index at handle, such as
// vcom.HandleEKCert.
func (c *Client) ReadNV(ctx context.Context, handle uint32) (*ReadNVResult, error) {
	rsp := &vcom.TpmResponseReadNv{}
	req := &vcom.TpmRequestReadNv{Index: handle}
	if err := c.call(ctx, "readnv", handle, vcom.PathReadNV, req, rsp); err != nil {
		return nil, err
	}
	return &ReadNVResult{Data: rsp.GetData(), Response: rsp}, nil
}

// Certificate parses the data as an X.509 certificate, with ParseCertificate.
func (r *ReadNVResult) Certificate() (*x509.Certificate, error) {
	return ParseCertificate(r.Data)
}

// CertificateError is data that ParseCertificate cannot parse as a DER
// certificate.
type CertificateError struct {
	// Err is the reason, such as a first byte other than the 0x30 of a
	// DER SEQUENCE.
	Err error
}

// Error returns the reason, in the terms of data read from an NV index.
func (e *CertificateError) Error() string { return "NV data is not a certificate: " + e.Err.Error() }

func (e *CertificateError) Unwrap() error { return e.Err }

// ParseCertificate parses a DER X.509 certificate stored in an NV index.
// Its errors are of type *CertificateError.
//
// NV indices are often larger than the certificate they contain, and the
// rest is padding. ParseCertificate reads the length from the DER header,
// and accepts bytes after the certificate only if they are all 0x00 or all
// 0xFF.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	size, err := derSize(data)
	if err != nil {
		return nil, &CertificateError{Err: err}
	}

	padding := data[size:]
	if len(padding) > 0 {
		fill := padding[0]
		for _, b := range padding {
			if (fill != 0x00 && fill != 0xFF) || b != fill {
				return nil, &CertificateError{Err: fmt.Errorf("the %d bytes after the %d-byte certificate are not 0x00 or 0xFF padding",
					len(padding), size)}
			}
		}
	}

	// NOTE: since Go 1.23, crypto/x509 rejects a certificate with a
	// negative serial number unless GODEBUG contains x509negativeserial=1.
	cert, err := x509.ParseCertificate(data[:size])
	if err != nil {
		return nil, &CertificateError{Err: err}
	}
	return cert, nil
}

// derSize returns the length of the DER SEQUENCE at the start of data,
// header included.
func derSize(data []byte) (int, error) {
	const sequence = 0x30
	if len(data) < 2 {
		return 0, fmt.Errorf("%d bytes are too short for a DER SEQUENCE", len(data))
	}
	if data[0] != sequence {
		return 0, fmt.Errorf("data begins with 0x%02x, not a DER SEQUENCE (0x30)", data[0])
	}

	header, length := 2, uint64(data[1])
	if length >= 0x80 {
		// Long form: the low 7 bits give the number of length bytes.
		// DER does not allow the indefinite form 0x80, and 4 bytes
		// cover any certificate.
		count := int(length & 0x7F)
		if count == 0 || count > 4 {
			return 0, fmt.Errorf("DER length byte 0x%02x is invalid", data[1])
		}
		if len(data) < 2+count {
			return 0, fmt.Errorf("DER length is truncated")
		}
		length = 0
		for _, b := range data[2 : 2+count] {
			length = length<<8 | uint64(b)
		}
		header += count
	}

	if length > uint64(len(data)-header) {
		return 0, fmt.Errorf("DER SEQUENCE is %d bytes but only %d follow its header",
			length, len(data)-header)
	}
	return header + int(length), nil
}
