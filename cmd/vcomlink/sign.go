package main

import (
	"context"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
)

const signAbout = `Signs the content of --in with the TPM key at HANDLE, which must have the
sign attribute. HANDLE is in hex (0x81000003) or decimal.

What the TPM signs depends on the key:
  - A restricted signing key, such as the attestation key 0x81000003, signs
    the data itself: the TPM hashes it with the key's scheme hash. The TPM
    rejects data that begins with TPM_GENERATED_VALUE (ff544347), so that
    no signature can pass for an attestation.
  - An unrestricted key, such as 0x81000005, signs a digest: --in must be
    a digest of the size of the scheme's hash (32 bytes for SHA-256), for
    example from openssl dgst -sha256 -binary MESSAGE.
A key whose scheme is null signs with RSASSA-SHA256 (RSA) or ECDSA-SHA256
(ECC). The data can be at most 65526 bytes for a persistent handle, which
with the handle fills the agent's request limit of 64 KiB.`

func runSign(args []string, stdout, stderr io.Writer) int {
	c := newCLI("sign", "HANDLE", 1, signAbout, guestExitStatuses)
	in := c.fs.String("in", "", "`FILE` with the data to sign, or - for standard input (required)")
	g := addGuestFlags(c, "raw is the signature as openssl dgst -verify reads it: the RSA signature "+
		"bytes, or for ECDSA the DER SEQUENCE of r and s. json is the response message: algorithm "+
		"(RSASSA, RSAPSS or ECDSA), rsa_signature and rsa_hash, or ecc_signature_r, ecc_signature_s "+
		"and ecc_hash, with bytes in hex.",
		"json", "raw")

	return c.run(args, stdout, stderr, func(positional []string) error {
		handle, err := parseHandleArg("HANDLE", exampleKeyHandle, positional[0])
		if err != nil {
			return err
		}
		data, err := readInput("in", *in)
		if err != nil {
			return err
		}
		request := &vcom.TpmRequestSign{Index: handle, Data: data}
		if size := proto.Size(request); size > vcom.MaxBodySize {
			return usagef("--in is %d bytes, so the request would be %d bytes, over the agent's limit of %d",
				len(data), size, vcom.MaxBodySize)
		}

		var result *client.SignResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.Sign(ctx, handle, data)
			return err
		})
		if err != nil {
			return err
		}

		if g.format.value == "raw" {
			_, err = stdout.Write(result.Signature)
			return err
		}
		return writeMessage(stdout, result.Response)
	})
}
