package main

import (
	"context"
	"encoding/binary"
	"io"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/verify"
)

const activatecredAbout = `Recovers the secret of a credential that a verifier made for the host's EK
and the attestation key at HANDLE, with TPM2_ActivateCredential. The TPM
recovers it only if the EK and a key with the Name that the verifier used
are both in this TPM. HANDLE is in hex (0x81000003) or decimal, and may
also be given as --aik. Without either, it is 0x81000003.

Give the credential in one of two forms:
  - --credential-file: the file that tpm2_makecredential (tpm2-tools 5.4)
    and vcomlink makecred write: the magic 0xbadcc0de and version 1, each 4
    bytes, then the TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET.
  - --cred and --secret: the TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET,
    each with its 2-byte size prefix, as vcomlink makecred --format wire
    writes them.`

func runActivateCred(args []string, stdout, stderr io.Writer) int {
	c := newCLI("activatecred", "[HANDLE]", 1, activatecredAbout, guestExitStatuses)
	c.minArgs = 0
	aikFlag := handleFlag(vcom.HandleAIK)
	c.fs.Var(&aikFlag, "aik", "`HANDLE` of the attestation key that the credential names, in hex or decimal, "+
		"as an alternative to the HANDLE argument")
	credentialFile := c.fs.String("credential-file", "", "`FILE` with the credential in the tpm2-tools format, or - for standard input")
	credPath := c.fs.String("cred", "", "`FILE` with the TPM2B_ID_OBJECT, used with --secret")
	secretPath := c.fs.String("secret", "", "`FILE` with the TPM2B_ENCRYPTED_SECRET, used with --cred")
	g := addGuestFlags(c, "raw is the recovered secret's bytes. json is the response message: secret in hex.",
		"json", "raw")

	return c.run(args, stdout, stderr, func(positional []string) error {
		aik := uint32(aikFlag)
		if len(positional) == 1 {
			handle, err := parseHandleArg("HANDLE", exampleKeyHandle, positional[0])
			if err != nil {
				return err
			}
			if c.isSet("aik") && handle != aik {
				return usagef("HANDLE 0x%08x and --aik 0x%08x name different keys: give the attestation key once", handle, aik)
			}
			aik = handle
		}
		cred, secret, err := readCredential(*credentialFile, *credPath, *secretPath)
		if err != nil {
			return err
		}

		var result *client.ActivateCredentialResult
		err = g.call(func(ctx context.Context, cl *client.Client) error {
			result, err = cl.ActivateCredential(ctx, aik, cred, secret)
			return err
		})
		if err != nil {
			return err
		}

		if g.format.value == "raw" {
			_, err = stdout.Write(result.Secret)
			return err
		}
		return writeMessage(stdout, result.Response)
	})
}

// readCredential reads the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET from
// a tpm2-tools credential file, or from two files.
func readCredential(credentialFile, credPath, secretPath string) (cred, secret []byte, err error) {
	switch {
	case credentialFile != "" && (credPath != "" || secretPath != ""):
		return nil, nil, usagef("give either --credential-file or --cred and --secret, not both")

	case credentialFile != "":
		blob, err := readInput("credential-file", credentialFile)
		if err != nil {
			return nil, nil, err
		}
		cred, secret, err = verify.ParseCredentialBlob(blob)
		if err != nil {
			return nil, nil, usagef("--credential-file: %s: %v", credentialFile, err)
		}
		return cred, secret, nil

	case credPath == "" && secretPath == "":
		return nil, nil, usagef("missing credential: give --credential-file FILE, or --cred FILE and --secret FILE")
	}

	if cred, err = readInput("cred", credPath); err != nil {
		return nil, nil, err
	}
	if err := checkSizePrefix("cred", "TPM2B_ID_OBJECT", cred); err != nil {
		return nil, nil, err
	}
	if secret, err = readInput("secret", secretPath); err != nil {
		return nil, nil, err
	}
	if err := checkSizePrefix("secret", "TPM2B_ENCRYPTED_SECRET", secret); err != nil {
		return nil, nil, err
	}
	return cred, secret, nil
}

// checkSizePrefix checks that the file of flag is one non-empty TPM2B.
func checkSizePrefix(flag, structure string, b []byte) error {
	if len(b) < 2 {
		return usagef("--%s: %d bytes are too short for a %s with its 2-byte size prefix", flag, len(b), structure)
	}
	if size := int(binary.BigEndian.Uint16(b)); size != len(b)-2 {
		return usagef("--%s: the %s size prefix is %d but %d bytes follow: is this the file makecred --format wire wrote?",
			flag, structure, size, len(b)-2)
	}
	if len(b) == 2 {
		return usagef("--%s: the %s is empty", flag, structure)
	}
	return nil
}
