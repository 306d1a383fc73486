package main

import (
	"crypto/x509"
	"fmt"
	"io"

	"github.com/vcomlink/vcomlink/verify"
)

const verifyEKCertAbout = `Checks that the certificate --cert certifies the endorsement key --ek: that
its public key is the EK's, and, with --ca, that it chains to one of the CA
certificates at the current time.

--ek is one of:
` + publicKeyForms + `
--cert is PEM, whose first certificate is the EK certificate and whose
others are intermediate CAs, or the DER certificate that readnv --format
raw writes, with or without the padding of the NV index.

Critical extensions that Go's crypto/x509 leaves unhandled are rejected,
except the subjectAltName of the TPM's manufacturer, model and version (a
directoryName, critical in EK certificates with an empty subject) and the
subjectDirectoryAttributes. The EK certificate usage (tcg-kp-EKCertificate,
2.23.133.8.1) is not required.`

func runVerifyEKCert(args []string, stdout, stderr io.Writer) int {
	c := newCLI("verify-ekcert", "", 0, verifyEKCertAbout, verifierExitStatuses)
	ekPath := c.fs.String("ek", "", "`FILE` with the endorsement key's public area or public key (required)")
	certPath := c.fs.String("cert", "", "`FILE` with the EK certificate (required)")
	caPath := c.fs.String("ca", "", "`FILE` with one or more trusted CA certificates, PEM. Without it, the chain is not checked")

	return c.run(args, stdout, stderr, func([]string) error {
		ek, err := readEK(*ekPath)
		if err != nil {
			return err
		}
		certs, err := readCertificates("cert", *certPath)
		if err != nil {
			return err
		}

		var roots *x509.CertPool
		if *caPath != "" {
			cas, err := readCertificates("ca", *caPath)
			if err != nil {
				return err
			}
			roots = x509.NewCertPool()
			for _, ca := range cas {
				roots.AddCert(ca)
			}
		}

		if err := verify.VerifyEKCert(ek, certs[0], roots, certs[1:]...); err != nil {
			return &verificationError{err}
		}
		if roots == nil {
			fmt.Fprintf(stdout, "verified: the certificate from %q certifies the EK's public key. Its chain was not checked: give --ca to check it\n",
				certs[0].Issuer.String())
			return nil
		}
		fmt.Fprintf(stdout, "verified: the certificate from %q certifies the EK's public key and chains to a CA of %s\n",
			certs[0].Issuer.String(), *caPath)
		return nil
	})
}
