package main

import (
	"context"
	"io"

	"github.com/vcomlink/vcomlink/client"
)

const activatecredparamsAbout = `Reads what a verifier needs to make a credential for the attestation key
at HANDLE: the EK's public area, and the public area and TPM Name of HANDLE,
which must be a restricted signing key. HANDLE is in hex (0x81000003) or
decimal. The command checks that the Name is that of the public area.`

func runActivateCredParams(args []string, stdout, stderr io.Writer) int {
	c := newCLI("activatecredparams", "HANDLE", 1, activatecredparamsAbout, guestExitStatuses)
	g := addGuestFlags(c, "json is the response message: ek and aik_pub (TPMT_PUBLIC) and aik_name "+
		"(TPM2B_NAME, with its 2-byte size prefix), in hex. raw is three TPM structures back to back, "+
		"each with its 2-byte size prefix: the EK's TPM2B_PUBLIC, the key's TPM2B_PUBLIC and its TPM2B_NAME.",
		"json", "raw")

	return c.run(args, stdout, stderr, func(positional []string) error {
		handle, err := parseHandleArg("HANDLE", exampleKeyHandle, positional[0])
		if err != nil {
			return err
		}

		var result *client.ActivateCredParamsResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.ActivateCredParams(ctx, handle)
			return err
		})
		if err != nil {
			return err
		}

		if g.format.value == "raw" {
			_, err = stdout.Write(marshalActivateCredParamsRaw(result.Response))
			return err
		}
		return writeMessage(stdout, result.Response)
	})
}
