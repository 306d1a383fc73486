package provision

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/swtpmtest"
)

// openSimulator returns a freshly manufactured embedded simulator that is
// closed when the test ends. Only one simulator can be open per process, so
// these tests do not run in parallel.
func openSimulator(t *testing.T) transport.TPM {
	t.Helper()

	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("open simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return transport.FromReadWriter(sim)
}

// sharedCA is one CA for the tests that do not test NewCA, because each new
// 4096-bit RSA key takes about a second.
var sharedCA = sync.OnceValues(func() (*CA, error) { return NewCA(nil) })

// provisionSimulator provisions a fresh simulator with the shared CA and
// without the SRK, which does not fit into the simulator's NV.
func provisionSimulator(t *testing.T) (transport.TPM, *Result) {
	t.Helper()

	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}

	tpm := openSimulator(t)
	result, err := Provision(tpm, Options{CA: ca, OmitSRK: true})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return tpm, result
}

func TestProvisionKeys(t *testing.T) {
	tpm, result := provisionSimulator(t)
	checkKeys(t, tpm, result, true)
}

// checkKeys checks the type, attributes and scheme of each key of the
// layout, and that result describes the keys that ReadPublic returns. With
// omitSRK, it checks that the SRK handle is empty.
func checkKeys(t *testing.T, tpm transport.TPM, result *Result, omitSRK bool) {
	t.Helper()

	owned := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
	}
	restrictedSigning := owned
	restrictedSigning.Restricted = true
	restrictedSigning.SignEncrypt = true
	unrestrictedSigning := owned
	unrestrictedSigning.SignEncrypt = true
	signDecrypt := unrestrictedSigning
	signDecrypt.Decrypt = true
	storage := owned
	storage.Restricted = true
	storage.Decrypt = true
	endorsement := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		AdminWithPolicy:     true,
		Restricted:          true,
		Decrypt:             true,
	}

	tests := []struct {
		name       string
		handle     uint32
		key        Key
		keyType    tpm2.TPMAlgID
		attributes tpm2.TPMAObject
		scheme     tpm2.TPMAlgID
	}{
		{"EK", vcom.HandleEK, result.EK, tpm2.TPMAlgRSA, endorsement, tpm2.TPMAlgNull},
		{"SRK", vcom.HandleSRK, result.SRK, tpm2.TPMAlgRSA, storage, tpm2.TPMAlgNull},
		{"AIK", vcom.HandleAIK, result.AIK, tpm2.TPMAlgRSA, restrictedSigning, tpm2.TPMAlgRSASSA},
		{"quote key", vcom.HandleQuoteKey, result.QuoteKey, tpm2.TPMAlgECC, restrictedSigning, tpm2.TPMAlgECDSA},
		{"ECDH key", vcom.HandleECDHKey, result.ECDHKey, tpm2.TPMAlgECC, signDecrypt, tpm2.TPMAlgNull},
		{"device key", vcom.HandleDeviceKey, result.DeviceKey, tpm2.TPMAlgECC, unrestrictedSigning, tpm2.TPMAlgECDSA},
	}

	for _, test := range tests {
		if omitSRK && test.handle == vcom.HandleSRK {
			continue
		}
		t.Run(test.name, func(t *testing.T) {
			read, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(test.handle)}.Execute(tpm)
			if err != nil {
				t.Fatalf("ReadPublic(0x%08X): %v", test.handle, err)
			}
			public, err := read.OutPublic.Contents()
			if err != nil {
				t.Fatalf("parse public area of 0x%08X: %v", test.handle, err)
			}

			if public.Type != test.keyType {
				t.Errorf("type = 0x%04X, want 0x%04X", public.Type, test.keyType)
			}
			if public.NameAlg != tpm2.TPMAlgSHA256 {
				t.Errorf("nameAlg = 0x%04X, want SHA-256", public.NameAlg)
			}
			if got, want := tpm2.Marshal(public.ObjectAttributes), tpm2.Marshal(test.attributes); !bytes.Equal(got, want) {
				t.Errorf("attributes = %x, want %x", got, want)
			}
			if got := keyScheme(t, public); got != test.scheme {
				t.Errorf("scheme = 0x%04X, want 0x%04X", got, test.scheme)
			}
			if test.scheme != tpm2.TPMAlgNull {
				if got := schemeHash(t, public); got != tpm2.TPMAlgSHA256 {
					t.Errorf("scheme hash = 0x%04X, want SHA-256", got)
				}
			}
			checkKeySize(t, public)

			if test.key.Handle != tpm2.TPMHandle(test.handle) {
				t.Errorf("Result handle = 0x%08X, want 0x%08X", uint32(test.key.Handle), test.handle)
			}
			if !bytes.Equal(tpm2.Marshal(test.key.Public), tpm2.Marshal(public)) {
				t.Errorf("Result public area differs from ReadPublic")
			}
			if !bytes.Equal(test.key.Name.Buffer, read.Name.Buffer) {
				t.Errorf("Result name = %x, ReadPublic name = %x", test.key.Name.Buffer, read.Name.Buffer)
			}
		})
	}

	if omitSRK {
		_, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(vcom.HandleSRK)}.Execute(tpm)
		if !errors.Is(err, tpm2.TPMRCHandle) {
			t.Errorf("ReadPublic(0x%08X) with OmitSRK: %v, want TPM_RC_HANDLE", vcom.HandleSRK, err)
		}
		if result.SRK.Handle != 0 {
			t.Errorf("Result SRK handle = 0x%08X with OmitSRK, want 0", uint32(result.SRK.Handle))
		}
	}

	t.Run("EK policy", func(t *testing.T) {
		want := tpm2.RSAEKTemplate.AuthPolicy.Buffer
		if !bytes.Equal(result.EK.Public.AuthPolicy.Buffer, want) {
			t.Errorf("EK authPolicy = %x, want PolicySecret(TPM_RH_ENDORSEMENT) %x",
				result.EK.Public.AuthPolicy.Buffer, want)
		}
	})
}

