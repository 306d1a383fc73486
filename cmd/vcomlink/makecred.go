package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/verify"
)

const makecredAbout = `Makes a credential, as TPM2_MakeCredential does, that only the TPM with the
endorsement key --ek can recover, and only with TPM2_ActivateCredential of
a key with the Name given by --aik or --name. The guest recovers the secret
with vcomlink activatecred, which proves that the key is in the same TPM as
the EK.

--ek is one of:
` + publicKeyForms + `
A PEM key or certificate has no TPM attributes, so makecred takes the TCG
default EK template for it (RSA-2048 or ECC P-256, nameAlg SHA256,
AES-128-CFB).

Give the key that the credential names in one of two forms:
  - --aik FILE: its public area (TPMT_PUBLIC or TPM2B_PUBLIC). makecred
    computes the Name, so the credential names exactly this public area.
  - --name HEX: its Name, as aik_name in activatecredparams --format json
    shows it (TPM2B_NAME, with the 2-byte size prefix), or without the
    prefix (nameAlg and digest), as tpm2_makecredential -n takes it.`

const makecredFormats = `Formats:
  tpm2-tools  one file, as tpm2_makecredential writes it and
              tpm2_activatecredential and vcomlink activatecred
              --credential-file read it: the magic 0xbadcc0de and version 1,
              each 4 bytes big-endian, then the TPM2B_ID_OBJECT and the
              TPM2B_ENCRYPTED_SECRET.
  wire        two files, OUT.cred with the TPM2B_ID_OBJECT and OUT.secret
              with the TPM2B_ENCRYPTED_SECRET, each with its 2-byte size
              prefix: the cred and secret fields of the activatecred request,
              as vcomlink activatecred --cred OUT.cred --secret OUT.secret
              reads them.

Exit status: 0 success; 1 a file could not be written; 2 invalid command
line or input.`

func runMakeCred(args []string, stdout, stderr io.Writer) int {
	c := newCLI("makecred", "", 0, makecredAbout, makecredFormats)
	ekPath := c.fs.String("ek", "", "`FILE` with the endorsement key's public area or public key (required)")
	aikPath := c.fs.String("aik", "", "`FILE` with the public area of the key that the credential names")
	nameHex := c.fs.String("name", "", "Name in `HEX` of the key that the credential names")
	secretPath := c.fs.String("secret", "", "`FILE` with the credential's secret, or - for standard input: 1 byte up to "+
		"the size of a digest of the EK's nameAlg (32 bytes for SHA256) (required)")
	out := c.fs.String("out", "", "`OUT` file to write, or - for standard output, or the prefix of the two files of "+
		"--format wire (required). With -, the line that names the credential goes to standard error")
	format := newChoiceFlag("tpm2-tools", "wire")
	c.fs.Var(format, "format", "`FORMAT` of the output: tpm2-tools or wire (see Formats)")

	return c.run(args, stdout, stderr, func([]string) error {
		ek, err := readEK(*ekPath)
		if err != nil {
			return err
		}
		name, err := readCredentialName(*aikPath, *nameHex)
		if err != nil {
			return err
		}
		secret, err := readInput("secret", *secretPath)
		if err != nil {
			return err
		}
		if *out == "" {
			return usagef("missing --out FILE")
		}
		if *out == "-" && format.value == "wire" {
			return usagef("--out - (standard output) takes one file, but --format wire writes two, OUT.cred and OUT.secret: " +
				"give a path prefix, or use --format tpm2-tools")
		}

		cred, encSecret, err := verify.MakeCredential(rand.Reader, ek, name, secret)
		if err != nil {
			return usagef("%v", err)
		}

		written, err := writeCredential(stdout, format.value, *out, cred, encSecret)
		if err != nil {
			return err
		}

		// The credential itself may be on standard output.
		summary := stdout
		if *out == "-" {
			summary = stderr
		}
		fmt.Fprintf(summary, "wrote %s: credential for the Name %x\n", written, name[2:])
		return nil
	})
}

// readEK reads the EK of --ek as a public area, and builds one from the
// TCG default template for a PEM key or certificate.
func readEK(path string) (*tpm2.TPMTPublic, error) {
	ek, err := readPublicFile("ek", path)
	if err != nil {
		return nil, err
	}
	if ek.public != nil {
		return ek.public, nil
	}
	public, err := verify.EKPublic(ek.key)
	if err != nil {
		return nil, usagef("--ek: %s: %v", path, err)
	}
	return public, nil
}

