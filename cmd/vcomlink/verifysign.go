package main

import (
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

const verifySignAbout = `Checks that --sig is a signature by the key --key over the message --in, as
vcomlink sign returns it. Only the public key of --key is used, and --key is
one of:
` + publicKeyForms + `

--in is the message, which verify-sign hashes, as openssl dgst -verify does:
  - For a restricted signing key, such as the attestation key 0x81000003,
    the guest sent the message to vcomlink sign and the TPM hashed it: pass
    the same message.
  - For an unrestricted key, such as 0x81000005, the guest sent the digest
    of the message: pass the message, or pass the digest with --digest.
A message that begins with TPM_GENERATED_VALUE (ff544347) fails, because
that is how TPM attestations begin, which TPM2_Sign never signs.

--sig is the JSON of vcomlink sign --format json, whose algorithm and hash
fields give the scheme and hash, or the raw signature of sign --format raw
(RSA signature bytes, or the DER SEQUENCE of r and s for ECDSA), checked
with --hash and, for RSA, --scheme. A file that is valid JSON is read as
JSON.`

func runVerifySign(args []string, stdout, stderr io.Writer) int {
	c := newCLI("verify-sign", "", 0, verifySignAbout, verifierExitStatuses)
	keyPath := c.fs.String("key", "", "`FILE` with the public key (required)")
	in := c.fs.String("in", "", "`FILE` with the message, or - for standard input (required)")
	sigPath := c.fs.String("sig", "", "`FILE` with the signature, raw or JSON (required)")
	hashName := newChoiceFlag("sha256", "sha1", "sha384", "sha512")
	c.fs.Var(hashName, "hash", "`HASH` of a raw --sig: sha256, sha1, sha384 or sha512. The keys of the host's layout sign with sha256")
	schemeName := newChoiceFlag("pkcs1", "pss")
	c.fs.Var(schemeName, "scheme", "`SCHEME` of a raw --sig by an RSA key: pkcs1 (RSASSA-PKCS1-v1_5) or pss (RSASSA-PSS, any salt length)")
	isDigest := c.fs.Bool("digest", false, "--in is the digest that an unrestricted key signed, not the message")

	return c.run(args, stdout, stderr, func([]string) error {
		key, err := readPublicFile("key", *keyPath)
		if err != nil {
			return err
		}
		data, err := readInput("in", *in)
		if err != nil {
			return err
		}
		sigFile, err := readInput("sig", *sigPath)
		if err != nil {
			return err
		}
		sig, err := parseSignatureFile(c.fs, *sigPath, sigFile, key.key, hashName.value, schemeName.value)
		if err != nil {
			return err
		}

		hashAlg, digest, err := messageDigest(sig, data, *isDigest)
		if err != nil {
			return err
		}
		if err := verify.VerifyDigest(key.key, sig, digest); err != nil {
			if !*isDigest && len(data) == len(digest) && verify.VerifyDigest(key.key, sig, data) == nil {
				err = fmt.Errorf("%w; --in is a digest that the key signed as it is: verify it with --digest", err)
			}
			return &verificationError{err}
		}

		scheme, _ := verify.SchemeName(sig.SigAlg)
		hash, _ := verify.HashName(hashAlg)
		fmt.Fprintf(stdout, "verified: %s-%s signature by the key in %s\n", scheme, hash, *keyPath)
		return nil
	})
}

// parseSignatureFile reads the signature of --sig: the JSON of a sign
// response, or a raw signature with the scheme and hash of the flags.
func parseSignatureFile(fs *flag.FlagSet, path string, b []byte, key any, hashName, schemeName string) (*tpm2.TPMTSignature, error) {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	_, isECDSA := key.(*ecdsa.PublicKey)

	if json.Valid(b) {
		if set["hash"] || set["scheme"] {
			return nil, usagef("--hash and --scheme apply to a raw --sig only: the JSON in %s names the scheme and hash", path)
		}
		var rsp vcom.TpmResponseSign
		if err := unmarshalJSON(b, &rsp); err != nil {
			return nil, usagef("--sig: %s: %v", path, err)
		}
		sig, err := verify.SignatureFromResponse(&rsp)
		if err != nil {
			return nil, usagef("--sig: %s: %v", path, err)
		}
		return sig, nil
	}

	hashAlg, _, err := verify.HashByName(strings.ToUpper(hashName))
	if err != nil {
		return nil, err
	}
	scheme := tpm2.TPMAlgRSASSA
	switch {
	case isECDSA && set["scheme"]:
		return nil, usagef("--scheme applies to RSA keys only, and the key is ECDSA")
	case isECDSA:
		scheme = tpm2.TPMAlgECDSA
	case schemeName == "pss":
		scheme = tpm2.TPMAlgRSAPSS
	}

	sig, err := verify.DecodeSignature(scheme, hashAlg, b)
	if err != nil {
		return nil, usagef("--sig: %s: %v", path, err)
	}
	return sig, nil
}

// messageDigest returns the hash of sig and the digest of data that sig
// must sign: data itself with --digest, or its hash.
func messageDigest(sig *tpm2.TPMTSignature, data []byte, isDigest bool) (tpm2.TPMAlgID, []byte, error) {
	hashAlg, hash, err := verify.SignatureHash(sig)
	if err != nil {
		return 0, nil, usagef("--sig: %v", err)
	}

	if isDigest {
		if len(data) != hash.Size() {
			return 0, nil, usagef("--in is %d bytes, but with --digest it must be a digest of %d bytes for the signature's hash",
				len(data), hash.Size())
		}
		return hashAlg, data, nil
	}

	if len(data) >= 4 && binary.BigEndian.Uint32(data) == uint32(tpm2.TPMGeneratedValue) {
		return 0, nil, &verificationError{errors.New("the message begins with TPM_GENERATED_VALUE (ff544347), as TPM attestations do, which TPM2_Sign never signs")}
	}
	h := hash.New()
	h.Write(data)
	return hashAlg, h.Sum(nil), nil
}