// keyScheme returns the scheme of an RSA or ECC public area.
func keyScheme(t *testing.T, public *tpm2.TPMTPublic) tpm2.TPMAlgID {
	t.Helper()

	switch public.Type {
	case tpm2.TPMAlgRSA:
		parameters, err := public.Parameters.RSADetail()
		if err != nil {
			t.Fatalf("RSA parameters: %v", err)
		}
		return parameters.Scheme.Scheme
	case tpm2.TPMAlgECC:
		parameters, err := public.Parameters.ECCDetail()
		if err != nil {
			t.Fatalf("ECC parameters: %v", err)
		}
		return parameters.Scheme.Scheme
	}
	t.Fatalf("unexpected key type 0x%04X", public.Type)
	return 0
}

// schemeHash returns the hash of an RSASSA or ECDSA scheme.
func schemeHash(t *testing.T, public *tpm2.TPMTPublic) tpm2.TPMAlgID {
	t.Helper()

	if public.Type == tpm2.TPMAlgRSA {
		parameters, _ := public.Parameters.RSADetail()
		rsassa, err := parameters.Scheme.Details.RSASSA()
		if err != nil {
			t.Fatalf("RSASSA scheme: %v", err)
		}
		return rsassa.HashAlg
	}

	parameters, _ := public.Parameters.ECCDetail()
	ecdsaScheme, err := parameters.Scheme.Details.ECDSA()
	if err != nil {
		t.Fatalf("ECDSA scheme: %v", err)
	}
	return ecdsaScheme.HashAlg
}

// checkKeySize checks that an RSA key has 2048 bits and an ECC key is on
// P-256.
func checkKeySize(t *testing.T, public *tpm2.TPMTPublic) {
	t.Helper()

	key, err := tpm2.Pub(*public)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	switch key := key.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() != 2048 {
			t.Errorf("RSA modulus has %d bits, want 2048", key.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			t.Errorf("ECC curve = %s, want P-256", key.Curve.Params().Name)
		}
	}
}

func TestProvisionNVIndices(t *testing.T) {
	tpm, result := provisionSimulator(t)
	checkNVIndices(t, tpm, result)
}

