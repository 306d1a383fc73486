package main

import (
	"context"
	"encoding/pem"
	"io"

	"github.com/vcomlink/vcomlink/client"
)

const readnvAbout = `Reads the whole content of the NV index INDEX, such as the EK certificate
at 0x01c00002. INDEX is in hex (0x01c00002) or decimal.`

func runReadNV(args []string, stdout, stderr io.Writer) int {
	c := newCLI("readnv", "INDEX", 1, readnvAbout, guestExitStatuses)
	g := addGuestFlags(c, "raw is the content as stored, padding included. pem is a PEM certificate, "+
		"for an index whose content is a DER certificate, optionally padded with 0x00 or 0xff; "+
		"any other content is an error. json is the response message: data in hex.",
		"json", "raw", "pem")

	return c.run(args, stdout, stderr, func(positional []string) error {
		index, err := parseHandleArg("INDEX", exampleNVIndex, positional[0])
		if err != nil {
			return err
		}

		var result *client.ReadNVResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.ReadNV(ctx, index)
			return err
		})
		if err != nil {
			return err
		}

		switch g.format.value {
		case "raw":
			_, err = stdout.Write(result.Data)
			return err
		case "pem":
			cert, err := result.Certificate()
			if err != nil {
				return usagef("--format pem: NV index 0x%08x: %v. Use --format raw or json", index, err)
			}
			return pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		default:
			return writeMessage(stdout, result.Response)
		}
	})
}
