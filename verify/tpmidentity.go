package verify

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// Attribute types of the TCG that name a TPM in the directoryName of an EK
// certificate's subjectAltName.
var (
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// tagDirectoryName is the context-specific tag of a directoryName in an
// X.509 GeneralName.
const tagDirectoryName = 4

// TPMIdentity is the TPM that an EK certificate names. EK certificates
// often have an empty subject and name the TPM in a directoryName of their
// subjectAltName instead.
type TPMIdentity struct {
	// Manufacturer is the tcg-at-tpmManufacturer attribute: "id:" and
	// the TPM_PT_MANUFACTURER value in hex, such as "id:49424D00".
	Manufacturer string
	// Model is the tcg-at-tpmModel attribute, a name that the
	// manufacturer chooses.
	Model string
	// Version is the tcg-at-tpmVersion attribute: "id:" and the firmware
	// version in hex.
	Version string
}

// ParseTPMIdentity reads the TPM manufacturer, model and version from the
// directoryName of cert's subjectAltName. An attribute that the certificate
// lacks is empty, and a certificate with none of the three is an error.
// ParseTPMIdentity checks no signature: call VerifyEKCert for that.
func ParseTPMIdentity(cert *x509.Certificate) (*TPMIdentity, error) {
	var extension *pkix.Extension
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(oidSubjectAltName) {
			extension = &cert.Extensions[i]
		}
	}
	if extension == nil {
		return nil, fmt.Errorf("EK certificate has no subjectAltName that names the TPM")
	}

	var generalNames []asn1.RawValue
	rest, err := asn1.Unmarshal(extension.Value, &generalNames)
	if err != nil {
		return nil, fmt.Errorf("EK certificate: invalid subjectAltName: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("EK certificate: invalid subjectAltName: %d trailing bytes", len(rest))
	}

	identity := &TPMIdentity{}
	for _, name := range generalNames {
		if name.Class != asn1.ClassContextSpecific || name.Tag != tagDirectoryName {
			continue
		}
		// A directoryName is explicitly tagged, because Name is a CHOICE,
		// so its content is the RDNSequence with its own header.
		var rdns pkix.RDNSequence
		if _, err := asn1.Unmarshal(name.Bytes, &rdns); err != nil {
			return nil, fmt.Errorf("EK certificate: invalid directoryName in the subjectAltName: %w", err)
		}
		identity.addAttributes(rdns)
	}

	if *identity == (TPMIdentity{}) {
		return nil, fmt.Errorf("EK certificate: the subjectAltName names no TPM manufacturer, model or version")
	}
	return identity, nil
}

// addAttributes copies the TPM attributes of rdns whose values are strings.
func (id *TPMIdentity) addAttributes(rdns pkix.RDNSequence) {
	for _, rdn := range rdns {
		for _, attribute := range rdn {
			value, ok := attribute.Value.(string)
			if !ok {
				continue
			}
			switch {
			case attribute.Type.Equal(oidTPMManufacturer):
				id.Manufacturer = value
			case attribute.Type.Equal(oidTPMModel):
				id.Model = value
			case attribute.Type.Equal(oidTPMVersion):
				id.Version = value
			}
		}
	}
}