// checkNVIndices checks the attributes and size of each NV index of the
// layout, and that each contains the data in result.
func checkNVIndices(t *testing.T, tpm transport.TPM, result *Result) {
	t.Helper()

	ownerIndex := tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, Written: true}
	ownerReadOnly := ownerIndex
	ownerReadOnly.AuthRead = false
	ekCertIndex := tpm2.TPMANV{
		PPWrite:        true,
		WriteLocked:    true,
		WriteDefine:    true,
		PPRead:         true,
		OwnerRead:      true,
		AuthRead:       true,
		NoDA:           true,
		Written:        true,
		PlatformCreate: true,
	}

	tests := []struct {
		name       string
		handle     uint32
		attributes tpm2.TPMANV
		size       int
	}{
		{"EK certificate", vcom.HandleEKCert, ekCertIndex, len(result.EKCert.Raw)},
		{"device certificate", vcom.HandleDeviceCert, ownerIndex, len(result.DeviceCert.Raw)},
		{"device-key credential", vcom.HandleDeviceKeyCredential, ownerReadOnly, DeviceKeyCredentialSize},
		{"disk key 1", vcom.HandleDiskKey1, ownerIndex, DiskKeySize},
		{"disk key 2", vcom.HandleDiskKey2, ownerIndex, DiskKeySize},
		{"disk key 3", vcom.HandleDiskKey3, ownerIndex, DiskKeySize},
	}

	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			public := readNVPublic(t, tpm, test.handle)

			if got, want := tpm2.Marshal(public.Attributes), tpm2.Marshal(test.attributes); !bytes.Equal(got, want) {
				t.Errorf("attributes = %x, want %x", got, want)
			}
			if int(public.DataSize) != test.size {
				t.Errorf("size = %d, want %d", public.DataSize, test.size)
			}
			if len(result.NVData[tpm2.TPMHandle(test.handle)]) != test.size {
				t.Errorf("Result NVData has %d bytes, want %d", len(result.NVData[tpm2.TPMHandle(test.handle)]), test.size)
			}

			auth := tpm2.TPMHandle(test.handle)
			if !test.attributes.AuthRead {
				auth = tpm2.TPMRHOwner
			}
			data := readNV(t, tpm, auth, test.handle, int(public.DataSize))
			if !bytes.Equal(data, result.NVData[tpm2.TPMHandle(test.handle)]) {
				t.Errorf("NV data differs from Result NVData")
			}
		})
	}
}

func TestEKCertificate(t *testing.T) {
	tpm, result := provisionSimulator(t)
	checkEKCertificate(t, tpm, result)
}

// checkEKCertificate reads the EK certificate from its NV index and checks
// its size, its key, its TCG fields and its chain to the CA.
func checkEKCertificate(t *testing.T, tpm transport.TPM, result *Result) {
	t.Helper()

	size := readNVPublic(t, tpm, vcom.HandleEKCert).DataSize
	if size <= 1024 {
		t.Errorf("EK certificate index has %d bytes, want more than 1024", size)
	}
	der := readNV(t, tpm, tpm2.TPMHandle(vcom.HandleEKCert), vcom.HandleEKCert, int(size))

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse EK certificate: %v", err)
	}

	ekPublic, err := result.EK.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ekPublic.(*rsa.PublicKey).Equal(cert.PublicKey) {
		t.Errorf("EK certificate public key differs from the EK at 0x%08X", vcom.HandleEK)
	}

	verifyEKCertificate(t, cert, result.CA.Certificate)

	if len(cert.Subject.Names) != 0 {
		t.Errorf("subject = %q, want empty", cert.Subject)
	}
	if cert.KeyUsage != x509.KeyUsageKeyEncipherment {
		t.Errorf("key usage = %v, want keyEncipherment only", cert.KeyUsage)
	}
	if len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(oidEKCertificate) {
		t.Errorf("extended key usage = %v, want tcg-kp-EKCertificate", cert.UnknownExtKeyUsage)
	}
	if !cert.BasicConstraintsValid || cert.IsCA {
		t.Errorf("basic constraints: valid %v, CA %v, want valid and not a CA", cert.BasicConstraintsValid, cert.IsCA)
	}

	names := subjectAltNameDirectory(t, cert)
	want := map[string]string{
		oidTPMManufacturer.String(): result.TPMInfo.Manufacturer,
		oidTPMModel.String():        result.TPMInfo.Model,
		oidTPMVersion.String():      result.TPMInfo.Version,
	}
	for oid, value := range want {
		if names[oid] != value {
			t.Errorf("subjectAltName attribute %s = %q, want %q", oid, names[oid], value)
		}
	}
	if !strings.HasPrefix(result.TPMInfo.Manufacturer, "id:") || len(result.TPMInfo.Manufacturer) != 11 {
		t.Errorf("TPM manufacturer = %q, want id: and 8 hex digits", result.TPMInfo.Manufacturer)
	}
	if result.TPMInfo.SpecFamily != "2.0" {
		t.Errorf("TPM specification family = %q, want 2.0", result.TPMInfo.SpecFamily)
	}
}

