// Package provision gives a cleared TPM the host layout that the vcomlink
// agent serves. It creates the EK, SRK, AIK, quote key, ECDH key and device
// identity key at their well-known persistent handles. It writes an EK
// certificate and a device certificate, both issued by one CA, and the NV
// indices of the device-key credential and the disk keys. It is meant for
// the agent's simulator backend and for tests.
package provision

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// Sizes of the random contents of the NV indices, in bytes.
const (
	DeviceKeyCredentialSize = 32
	DiskKeySize             = 64
)

// ErrHandleInUse is wrapped by the error that Provision returns when a
// persistent handle or NV index of the layout already exists in the TPM.
var ErrHandleInUse = errors.New("handle already in use (provision only a cleared TPM)")

// Options configures Provision. The zero value is ready to use.
type Options struct {
	// Rand is the source of certificate serial numbers and of the random NV
	// contents. Nil means crypto/rand.
	Rand io.Reader
	// CA issues the EK and device certificates. Nil means a new CA from
	// NewCA, which takes about a second for its 4096-bit RSA key, so tests
	// that provision many TPMs may share one.
	CA *CA
	// OmitSRK leaves the SRK handle empty. The embedded reference simulator
	// of go-tpm-tools v0.4.11 has 16 KiB of NV. That is room for five
	// persistent keys and the NV indices of the layout, but not for a sixth
	// key, so provisioning the simulator needs OmitSRK. Each persistent
	// object took about 1.2 KiB of that NV in a test, whatever the key type.
	OmitSRK bool
}

// Key is a persistent key that Provision created.
type Key struct {
	// Handle is the persistent handle of the key.
	Handle tpm2.TPMHandle
	// Public is the public area of the key.
	Public tpm2.TPMTPublic
	// Name is the TPM name of the key: its name algorithm and the digest of
	// Public.
	Name tpm2.TPM2BName
}

// PublicKey returns the key's public key as an *rsa.PublicKey or an
// *ecdsa.PublicKey.
func (k Key) PublicKey() (crypto.PublicKey, error) {
	public, err := tpm2.Pub(k.Public)
	if err != nil {
		return nil, fmt.Errorf("public key of 0x%08X: %w", uint32(k.Handle), err)
	}
	return public, nil
}

// Result describes what Provision put into the TPM.
type Result struct {
	// CA is the CA that issued EKCert and DeviceCert.
	CA *CA
	// EKCert is the EK certificate, stored in DER at vcom.HandleEKCert.
	EKCert *x509.Certificate
	// DeviceCert is the device certificate, stored in DER at
	// vcom.HandleDeviceCert.
	DeviceCert *x509.Certificate
	// TPMInfo is the TPM description that EKCert carries.
	TPMInfo TPMInfo

	// EK is the RSA-2048 endorsement key in the TCG template.
	EK Key
	// SRK is the RSA-2048 storage root key in the TCG template, or the
	// zero Key with Options.OmitSRK.
	SRK Key
	// AIK is the restricted RSA-2048 signing key with RSASSA-SHA256.
	AIK Key
	// QuoteKey is the restricted ECC P-256 signing key with ECDSA-SHA256.
	QuoteKey Key
	// ECDHKey is the unrestricted ECC P-256 key with sign, decrypt and the
	// null scheme.
	ECDHKey Key
	// DeviceKey is the unrestricted ECC P-256 signing key with
	// ECDSA-SHA256.
	DeviceKey Key

	// NVData is the data written to each NV index, by handle: the two
	// certificates in DER, the device-key credential and the disk keys.
	NVData map[tpm2.TPMHandle][]byte
}

// Provision creates the keys and NV indices of the vcomlink host layout in a
// cleared TPM, using empty auth values for the hierarchies:
//
//   - 0x81000001 EK: RSA-2048 TCG EK template, endorsement hierarchy
//   - 0x81000002 SRK: RSA-2048 TCG SRK template, owner hierarchy, unless
//     Options.OmitSRK
//   - 0x81000003 AIK: restricted RSA-2048 signing key, RSASSA-SHA256
//   - 0x81000004 quote key: restricted ECC P-256 signing key, ECDSA-SHA256
//   - 0x81000005 ECDH key: unrestricted ECC P-256, sign and decrypt, null
//     scheme
//   - 0x817FFFFF device key: unrestricted ECC P-256 signing key,
//     ECDSA-SHA256
//   - 0x01C00002 EK certificate: platform-created, write-locked,
//     AUTHREAD with the empty auth value
//   - 0x01500000 device certificate: AUTHREAD
//   - 0x01600000 device-key credential: 32 random bytes, OWNERREAD only
//   - 0x01700000, 0x01800000, 0x01900000 disk keys: 64 random bytes each,
//     AUTHREAD
//
// All keys other than the EK have userWithAuth and an empty auth value, and
// all keys and indices other than the EK have noDA. Every key is a primary
// key: the EK of the endorsement hierarchy, the others of the owner
// hierarchy. NV data is written in chunks of at most TPM_PT_NV_BUFFER_MAX
// bytes. A TPM without room for all of it fails NV_DefineSpace with
// TPM_RC_NV_SPACE, as the embedded simulator does unless Options.OmitSRK is
// set.
//
// Provision flushes every transient object it creates, also when it fails.
// It stops at the first error and leaves what it already made persistent in
// the TPM. When a handle of the layout already exists, the error wraps
// ErrHandleInUse and the TPM's TPM_RC_NV_DEFINED.
func Provision(tpm transport.TPM, opts Options) (*Result, error) {
	random := orCryptoRand(opts.Rand)

	bufferMax, err := nvBufferMax(tpm)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}

	info, err := readTPMInfo(tpm)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}

	ca := opts.CA
	if ca == nil {
		ca, err = NewCA(random)
		if err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}

	result := &Result{CA: ca, TPMInfo: info}
	if err := createKeys(tpm, result, opts.OmitSRK); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}

	if err := issueCertificates(random, result); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}

	indices, err := nvIndices(random, result)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}

	result.NVData = make(map[tpm2.TPMHandle][]byte)
	for _, index := range indices {
		if err := defineAndWrite(tpm, index, bufferMax); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
		result.NVData[index.handle] = index.data
	}
	return result, nil
}

