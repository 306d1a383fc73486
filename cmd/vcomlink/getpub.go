package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"

	"github.com/vcomlink/vcomlink/client"
)

const getpubAbout = `Reads the public area of the TPM object at HANDLE, such as the attestation
key 0x81000003, with TPM2_ReadPublic. HANDLE is in hex (0x81000003) or
decimal.`

func runGetPub(args []string, stdout, stderr io.Writer) int {
	c := newCLI("getpub", "HANDLE", 1, getpubAbout, guestExitStatuses)
	g := addGuestFlags(c, "raw is the TPMT_PUBLIC in the TPM wire format, without size prefix, "+
		"as tpm2_print -t TPMT_PUBLIC reads it. pem is the public key as a PEM SubjectPublicKeyInfo "+
		"that OpenSSL reads, for RSA and ECC keys only. json is the response message: "+
		"public in hex, algorithm (the TPM_ALG_ID) and attributes (the TPMA_OBJECT bits).",
		"json", "raw", "pem")

	return c.run(args, stdout, stderr, func(positional []string) error {
		handle, err := parseHandleArg("HANDLE", exampleKeyHandle, positional[0])
		if err != nil {
			return err
		}

		var result *client.GetPubResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.GetPub(ctx, handle)
			return err
		})
		if err != nil {
			return err
		}

		switch g.format.value {
		case "raw":
			_, err = stdout.Write(result.Bytes)
		case "pem":
			err = writePublicKeyPEM(stdout, handle, result)
		default:
			err = writeMessage(stdout, result.Response)
		}
		return err
	})
}

func writePublicKeyPEM(w io.Writer, handle uint32, result *client.GetPubResult) error {
	if result.Key == nil {
		return usagef("--format pem: object 0x%08x is of type 0x%04x, not an RSA or ECC key, so it has no PEM form: use --format raw or json",
			handle, uint16(result.Public.Type))
	}
	der, err := x509.MarshalPKIXPublicKey(result.Key)
	if err != nil {
		return err
	}
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