// verifyEKCertificate verifies cert against the CA certificate, after
// marking as handled the critical subjectAltName that holds only a
// directoryName.
func verifyEKCertificate(t *testing.T, cert, caCert *x509.Certificate) {
	t.Helper()

	if err := cert.CheckSignatureFrom(caCert); err != nil {
		t.Errorf("EK certificate signature: %v", err)
	}

	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled

	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		t.Errorf("verify EK certificate against the CA: %v", err)
	}
}

// subjectAltNameDirectory returns the attributes of the directoryName in
// the certificate's subjectAltName, by OID, and checks that the extension
// is critical.
func subjectAltNameDirectory(t *testing.T, cert *x509.Certificate) map[string]string {
	t.Helper()

	for _, extension := range cert.Extensions {
		if !extension.Id.Equal(oidSubjectAltName) {
			continue
		}
		if !extension.Critical {
			t.Errorf("subjectAltName is not critical")
		}

		var generalNames []asn1.RawValue
		if _, err := asn1.Unmarshal(extension.Value, &generalNames); err != nil {
			t.Fatalf("parse subjectAltName: %v", err)
		}
		if len(generalNames) != 1 || generalNames[0].Tag != 4 {
			t.Fatalf("subjectAltName has %d names, want one directoryName", len(generalNames))
		}

		var name pkix.RDNSequence
		if _, err := asn1.Unmarshal(generalNames[0].Bytes, &name); err != nil {
			t.Fatalf("parse directoryName: %v", err)
		}
		attributes := make(map[string]string)
		for _, rdn := range name {
			for _, attribute := range rdn {
				attributes[attribute.Type.String()], _ = attribute.Value.(string)
			}
		}
		return attributes
	}
	t.Fatalf("EK certificate has no subjectAltName")
	return nil
}

func TestDeviceCertificate(t *testing.T) {
	tpm, result := provisionSimulator(t)

	size := readNVPublic(t, tpm, vcom.HandleDeviceCert).DataSize
	der := readNV(t, tpm, tpm2.TPMHandle(vcom.HandleDeviceCert), vcom.HandleDeviceCert, int(size))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse device certificate: %v", err)
	}

	devicePublic, err := result.DeviceKey.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !devicePublic.(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Errorf("device certificate public key differs from the device key at 0x%08X", vcom.HandleDeviceKey)
	}

	roots := x509.NewCertPool()
	roots.AddCert(result.CA.Certificate)
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Errorf("verify device certificate against the CA: %v", err)
	}
}

func TestOwnerReadIndexRejectsIndexAuth(t *testing.T) {
	tpm, _ := provisionSimulator(t)

	index := nvHandle(t, tpm, vcom.HandleDeviceKeyCredential)
	_, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index.Handle, Name: index.Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    index,
		Size:       DeviceKeyCredentialSize,
	}.Execute(tpm)
	if err == nil {
		t.Fatalf("NV_Read of 0x%08X with its own auth succeeded, want a rejection", vcom.HandleDeviceKeyCredential)
	}
	// The reference implementation rejects the index's auth in its session
	// checks with TPM_RC_AUTH_UNAVAILABLE. TPM_RC_NV_AUTHORIZATION is the
	// code that NV_Read itself has for the case.
	if !errors.Is(err, tpm2.TPMRCAuthUnavailable) && !errors.Is(err, tpm2.TPMRCNVAuthorization) {
		t.Errorf("NV_Read of 0x%08X with its own auth: %v, want TPM_RC_AUTH_UNAVAILABLE or TPM_RC_NV_AUTHORIZATION",
			vcom.HandleDeviceKeyCredential, err)
	}
}

