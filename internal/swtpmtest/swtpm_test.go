package swtpmtest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// dialOrFail connects to s and closes the connection when the test ends.
func dialOrFail(t *testing.T, s *SWTPM) *Conn {
	t.Helper()

	conn, err := s.Dial()
	if err != nil {
		t.Fatalf("dial swtpm at %s: %v", s.SocketPath, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestProvisionedKeys(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

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
		keyType    tpm2.TPMAlgID
		attributes tpm2.TPMAObject
		scheme     tpm2.TPMAlgID
	}{
		{"EK", vcom.HandleEK, tpm2.TPMAlgRSA, endorsement, tpm2.TPMAlgNull},
		{"SRK", vcom.HandleSRK, tpm2.TPMAlgRSA, storage, tpm2.TPMAlgNull},
		{"AIK", vcom.HandleAIK, tpm2.TPMAlgRSA, restrictedSigning, tpm2.TPMAlgRSASSA},
		{"quote key", vcom.HandleQuoteKey, tpm2.TPMAlgECC, restrictedSigning, tpm2.TPMAlgECDSA},
		{"ECDH key", vcom.HandleECDHKey, tpm2.TPMAlgECC, signDecrypt, tpm2.TPMAlgNull},
		{"device key", vcom.HandleDeviceKey, tpm2.TPMAlgECC, unrestrictedSigning, tpm2.TPMAlgECDSA},
	}

	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			public := readPublic(t, tpm, test.handle)

			if public.Type != test.keyType {
				t.Errorf("type = 0x%04X, want 0x%04X", public.Type, test.keyType)
			}
			if got, want := tpm2.Marshal(public.ObjectAttributes), tpm2.Marshal(test.attributes); !bytes.Equal(got, want) {
				t.Errorf("attributes = %x, want %x", got, want)
			}
			if got := keyScheme(t, public); got != test.scheme {
				t.Errorf("scheme = 0x%04X, want 0x%04X", got, test.scheme)
			}
		})
	}

	t.Run("EK policy", func(t *testing.T) {
		public := readPublic(t, tpm, vcom.HandleEK)
		want := tpm2.RSAEKTemplate.AuthPolicy.Buffer
		if !bytes.Equal(public.AuthPolicy.Buffer, want) {
			t.Errorf("EK authPolicy = %x, want PolicySecret(TPM_RH_ENDORSEMENT) %x", public.AuthPolicy.Buffer, want)
		}
	})
}

func TestProvisionedNVIndices(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

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
		size       int // 0 for a certificate, whose size varies
	}{
		{"EK certificate", vcom.HandleEKCert, ekCertIndex, 0},
		{"device certificate", vcom.HandleDeviceCert, ownerIndex, 0},
		{"device-key credential", vcom.HandleDeviceKeyCredential, ownerReadOnly, 32},
		{"disk key 1", vcom.HandleDiskKey1, ownerIndex, 64},
		{"disk key 2", vcom.HandleDiskKey2, ownerIndex, 64},
		{"disk key 3", vcom.HandleDiskKey3, ownerIndex, 64},
	}

	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			public := readNVPublic(t, tpm, test.handle)

			if got, want := tpm2.Marshal(public.Attributes), tpm2.Marshal(test.attributes); !bytes.Equal(got, want) {
				t.Errorf("attributes = %x, want %x", got, want)
			}
			if test.size != 0 && int(public.DataSize) != test.size {
				t.Errorf("size = %d, want %d", public.DataSize, test.size)
			}
			if test.attributes.AuthRead {
				data := readNV(t, tpm, test.handle, int(public.DataSize))
				if len(data) != int(public.DataSize) {
					t.Errorf("read %d bytes with the index's auth, want %d", len(data), public.DataSize)
				}
			}
		})
	}
}

func TestProvisionedEKCertificate(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

	size := int(readNVPublic(t, tpm, vcom.HandleEKCert).DataSize)
	if size <= 1024 {
		t.Errorf("EK certificate index has %d bytes, want more than 1024", size)
	}

	cert, err := x509.ParseCertificate(readNV(t, tpm, vcom.HandleEKCert, size))
	if err != nil {
		t.Fatalf("parse EK certificate: %v", err)
	}

	ekPublic, err := tpm2.Pub(*readPublic(t, tpm, vcom.HandleEK))
	if err != nil {
		t.Fatalf("EK public key: %v", err)
	}
	if !ekPublic.(*rsa.PublicKey).Equal(cert.PublicKey) {
		t.Errorf("EK certificate public key differs from the EK at 0x%08X", vcom.HandleEK)
	}

	if err := cert.CheckSignatureFrom(s.CA); err != nil {
		t.Errorf("EK certificate signature: %v", err)
	}

	// crypto/x509 leaves a critical subjectAltName with only a
	// directoryName unhandled, and the EK certificate has one.
	oidSubjectAltName := asn1.ObjectIdentifier{2, 5, 29, 17}
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled

	roots := x509.NewCertPool()
	roots.AddCert(s.CA)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		t.Errorf("verify EK certificate against ca.pem: %v", err)
	}
}

func TestProvisionedDeviceCertificate(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

	size := int(readNVPublic(t, tpm, vcom.HandleDeviceCert).DataSize)
	cert, err := x509.ParseCertificate(readNV(t, tpm, vcom.HandleDeviceCert, size))
	if err != nil {
		t.Fatalf("parse device certificate: %v", err)
	}

	devicePublic, err := tpm2.Pub(*readPublic(t, tpm, vcom.HandleDeviceKey))
	if err != nil {
		t.Fatalf("device public key: %v", err)
	}
	publicDER, err := x509.MarshalPKIXPublicKey(devicePublic)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(publicDER, cert.RawSubjectPublicKeyInfo) {
		t.Errorf("device certificate public key differs from the device key at 0x%08X", vcom.HandleDeviceKey)
	}

	roots := x509.NewCertPool()
	roots.AddCert(s.CA)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Errorf("verify device certificate against ca.pem: %v", err)
	}
}