// createKeys creates the keys of the layout and stores them in result.
func createKeys(tpm transport.TPM, result *Result, omitSRK bool) error {
	keys := []struct {
		key       *Key
		name      string
		hierarchy tpm2.TPMHandle
		handle    uint32
		template  tpm2.TPMTPublic
	}{
		{&result.EK, "EK", tpm2.TPMRHEndorsement, vcom.HandleEK, tpm2.RSAEKTemplate},
		{&result.SRK, "SRK", tpm2.TPMRHOwner, vcom.HandleSRK, srkTemplate()},
		{&result.AIK, "AIK", tpm2.TPMRHOwner, vcom.HandleAIK, aikTemplate()},
		{&result.QuoteKey, "quote key", tpm2.TPMRHOwner, vcom.HandleQuoteKey, quoteKeyTemplate()},
		{&result.ECDHKey, "ECDH key", tpm2.TPMRHOwner, vcom.HandleECDHKey, ecdhKeyTemplate()},
		{&result.DeviceKey, "device key", tpm2.TPMRHOwner, vcom.HandleDeviceKey, deviceKeyTemplate()},
	}

	for _, k := range keys {
		if omitSRK && k.key == &result.SRK {
			continue
		}
		key, err := createPersistentPrimary(tpm, k.hierarchy, tpm2.TPMHandle(k.handle), k.template)
		if err != nil {
			return fmt.Errorf("%s at 0x%08X: %w", k.name, k.handle, err)
		}
		*k.key = key
	}
	return nil
}

// createPersistentPrimary creates a primary key from template in hierarchy,
// makes it persistent at handle with owner authorization and flushes the
// transient object on every path.
func createPersistentPrimary(tpm transport.TPM, hierarchy, handle tpm2.TPMHandle, template tpm2.TPMTPublic) (key Key, err error) {
	created, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(template),
	}.Execute(tpm)
	if err != nil {
		return Key{}, fmt.Errorf("CreatePrimary: %w", err)
	}

	defer func() {
		_, flushErr := tpm2.FlushContext{FlushHandle: created.ObjectHandle}.Execute(tpm)
		if flushErr != nil {
			err = errors.Join(err, fmt.Errorf("FlushContext of transient object 0x%08X: %w",
				uint32(created.ObjectHandle), flushErr))
		}
	}()

	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: created.ObjectHandle, Name: created.Name},
		PersistentHandle: handle,
	}.Execute(tpm)
	if err != nil {
		return Key{}, fmt.Errorf("EvictControl: %w", inUse(err))
	}

	public, err := created.OutPublic.Contents()
	if err != nil {
		return Key{}, fmt.Errorf("parse public area from CreatePrimary: %w", err)
	}
	return Key{Handle: handle, Public: *public, Name: created.Name}, nil
}

// issueCertificates issues the EK and device certificates for the keys in
// result.
func issueCertificates(random io.Reader, result *Result) error {
	ekPublic, err := result.EK.PublicKey()
	if err != nil {
		return err
	}
	result.EKCert, err = result.CA.IssueEKCertificate(random, ekPublic, result.TPMInfo)
	if err != nil {
		return err
	}

	devicePublic, err := result.DeviceKey.PublicKey()
	if err != nil {
		return err
	}
	result.DeviceCert, err = result.CA.IssueDeviceCertificate(random, devicePublic)
	return err
}

// nvIndices lists the NV indices of the layout with their contents.
func nvIndices(random io.Reader, result *Result) ([]nvIndex, error) {
	indices := []nvIndex{
		{handle: tpm2.TPMHandle(vcom.HandleEKCert), attributes: ekCertAttributes(), data: result.EKCert.Raw},
		{handle: tpm2.TPMHandle(vcom.HandleDeviceCert), attributes: ownerIndexAttributes(true), data: result.DeviceCert.Raw},
	}

	randomIndices := []struct {
		handle   uint32
		size     int
		authRead bool
	}{
		{vcom.HandleDeviceKeyCredential, DeviceKeyCredentialSize, false},
		{vcom.HandleDiskKey1, DiskKeySize, true},
		{vcom.HandleDiskKey2, DiskKeySize, true},
		{vcom.HandleDiskKey3, DiskKeySize, true},
	}
	for _, r := range randomIndices {
		data := make([]byte, r.size)
		if _, err := io.ReadFull(random, data); err != nil {
			return nil, fmt.Errorf("generate data for NV index 0x%08X: %w", r.handle, err)
		}
		indices = append(indices, nvIndex{
			handle:     tpm2.TPMHandle(r.handle),
			attributes: ownerIndexAttributes(r.authRead),
			data:       data,
		})
	}
	return indices, nil
}

// inUse wraps ErrHandleInUse around err when the TPM returned
// TPM_RC_NV_DEFINED, its code for a persistent handle or NV index that
// already exists.
func inUse(err error) error {
	if errors.Is(err, tpm2.TPMRCNVDefined) {
		return fmt.Errorf("%w: %w", ErrHandleInUse, err)
	}
	return err
}