func TestProvisionLeavesNoTransients(t *testing.T) {
	tpm := openSimulator(t)

	result, err := Provision(tpm, Options{OmitSRK: true})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if result.CA == nil || result.CA.Certificate == nil || result.CA.Key == nil {
		t.Fatalf("Provision without a CA returned CA %+v, want a new CA", result.CA)
	}
	if !result.CA.Certificate.IsCA {
		t.Errorf("new CA certificate is not a CA certificate")
	}

	if handles := transientHandles(t, tpm); len(handles) != 0 {
		t.Errorf("transient objects loaded after Provision: %v", handles)
	}
	if handles := loadedSessions(t, tpm); len(handles) != 0 {
		t.Errorf("sessions loaded after Provision: %v", handles)
	}
}

func TestProvisionTwice(t *testing.T) {
	tpm, _ := provisionSimulator(t)

	ca, _ := sharedCA()
	_, err := Provision(tpm, Options{CA: ca, OmitSRK: true})
	if err == nil {
		t.Fatal("second Provision succeeded, want an error")
	}
	if !errors.Is(err, ErrHandleInUse) {
		t.Errorf("second Provision: %v, want ErrHandleInUse", err)
	}
	if !errors.Is(err, tpm2.TPMRCNVDefined) {
		t.Errorf("second Provision: %v, want TPM_RC_NV_DEFINED", err)
	}
	if !strings.Contains(err.Error(), "0x81000001") {
		t.Errorf("second Provision: %q does not name handle 0x81000001", err)
	}

	if handles := transientHandles(t, tpm); len(handles) != 0 {
		t.Errorf("transient objects loaded after failed Provision: %v", handles)
	}
}

func TestProvisionNVIndexInUse(t *testing.T) {
	tpm := openSimulator(t)
	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}

	// An index defined in advance lets every key succeed, so Provision
	// fails later, on NV_DefineSpace.
	occupied := nvIndex{
		handle:     tpm2.TPMHandle(vcom.HandleDiskKey2),
		attributes: ownerIndexAttributes(true),
		data:       []byte{1},
	}
	if err := defineAndWrite(tpm, occupied, 1024); err != nil {
		t.Fatalf("define NV index 0x%08X: %v", vcom.HandleDiskKey2, err)
	}

	_, err = Provision(tpm, Options{CA: ca, OmitSRK: true})
	if !errors.Is(err, ErrHandleInUse) {
		t.Fatalf("Provision with 0x%08X defined: %v, want ErrHandleInUse", vcom.HandleDiskKey2, err)
	}
	if !strings.Contains(err.Error(), "0x01800000") {
		t.Errorf("Provision: %q does not name NV index 0x01800000", err)
	}
	if handles := transientHandles(t, tpm); len(handles) != 0 {
		t.Errorf("transient objects loaded after failed Provision: %v", handles)
	}
}

// TestProvisionSimulatorNVSpace shows that the whole layout, with the SRK,
// does not fit into the simulator's NV. If this test fails, the simulator
// has more NV now and Options.OmitSRK may no longer be needed there.
func TestProvisionSimulatorNVSpace(t *testing.T) {
	tpm := openSimulator(t)
	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}

	_, err = Provision(tpm, Options{CA: ca})
	if !errors.Is(err, tpm2.TPMRCNVSpace) {
		t.Fatalf("Provision with the SRK on the simulator: %v, want TPM_RC_NV_SPACE", err)
	}
	if handles := transientHandles(t, tpm); len(handles) != 0 {
		t.Errorf("transient objects loaded after failed Provision: %v", handles)
	}
}

func TestProvisionSWTPM(t *testing.T) {
	sw := swtpmtest.StartCleared(t)
	tpm, err := sw.Dial()
	if err != nil {
		t.Fatalf("dial swtpm: %v", err)
	}
	defer tpm.Close()

	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	result, err := Provision(tpm, Options{CA: ca})
	if err != nil {
		t.Fatalf("Provision on swtpm: %v", err)
	}

	checkKeys(t, tpm, result, false)
	checkNVIndices(t, tpm, result)
	checkEKCertificate(t, tpm, result)
	if handles := transientHandles(t, tpm); len(handles) != 0 {
		t.Errorf("transient objects loaded after Provision: %v", handles)
	}
}