func TestProvisionedCredentialRejectsIndexAuth(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

	index := nvHandle(t, tpm, vcom.HandleDeviceKeyCredential)
	_, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index.Handle, Name: index.Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    index,
		Size:       32,
	}.Execute(tpm)
	if err == nil {
		t.Fatalf("NV_Read of 0x%08X with its own auth succeeded, want a rejection", vcom.HandleDeviceKeyCredential)
	}
	// libtpms rejects the index's auth in its session checks with
	// TPM_RC_AUTH_UNAVAILABLE. TPM_RC_NV_AUTHORIZATION is the code that
	// NV_Read itself has for the case.
	if !errors.Is(err, tpm2.TPMRCAuthUnavailable) && !errors.Is(err, tpm2.TPMRCNVAuthorization) {
		t.Errorf("NV_Read of 0x%08X with its own auth: %v, want TPM_RC_AUTH_UNAVAILABLE or TPM_RC_NV_AUTHORIZATION",
			vcom.HandleDeviceKeyCredential, err)
	}
}

func TestProvisionedNoTransients(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)

	response, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: 64,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("GetCapability(TPM_CAP_HANDLES, transient): %v", err)
	}
	handles, err := response.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	for _, handle := range handles.Handle {
		if handle>>24 == tpm2.TPMHandle(tpm2.TPMHTTransient) {
			t.Errorf("transient object 0x%08X is loaded", uint32(handle))
		}
	}
}

func TestKillAndRestart(t *testing.T) {
	s := Start(t)
	tpm := dialOrFail(t, s)
	readPublic(t, tpm, vcom.HandleEK)

	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(tpm); err == nil {
		t.Errorf("GetRandom on a connection to a killed swtpm succeeded, want an error")
	}
	if conn, err := s.Dial(); err == nil {
		conn.Close()
		t.Errorf("Dial after Kill succeeded, want an error")
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	restarted := dialOrFail(t, s)
	public := readPublic(t, restarted, vcom.HandleEK)
	if public.Type != tpm2.TPMAlgRSA {
		t.Errorf("EK type after Restart = 0x%04X, want RSA", public.Type)
	}
	if size := readNVPublic(t, restarted, vcom.HandleEKCert).DataSize; size <= 1024 {
		t.Errorf("EK certificate index has %d bytes after Restart, want more than 1024", size)
	}
}

func TestRestartRunning(t *testing.T) {
	s := StartCleared(t)

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart of a running swtpm: %v", err)
	}
	tpm := dialOrFail(t, s)
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(tpm); err != nil {
		t.Errorf("GetRandom after Restart: %v", err)
	}
}

func TestStartCleared(t *testing.T) {
	s := StartCleared(t)
	tpm := dialOrFail(t, s)

	if s.CA != nil {
		t.Errorf("CA = %v, want nil for a cleared state", s.CA.Subject)
	}

	response, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTPersistent) << 24,
		PropertyCount: 64,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("GetCapability(TPM_CAP_HANDLES, persistent): %v", err)
	}
	handles, err := response.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	if len(handles.Handle) != 0 {
		t.Errorf("cleared swtpm has persistent handles %v, want none", handles.Handle)
	}
}

// readPublic returns the public area of a key.
func readPublic(t *testing.T, tpm transport.TPM, handle uint32) *tpm2.TPMTPublic {
	t.Helper()

	response, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(tpm)
	if err != nil {
		t.Fatalf("ReadPublic(0x%08X): %v", handle, err)
	}
	public, err := response.OutPublic.Contents()
	if err != nil {
		t.Fatalf("parse public area of 0x%08X: %v", handle, err)
	}
	return public
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

// readNV reads size bytes of an NV index with the index's empty auth
// value, in chunks of TPM_PT_NV_BUFFER_MAX bytes.
func readNV(t *testing.T, tpm transport.TPM, handle uint32, size int) []byte {
	t.Helper()

	response, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("GetCapability(TPM_PT_NV_BUFFER_MAX): %v", err)
	}
	properties, err := response.CapabilityData.Data.TPMProperties()
	if err != nil || len(properties.TPMProperty) != 1 || properties.TPMProperty[0].Property != tpm2.TPMPTNVBufferMax {
		t.Fatalf("GetCapability(TPM_PT_NV_BUFFER_MAX) returned no value: %v", err)
	}
	bufferMax := int(properties.TPMProperty[0].Value)

	index := nvHandle(t, tpm, handle)
	var data []byte
	for offset := 0; offset < size; offset += bufferMax {
		chunk := min(bufferMax, size-offset)
		response, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index.Handle, Name: index.Name, Auth: tpm2.PasswordAuth(nil)},
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

func TestPauseAndResume(t *testing.T) {
	s := StartCleared(t)
	paused := dialOrFail(t, s)
	paused.Timeout = 500 * time.Millisecond

	if err := s.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(paused); err == nil {
		t.Fatalf("GetRandom on a paused swtpm succeeded; want a timeout")
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("GetRandom on a paused swtpm: %v; want a timeout", err)
	}
	paused.Close()

	if err := s.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	// swtpm serves one connection at a time and has a short listen
	// backlog, so a dial fails with EAGAIN until it has done with the
	// paused connection.
	var resumed *Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if resumed, err = s.Dial(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial swtpm after Resume: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer resumed.Close()
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(resumed); err != nil {
		t.Errorf("GetRandom after Resume: %v", err)
	}
}