// readCredentialName returns the TPM2B_NAME of the key that the credential
// names, from --aik or --name.
func readCredentialName(aikPath, nameHex string) ([]byte, error) {
	switch {
	case aikPath != "" && nameHex != "":
		return nil, usagef("give either --aik or --name, not both")
	case aikPath == "" && nameHex == "":
		return nil, usagef("missing key to name: give --aik FILE or --name HEX")
	}

	if aikPath != "" {
		aik, err := readPublicFile("aik", aikPath)
		if err != nil {
			return nil, err
		}
		if aik.public == nil {
			return nil, usagef("--aik: %s is a PEM file, which has no TPM attributes to compute the Name from: use a TPMT_PUBLIC or --name", aikPath)
		}
		name, err := verify.Name(aik.public)
		if err != nil {
			return nil, usagef("--aik: %s: %v", aikPath, err)
		}
		return appendTPM2B(nil, name), nil
	}

	b, err := parseHex("name", nameHex)
	if err != nil {
		return nil, err
	}
	if _, err := verify.ParseName(b); err == nil {
		return b, nil
	}
	// Without the size prefix, the Name begins with its nameAlg.
	prefixed := appendTPM2B(nil, b)
	if _, err := verify.ParseName(prefixed); err != nil {
		return nil, usagef("invalid --name %s: %s", hex.EncodeToString(b), describeInvalidName(b))
	}
	return prefixed, nil
}

// describeInvalidName explains what is wrong with b, which is neither a Name
// nor a TPM2B_NAME. It takes b as a TPM2B_NAME when its third and fourth
// bytes are a nameAlg, and as a Name when its first two are.
func describeInvalidName(b []byte) string {
	const forms = "give a Name (nameAlg, such as 000b for SHA256, then the digest) or a TPM2B_NAME " +
		"(the Name's 2-byte size, then the Name)"
	if len(b) < 4 {
		return "it is too short for a Name: " + forms
	}

	if alg, size, ok := nameAlgorithm(b[2:4]); ok {
		prefix := int(binary.BigEndian.Uint16(b))
		if prefix != len(b)-2 {
			return fmt.Sprintf("it begins with the size of a TPM2B_NAME, %d bytes, but %d bytes follow: "+
				"the Name is truncated or has extra bytes (a %s Name is %d bytes)", prefix, len(b)-2, alg, 2+size)
		}
		return fmt.Sprintf("the TPM2B_NAME has a %d-byte digest, but its nameAlg %s produces %d bytes",
			len(b)-4, alg, size)
	}

	if alg, size, ok := nameAlgorithm(b[0:2]); ok {
		return fmt.Sprintf("the Name has a %d-byte digest, but its nameAlg %s produces %d bytes",
			len(b)-2, alg, size)
	}
	return fmt.Sprintf("it begins with neither a nameAlg nor a size and a nameAlg: %s", forms)
}

// nameAlgorithm returns the name and digest size of the hash algorithm
// whose TPM_ALG_ID is in b, and false when it is not a hash that a Name
// may use.
func nameAlgorithm(b []byte) (string, int, bool) {
	name, err := verify.HashName(tpm2.TPMAlgID(binary.BigEndian.Uint16(b)))
	if err != nil {
		return "", 0, false
	}
	_, hash, err := verify.HashByName(name)
	if err != nil {
		return "", 0, false
	}
	return name, hash.Size(), true
}

// writeCredential writes the credential in format, to stdout when out is
// "-", and returns the names of the files it wrote.
func writeCredential(stdout io.Writer, format, out string, cred, encSecret []byte) (string, error) {
	if format == "wire" {
		if err := writeFile("out", out+".cred", cred); err != nil {
			return "", err
		}
		if err := writeFile("out", out+".secret", encSecret); err != nil {
			return "", err
		}
		return out + ".cred and " + out + ".secret", nil
	}

	blob, err := verify.MarshalCredentialBlob(cred, encSecret)
	if err != nil {
		return "", err
	}
	if out == "-" {
		_, err := stdout.Write(blob)
		return "standard output", err
	}
	return out, writeFile("out", out, blob)
}