func TestIssueCertificateWithoutCA(t *testing.T) {
	var ca CA
	_, err := ca.IssueDeviceCertificate(nil, &ecdsa.PublicKey{})
	if err == nil {
		t.Fatal("IssueDeviceCertificate with an empty CA succeeded, want an error")
	}
}

func TestIssueEKCertificateRequiresTPMInfo(t *testing.T) {
	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	key, err := rsa.GenerateKey(nil, 2048)
	if err != nil {
		t.Fatal(err)
	}

	_, err = ca.IssueEKCertificate(nil, &key.PublicKey, TPMInfo{Manufacturer: "id:00000000"})
	if err == nil {
		t.Fatal("IssueEKCertificate without TPM model and version succeeded, want an error")
	}
}

// readNVPublic returns the public area of an NV index.
func readNVPublic(t *testing.T, tpm transport.TPM, handle uint32) *tpm2.TPMSNVPublic {
	t.Helper()

	response, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(handle)}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_ReadPublic(0x%08X): %v", handle, err)
	}
	public, err := response.NVPublic.Contents()
	if err != nil {
		t.Fatalf("parse NV public area of 0x%08X: %v", handle, err)
	}
	return public
}

// nvHandle returns an NV index with its current name.
func nvHandle(t *testing.T, tpm transport.TPM, handle uint32) tpm2.NamedHandle {
	t.Helper()

	response, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(handle)}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_ReadPublic(0x%08X): %v", handle, err)
	}
	return tpm2.NamedHandle{Handle: tpm2.TPMHandle(handle), Name: response.NVName}
}

// readNV reads size bytes of an NV index in chunks of TPM_PT_NV_BUFFER_MAX,
// authorising with the empty password of auth, which is the index itself
// or a hierarchy.
func readNV(t *testing.T, tpm transport.TPM, auth tpm2.TPMHandle, handle uint32, size int) []byte {
	t.Helper()

	bufferMax, err := nvBufferMax(tpm)
	if err != nil {
		t.Fatal(err)
	}

	index := nvHandle(t, tpm, handle)
	authHandle := tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)}
	if auth == index.Handle {
		authHandle.Name = index.Name
	}

	var data []byte
	for offset := 0; offset < size; offset += bufferMax {
		chunk := min(bufferMax, size-offset)
		response, err := tpm2.NVRead{
			AuthHandle: authHandle,
			NVIndex:    index,
			Size:       uint16(chunk),
			Offset:     uint16(offset),
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("NV_Read(0x%08X, offset %d, size %d): %v", handle, offset, chunk, err)
		}
		data = append(data, response.Data.Buffer...)
	}
	return data
}

// transientHandles lists the transient objects loaded in the TPM.
func transientHandles(t *testing.T, tpm transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	return handlesFrom(t, tpm, uint32(tpm2.TPMHTTransient)<<24, 0x80FFFFFF)
}

// loadedSessions lists the HMAC and policy sessions loaded in the TPM.
func loadedSessions(t *testing.T, tpm transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	return append(
		handlesFrom(t, tpm, uint32(tpm2.TPMHTHMACSession)<<24, 0x02FFFFFF),
		handlesFrom(t, tpm, uint32(tpm2.TPMHTPolicySession)<<24, 0x03FFFFFF)...)
}

// handlesFrom lists the handles from first to last with
// GetCapability(TPM_CAP_HANDLES).
func handlesFrom(t *testing.T, tpm transport.TPM, first, last uint32) []tpm2.TPMHandle {
	t.Helper()

	response, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      first,
		PropertyCount: 64,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("GetCapability(TPM_CAP_HANDLES, 0x%08X): %v", first, err)
	}
	list, err := response.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatalf("GetCapability(TPM_CAP_HANDLES, 0x%08X): %v", first, err)
	}

	var handles []tpm2.TPMHandle
	for _, handle := range list.Handle {
		if uint32(handle) <= last {
			handles = append(handles, handle)
		}
	}
	return handles
}
