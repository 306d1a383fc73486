package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

const verifyCertifyAbout = `Checks a certification that vcomlink certify returned: the signature by the
attestation key --aik over the attestation, its magic TPM_GENERATED_VALUE
and type TPM_ST_ATTEST_CERTIFY, that its extraData equals --nonce, and that
the certified Name equals the Name of the public area in --in.

--aik is one of:
` + publicKeyForms + `
Give the public area (TPMT_PUBLIC or TPM2B_PUBLIC) whose Name the
credential named, so that verify-certify also checks that the AIK is a
restricted signing key and signs with its own scheme. Only a restricted key
assures that the TPM made the attestation. A PEM key has no TPM attributes,
so these two checks are skipped, with a note on standard error.

--in is the JSON of vcomlink certify --format json, or the output of
certify --format raw. A file that is valid JSON is read as JSON.`

// verifyCertifyExitStatuses ends the help of verify-certify, which has one
// exit status more than the other verifier commands.
const verifyCertifyExitStatuses = `Exit status: 0 verified; 1 verification failed (the reason goes to standard
error); 2 invalid command line or input; 3 verified, but --key-out could not
be written (the verified line goes to standard output, the reason to
standard error).`

func runVerifyCertify(args []string, stdout, stderr io.Writer) int {
	c := newCLI("verify-certify", "", 0, verifyCertifyAbout, verifyCertifyExitStatuses)
	aikPath := c.fs.String("aik", "", "`FILE` with the attestation key's public area or public key (required)")
	nonceHex := c.fs.String("nonce", "", "`HEX` nonce that the verifier gave to certify. Empty means no nonce, and then the attestation's extraData must be empty")
	in := c.fs.String("in", "", "`FILE` with the certification, or - for standard input (required)")
	keyOut := c.fs.String("key-out", "", "`FILE` to write the certified public key to, as PEM, once the check passes")

	return c.run(args, stdout, stderr, func([]string) error {
		aik, err := readPublicFile("aik", *aikPath)
		if err != nil {
			return err
		}
		nonce, err := parseHex("nonce", *nonceHex)
		if err != nil {
			return err
		}
		data, err := readInput("in", *in)
		if err != nil {
			return err
		}
		rsp, err := parseCertification(data)
		if err != nil {
			return usagef("--in: %s: %v", *in, err)
		}

		var certified *verify.Certified
		if aik.public != nil {
			certified, err = verify.VerifyCertify(aik.public, nonce, rsp)
		} else {
			certified, err = verify.VerifyCertifyWithPublicKey(aik.key, nonce, rsp)
		}
		if err != nil {
			return &verificationError{err}
		}
		if aik.public == nil {
			fmt.Fprintf(stderr, "vcomlink verify-certify: note: %s is a PEM key, so its restricted attribute and scheme were not checked\n", *aikPath)
		}

		nonceText := "no nonce"
		if len(certified.ExtraData) > 0 {
			nonceText = fmt.Sprintf("the nonce %x", certified.ExtraData)
		}
		fmt.Fprintf(stdout, "verified: the attestation key certified %s with the Name %x and %s\n",
			describeKey(certified.PublicKey), certified.Name, nonceText)
		if *keyOut != "" {
			if err := writeCertifiedKey(*keyOut, certified); err != nil {
				return &keyOutError{err}
			}
		}
		return nil
	})
}

// keyOutError is a failure to write --key-out after the check passed. The
// command exits with exitKeyOut.
type keyOutError struct {
	err error
}

func (e *keyOutError) Error() string { return e.err.Error() }

func (e *keyOutError) Unwrap() error { return e.err }

// parseCertification reads the JSON or raw output of vcomlink certify.
func parseCertification(b []byte) (*vcom.TpmResponseCertify, error) {
	if json.Valid(b) {
		var rsp vcom.TpmResponseCertify
		if err := unmarshalJSON(b, &rsp); err != nil {
			return nil, err
		}
		return &rsp, nil
	}
	return parseCertifyRaw(b)
}

func writeCertifiedKey(path string, certified *verify.Certified) error {
	if certified.PublicKey == nil {
		return fmt.Errorf("--key-out: the certified object is not an RSA or ECC key, so it has no PEM form")
	}
	der, err := x509.MarshalPKIXPublicKey(certified.PublicKey)
	if err != nil {
		return err
	}
	return writeFile("key-out", path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// describeKey names the type and size of a public key, such as "an RSA-2048
// key".
func describeKey(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA-%d key", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("an ECC %s key", k.Curve.Params().Name)
	default:
		return "an object"
	}
}
