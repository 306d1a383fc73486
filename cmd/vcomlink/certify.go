package main

import (
	"context"
	"fmt"
	"io"

	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/tpm"
)

const certifyAbout = `Has the host's attestation key certify the key at HANDLE with TPM2_Certify:
the TPM signs a TPMS_ATTEST that contains the key's Name and the verifier's
nonce. HANDLE is in hex (0x81000005) or decimal. The host configures which
key signs (0x81000003 unless it names another). vcomlink verify-certify
checks the result.`

func runCertify(args []string, stdout, stderr io.Writer) int {
	c := newCLI("certify", "HANDLE", 1, certifyAbout, guestExitStatuses)
	nonceHex := c.fs.String("nonce", "", fmt.Sprintf("verifier's nonce in `HEX`, which the TPM puts into the attestation's extraData so "+
		"that it cannot be replayed. The agent takes at most %d bytes, and the TPM rejects a nonce longer than its "+
		"TPM2B_DATA, whose size depends on the largest digest that the TPM implements. Empty means no nonce", tpm.MaxQualifyingData))
	g := addGuestFlags(c, "json is the response message: public (the key's TPMT_PUBLIC), sig (a TPMT_SIGNATURE) "+
		"and attest (the TPMS_ATTEST), in hex, as verify-certify reads it. raw is the same three structures "+
		"back to back: the TPM2B_PUBLIC, the TPMT_SIGNATURE and the TPM2B_ATTEST, each TPM2B with its 2-byte size prefix.",
		"json", "raw")

	return c.run(args, stdout, stderr, func(positional []string) error {
		handle, err := parseHandleArg("HANDLE", exampleKeyHandle, positional[0])
		if err != nil {
			return err
		}
		nonce, err := parseHex("nonce", *nonceHex)
		if err != nil {
			return err
		}
		if len(nonce) > tpm.MaxQualifyingData {
			return usagef("--nonce is %d bytes, over the maximum of %d bytes (%d hex digits)",
				len(nonce), tpm.MaxQualifyingData, 2*tpm.MaxQualifyingData)
		}

		var result *client.CertifyResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.Certify(ctx, handle, nonce)
			return err
		})
		if err != nil {
			return err
		}

		if g.format.value == "raw" {
			_, err = stdout.Write(marshalCertifyRaw(result.Response))
			return err
		}
		return writeMessage(stdout, result.Response)
	})
}
