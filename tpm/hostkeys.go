package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// CheckHostKeys checks the keys of the host's configuration before guests
// use them: the EK must be a restricted decryption key and the attestation
// key a restricted signing key, because a certification by any other key
// proves nothing. A key of the wrong kind is an error. A key that does not
// exist is a warning, returned in warnings, because the operations that
// need it fail with a clear message while the others still work.
func (s *Service) CheckHostKeys(ctx context.Context) (warnings []string, err error) {
	keys := []struct {
		role    string
		h       uint32
		decrypt bool // a restricted decryption key, else a restricted signing key
		needed  string
	}{
		{"endorsement key", s.cfg.EK, true, "activatecredparams and activatecred"},
		{"attestation key", s.cfg.AIK, false, "certifykey"},
	}
	err = s.run(ctx, "agent:start", "start", 0, func(t transport.TPM) error {
		for _, k := range keys {
			obj, err := readPublic(t, "start", k.h)
			if errors.Is(err, ErrNotFound) {
				warnings = append(warnings, fmt.Sprintf("the %s %s does not exist in the TPM, so %s will fail until it is provisioned", k.role, FormatHandle(k.h), k.needed))
				continue
			}
			if err != nil {
				return err
			}
			attrs := obj.public.ObjectAttributes
			if k.decrypt && !(attrs.Restricted && attrs.Decrypt && !attrs.SignEncrypt) {
				return newError("start", k.h, ErrInvalid, "the %s is not a restricted decryption key; name the EK with --ek-handle", k.role)
			}
			if !k.decrypt && !(attrs.Restricted && attrs.SignEncrypt && !attrs.Decrypt) {
				return newError("start", k.h, ErrInvalid, "the %s is not a restricted signing key, so its certifications would prove nothing; name the attestation key with --aik-handle", k.role)
			}
		}
		return nil
	})
	return warnings, err
}
