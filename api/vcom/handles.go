package vcom

// Well-known handles of the host's TPM, in the layout of LF Edge EVE. A host
// may place its keys elsewhere and configure the agent to match.
const (
	// HandleEK is the endorsement key: RSA-2048 in the TCG template, with
	// policy authorisation and without userWithAuth.
	HandleEK uint32 = 0x81000001
	// HandleSRK is the storage root key.
	HandleSRK uint32 = 0x81000002
	// HandleAIK is the attestation key: a restricted RSA signing key with
	// the RSASSA-SHA256 scheme.
	HandleAIK uint32 = 0x81000003
	// HandleQuoteKey is the quote key. Guests may read its public area,
	// never sign or certify with it.
	HandleQuoteKey uint32 = 0x81000004
	// HandleECDHKey is an unrestricted ECC P-256 key that signs and decrypts.
	HandleECDHKey uint32 = 0x81000005
	// HandleDeviceKey is the device identity key. Guests may read its public
	// area, never sign or certify with it.
	HandleDeviceKey uint32 = 0x817FFFFF

	// HandleEKCert is the NV index of the RSA EK certificate.
	HandleEKCert uint32 = 0x01C00002
	// HandleDeviceCert is the NV index of the device certificate.
	HandleDeviceCert uint32 = 0x01500000
	// HandleDeviceKeyCredential is the owner-read NV index of the device-key
	// credential. Guests never read it.
	HandleDeviceKeyCredential uint32 = 0x01600000
	// HandleDiskKey1, HandleDiskKey2 and HandleDiskKey3 are NV indices of
	// disk-key material. Guests never read them.
	HandleDiskKey1 uint32 = 0x01700000
	HandleDiskKey2 uint32 = 0x01800000
	HandleDiskKey3 uint32 = 0x01900000
)
