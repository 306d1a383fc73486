package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/provision"
)

const peer = "test"

func publicKey(t *testing.T, k provision.Key) crypto.PublicKey {
	t.Helper()
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func wantClass(t *testing.T, err, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("error = %v; want class %v", err, class)
	}
}

func TestGetPubReturnsPublicArea(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	keys := []provision.Key{tt.Result.EK, tt.Result.AIK, tt.Result.QuoteKey, tt.Result.ECDHKey, tt.Result.DeviceKey}
	for _, k := range keys {
		rsp, err := s.GetPub(context.Background(), peer, uint32(k.Handle))
		if err != nil {
			t.Fatalf("GetPub(0x%08x): %v", uint32(k.Handle), err)
		}
		if want := tpm2.Marshal(k.Public); !bytes.Equal(rsp.Public, want) {
			t.Errorf("GetPub(0x%08x).Public differs from the provisioned public area", uint32(k.Handle))
		}
		if rsp.Algorithm != uint32(k.Public.Type) {
			t.Errorf("GetPub(0x%08x).Algorithm = 0x%04x; want 0x%04x", uint32(k.Handle), rsp.Algorithm, uint32(k.Public.Type))
		}
		if want := binary.BigEndian.Uint32(tpm2.Marshal(k.Public.ObjectAttributes)); rsp.Attributes != want {
			t.Errorf("GetPub(0x%08x).Attributes = 0x%08x; want 0x%08x", uint32(k.Handle), rsp.Attributes, want)
		}
	}
}

func TestGetPubMissingHandle(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	_, err := s.GetPub(context.Background(), peer, 0x81000099)
	wantClass(t, err, ErrNotFound)
	if _, ok := ResponseCode(err); !ok {
		t.Errorf("error %v carries no TPM response code", err)
	}
}

func TestCheckHandleTypes(t *testing.T) {
	cases := []struct {
		h          uint32
		persistent bool
		nv         bool
	}{
		{0, false, false},
		{0x00000003, false, false}, // PCR 3
		{0x01c00002, false, true},
		{0x02000000, false, false},
		{0x03000001, false, false},
		{0x40000001, false, false}, // TPM_RH_OWNER
		{0x4000000b, false, false}, // TPM_RH_ENDORSEMENT
		{0x80000000, false, false},
		{0x81000003, true, false},
		{0xffffffff, false, false},
	}
	for _, c := range cases {
		err := CheckPersistent("getpub", "index", c.h)
		if (err == nil) != c.persistent {
			t.Errorf("CheckPersistent(0x%08x) = %v; want allowed %v", c.h, err, c.persistent)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckPersistent(0x%08x) = %v; want ErrInvalid", c.h, err)
		}
		err = CheckNVIndex("readnv", "index", c.h)
		if (err == nil) != c.nv {
			t.Errorf("CheckNVIndex(0x%08x) = %v; want allowed %v", c.h, err, c.nv)
		}
	}
}

func verifyRSA(t *testing.T, pub crypto.PublicKey, digest []byte, rsp *vcom.TpmResponseSign) {
	t.Helper()
	if rsp.Algorithm != "RSASSA" || rsp.RsaHash != "SHA256" {
		t.Fatalf("signature is %s-%s; want RSASSA-SHA256", rsp.Algorithm, rsp.RsaHash)
	}
	if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest, rsp.RsaSignature); err != nil {
		t.Fatalf("RSA signature does not verify: %v", err)
	}
}

func TestSignRestrictedKey(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	pub := publicKey(t, tt.Result.AIK)

	// Sizes around the TPM's 1024-byte input buffer, up to the body limit.
	for _, size := range []int{0, 1, 1023, 1024, 1025, 2048, 3000, 60000} {
		data := make([]byte, size)
		rand.Read(data)
		rsp, err := s.Sign(context.Background(), peer, vcom.HandleAIK, data)
		if err != nil {
			t.Fatalf("Sign(%d bytes): %v", size, err)
		}
		digest := sha256.Sum256(data)
		verifyRSA(t, pub, digest[:], rsp)
	}
	if n := tt.Sent(tpm2.TPMCCHashSequenceStart); n == 0 {
		t.Errorf("no hash sequence was used for data above the input buffer")
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestSignRejectsGeneratedValue(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	for _, size := range []int{4, 100, 5000} {
		data := make([]byte, size)
		copy(data, tpmGeneratedValue)
		_, err := s.Sign(context.Background(), peer, vcom.HandleAIK, data)
		wantClass(t, err, ErrInvalid)
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestSignUnrestrictedECCKey(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	digest := sha256.Sum256([]byte("message"))
	rsp, err := s.Sign(context.Background(), peer, vcom.HandleECDHKey, digest[:])
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if rsp.Algorithm != "ECDSA" || rsp.EccHash != "SHA256" {
		t.Fatalf("signature is %s-%s; want ECDSA-SHA256", rsp.Algorithm, rsp.EccHash)
	}
	if len(rsp.EccSignatureR) > 0 && rsp.EccSignatureR[0] == 0 {
		t.Errorf("r has a leading zero byte")
	}
	r := new(big.Int).SetBytes(rsp.EccSignatureR)
	sig := new(big.Int).SetBytes(rsp.EccSignatureS)
	pub := publicKey(t, tt.Result.ECDHKey).(*ecdsa.PublicKey)
	if !ecdsa.Verify(pub, digest[:], r, sig) {
		t.Fatalf("ECDSA signature does not verify")
	}
}

func TestSignDigestLength(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	for _, size := range []int{0, 20, 31, 33, 64} {
		_, err := s.Sign(context.Background(), peer, vcom.HandleECDHKey, make([]byte, size))
		wantClass(t, err, ErrInvalid)
	}
}

func TestSignNeedsSigningKey(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	_, err := s.Sign(context.Background(), peer, vcom.HandleEK, make([]byte, 32))
	wantClass(t, err, ErrInvalid)
}

func TestReadNVLargerThanBuffer(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	rsp, err := s.ReadNV(context.Background(), peer, vcom.HandleEKCert)
	if err != nil {
		t.Fatalf("ReadNV: %v", err)
	}
	if len(rsp.Data) <= s.nvBufferMax {
		t.Fatalf("EK certificate is %d bytes, not larger than the NV buffer of %d", len(rsp.Data), s.nvBufferMax)
	}
	if !bytes.Equal(rsp.Data, tt.Result.EKCert.Raw) {
		t.Fatalf("ReadNV data differs from the EK certificate")
	}
	if n := tt.Sent(tpm2.TPMCCNVRead); n < 2 {
		t.Errorf("NV_Read sent %d times; want the certificate read in chunks", n)
	}
}

func TestReadNVOwnerReadOnly(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	_, err := s.ReadNV(context.Background(), peer, vcom.HandleDeviceKeyCredential)
	wantClass(t, err, ErrForbidden)
	if n := tt.Sent(tpm2.TPMCCNVRead); n != 0 {
		t.Errorf("NV_Read sent %d times for an index without AUTHREAD", n)
	}
}

func TestReadNVOwnerReadConfigured(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, func(c *Config) {
		c.OwnerReadNV = map[uint32]bool{vcom.HandleDeviceKeyCredential: true}
	})

	rsp, err := s.ReadNV(context.Background(), peer, vcom.HandleDeviceKeyCredential)
	if err != nil {
		t.Fatalf("ReadNV: %v", err)
	}
	if !bytes.Equal(rsp.Data, tt.Result.NVData[tpm2.TPMHandle(vcom.HandleDeviceKeyCredential)]) {
		t.Fatalf("ReadNV data differs from what was provisioned")
	}
}

func TestReadNVMissingAndUnwritten(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	_, err := s.ReadNV(context.Background(), peer, 0x01000099)
	wantClass(t, err, ErrNotFound)

	const unwritten = 0x01000100
	defineNV(t, tt, unwritten, 16, true)
	_, err = s.ReadNV(context.Background(), peer, unwritten)
	wantClass(t, err, ErrNotFound)
}

// defineNV defines an ordinary NV index with AUTHREAD and AUTHWRITE and an
// empty auth value, without writing it.
func defineNV(t *testing.T, tt *simtest.TPM, h uint32, size uint16, noDA bool) {
	t.Helper()
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHOwner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(h),
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true,
				AuthWrite:  true,
				AuthRead:   true,
				NoDA:       noDA,
				NT:         tpm2.TPMNTOrdinary,
			},
			DataSize: size,
		}),
	}.Execute(tt)
	if err != nil {
		t.Fatalf("NV_DefineSpace(0x%08x): %v", h, err)
	}
}

func TestActivateCredParams(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	rsp, err := s.ActivateCredParams(context.Background(), peer, vcom.HandleAIK)
	if err != nil {
		t.Fatalf("ActivateCredParams: %v", err)
	}
	if !bytes.Equal(rsp.Ek, tpm2.Marshal(tt.Result.EK.Public)) {
		t.Errorf("ek differs from the provisioned EK")
	}
	if !bytes.Equal(rsp.AikPub, tpm2.Marshal(tt.Result.AIK.Public)) {
		t.Errorf("aik_pub differs from the provisioned AIK")
	}
	if !bytes.Equal(rsp.AikName, tpm2.Marshal(tt.Result.AIK.Name)) {
		t.Errorf("aik_name = %x; want the TPM2B_NAME %x", rsp.AikName, tpm2.Marshal(tt.Result.AIK.Name))
	}

	_, err = s.ActivateCredParams(context.Background(), peer, vcom.HandleECDHKey)
	wantClass(t, err, ErrInvalid)
}

// makeCredential makes a credential for the provisioned EK and name, in the
// wire's TPM2B encodings.
func makeCredential(t *testing.T, ek tpm2.TPMTPublic, name tpm2.TPM2BName, secret []byte) (cred, encSecret []byte) {
	t.Helper()
	key, err := tpm2.ImportEncapsulationKey(&ek)
	if err != nil {
		t.Fatal(err)
	}
	id, enc, err := tpm2.CreateCredential(rand.Reader, key, name.Buffer, secret)
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(tpm2.TPM2BIDObject{Buffer: id}), tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: enc})
}

func TestActivateCredentialPolicyEK(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	secret := make([]byte, 32)
	rand.Read(secret)
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, secret)
	rsp, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(rsp.Secret, secret) {
		t.Fatalf("recovered %x; want %x", rsp.Secret, secret)
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestActivateCredentialFailureCode(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, []byte("secret"))

	// TPM_RC_FAILURE for the credential alone, as swtpm gives for a seed
	// it cannot decrypt: the credential is rejected.
	tt.Fail(tpm2.TPMCCActivateCredential, tpm2.TPMRCFailure)
	_, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("TPM_RC_FAILURE from ActivateCredential alone: error = %v; want ErrInvalid", err)
	}

	// A TPM in failure mode refuses GetRandom too: the TPM has failed.
	tt.Fail(tpm2.TPMCCGetRandom, tpm2.TPMRCFailure)
	_, err = s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if !errors.Is(err, ErrTPM) {
		t.Errorf("TPM_RC_FAILURE from a TPM in failure mode: error = %v; want ErrTPM", err)
	}
	tt.Fail(tpm2.TPMCCActivateCredential, 0)
	tt.Fail(tpm2.TPMCCGetRandom, 0)
	if _, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc); err != nil {
		t.Errorf("ActivateCredential after the failures: %v", err)
	}
}

// TestRecoversFromLeakedSessions fills the TPM's session slots from
// outside the agent's operations, as a leak would, and checks that the
// operation that meets the full TPM flushes them, so that the next one
// succeeds.
func TestRecoversFromLeakedSessions(t *testing.T) {
	tt := simtest.Start(t)
	s, logs := newLoggedService(t, tt, nil)
	for range 64 {
		_, err := tpm2.StartAuthSession{
			TPMKey:      tpm2.TPMRHNull,
			Bind:        tpm2.TPMRHNull,
			SessionType: tpm2.TPMSEHMAC,
			Symmetric:   tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
			AuthHash:    tpm2.TPMAlgSHA256,
			NonceCaller: tpm2.TPM2BNonce{Buffer: make([]byte, 16)},
		}.Execute(tt)
		if errors.Is(err, tpm2.TPMRCSessionMemory) {
			break
		}
		if err != nil {
			t.Fatalf("StartAuthSession: %v", err)
		}
	}
	if len(tt.Loaded(t)) == 0 {
		t.Fatal("no session is loaded; the test leaked nothing")
	}

	secret := []byte("after the leak")
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, secret)
	_, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if !errors.Is(err, tpm2.TPMRCSessionMemory) {
		t.Fatalf("ActivateCredential on a TPM with no session slot = %v; want TPM_RC_SESSION_MEMORY", err)
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles still loaded after the recovery: %v", loaded)
	}
	if n := logs.count("flushed what this agent's connection left loaded"); n != 1 {
		t.Errorf("log has %d lines about the recovery; want 1:\n%s", n, logs)
	}
	rsp, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if err != nil {
		t.Fatalf("ActivateCredential after the recovery: %v", err)
	}
	if !bytes.Equal(rsp.Secret, secret) {
		t.Errorf("recovered %q; want %q", rsp.Secret, secret)
	}
}

// createPersistentKey creates a primary key from template in the owner or
// endorsement hierarchy and makes it persistent at h.
func createPersistentKey(t *testing.T, tt *simtest.TPM, hierarchy tpm2.TPMHandle, h uint32, template tpm2.TPMTPublic, auth []byte) tpm2.TPMTPublic {
	t.Helper()
	created, err := tpm2.CreatePrimary{
		PrimaryHandle: hierarchy,
		InSensitive: tpm2.TPM2BSensitiveCreate{
			Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: auth}},
		},
		InPublic: tpm2.New2B(template),
	}.Execute(tt)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: created.ObjectHandle}.Execute(tt)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: created.ObjectHandle, Name: created.Name},
		PersistentHandle: tpm2.TPMHandle(h),
	}.Execute(tt)
	if err != nil {
		t.Fatalf("EvictControl(0x%08x): %v", h, err)
	}
	pub, err := created.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return *pub
}

func TestActivateCredentialPasswordEK(t *testing.T) {
	tt := simtest.Start(t)
	const userEK = 0x81000011
	tt.Evict(t, vcom.HandleDeviceKey)
	template := tpm2.RSAEKTemplate
	template.ObjectAttributes.UserWithAuth = true
	template.ObjectAttributes.NoDA = true
	template.AuthPolicy = tpm2.TPM2BDigest{}
	ek := createPersistentKey(t, tt, tpm2.TPMRHEndorsement, userEK, template, nil)
	s := newService(t, tt, func(c *Config) { c.EK = userEK })

	secret := []byte("a credential for the password EK")
	ekName, err := tpm2.ObjectName(&ek)
	if err != nil {
		t.Fatal(err)
	}
	_ = ekName
	cred, enc := makeCredential(t, ek, tt.Result.AIK.Name, secret)
	rsp, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(rsp.Secret, secret) {
		t.Fatalf("recovered %q; want %q", rsp.Secret, secret)
	}
	if n := tt.Sent(tpm2.TPMCCPolicySecret); n != 0 {
		t.Errorf("PolicySecret sent %d times for an EK with userWithAuth", n)
	}
}

func TestActivateCredentialWrongName(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.ECDHKey.Name, []byte("secret"))
	_, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	wantClass(t, err, ErrInvalid)
	if !strings.Contains(err.Error(), "not made for this TPM's EK and this key's name") {
		t.Errorf("error %q does not say the credential was made for something else", err)
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestActivateCredentialOtherEK(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)

	// An EK public area of the same template with another RSA key.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek := tt.Result.EK.Public
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: other.N.Bytes()})
	cred, enc := makeCredential(t, ek, tt.Result.AIK.Name, []byte("secret"))
	_, err = s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc)
	wantClass(t, err, ErrInvalid)
	if !strings.Contains(err.Error(), "not made for this TPM's EK and this key's name") {
		t.Errorf("error %q does not say the credential was made for something else", err)
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestActivateCredentialSizePrefix(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, []byte("secret"))

	bad := [][2][]byte{
		{nil, enc},
		{cred, nil},
		{cred[:1], enc},
		{cred[:len(cred)-1], enc},
		{append(append([]byte(nil), cred...), 0), enc},
		{cred, enc[:len(enc)-1]},
		{cred, append(append([]byte(nil), enc...), 0)},
		{[]byte{0, 0}, enc},
		{cred, []byte{0xff, 0xff, 1}},
		{sized(maxIDObject + 1), enc},
		{cred, sized(maxEncryptedSecret + 1)},
		{sized(60000), enc},
	}
	for i, b := range bad {
		_, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, b[0], b[1])
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: error = %v; want ErrInvalid", i, err)
		}
	}
	if n := tt.Sent(tpm2.TPMCCActivateCredential); n != 0 {
		t.Errorf("ActivateCredential reached the TPM %d times with bad prefixes", n)
	}
}

// sized returns a TPM2B whose body is n bytes.
func sized(n int) []byte {
	b := make([]byte, 2+n)
	binary.BigEndian.PutUint16(b, uint16(n))
	return b
}

func TestActivateCredentialSizeLimits(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, []byte("secret"))

	_, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, sized(maxIDObject+1), enc)
	if want := "cred is a TPM2B_ID_OBJECT of 133 bytes, but a TPMS_ID_OBJECT is at most 132"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("cred over the limit: error = %v; want %q", err, want)
	}
	_, err = s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, sized(maxEncryptedSecret+1))
	if want := "secret is a TPM2B_ENCRYPTED_SECRET of 513 bytes, but a TPMU_ENCRYPTED_SECRET is at most 512"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("secret over the limit: error = %v; want %q", err, want)
	}
	if n := tt.Sent(tpm2.TPMCCActivateCredential); n != 0 {
		t.Errorf("ActivateCredential reached the TPM %d times with oversized TPM2Bs", n)
	}

	// At the limits, the request reaches the TPM, which rejects the
	// credential as not made for this key.
	_, err = s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, sized(maxIDObject), sized(maxEncryptedSecret))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("TPM2Bs at the limits: error = %v; want ErrInvalid", err)
	}
	if n := tt.Sent(tpm2.TPMCCActivateCredential); n != 1 {
		t.Errorf("ActivateCredential reached the TPM %d times with TPM2Bs at the limits; want 1", n)
	}
	if _, err := s.ActivateCredential(context.Background(), peer, vcom.HandleAIK, cred, enc); err != nil {
		t.Errorf("a valid credential after the oversized ones: %v", err)
	}
}

func TestCommandOverTPMLimitNotSent(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	if s.maxCommand < 1024 {
		t.Fatalf("TPM_PT_MAX_COMMAND_SIZE read as %d; want at least 1024", s.maxCommand)
	}

	cmd := make([]byte, s.maxCommand+1)
	binary.BigEndian.PutUint16(cmd[0:], uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
	binary.BigEndian.PutUint32(cmd[6:], uint32(tpm2.TPMCCHash))
	before := tt.Sent(tpm2.TPMCCHash)
	_, err := s.conn.Send(cmd)
	if !errors.Is(err, errCommandTooLarge) {
		t.Errorf("Send of %d bytes = %v; want errCommandTooLarge", len(cmd), err)
	}
	if n := tt.Sent(tpm2.TPMCCHash) - before; n != 0 {
		t.Errorf("a command over TPM_PT_MAX_COMMAND_SIZE reached the TPM %d times", n)
	}
	if cls := tpmError("sign", vcom.HandleAIK, "Hash", err); !errors.Is(cls, ErrInvalid) {
		t.Errorf("the error is classified as %v; want ErrInvalid", cls)
	}
	if _, err := s.GetPub(context.Background(), peer, vcom.HandleAIK); err != nil {
		t.Errorf("getpub after the refused command: %v", err)
	}
}

func TestCertify(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	aik := publicKey(t, tt.Result.AIK).(*rsa.PublicKey)

	for _, nonce := range [][]byte{nil, []byte("nonce"), bytes.Repeat([]byte{7}, MaxQualifyingData)} {
		rsp, err := s.Certify(context.Background(), peer, vcom.HandleECDHKey, nonce)
		if err != nil {
			t.Fatalf("Certify(nonce %x): %v", nonce, err)
		}
		if !bytes.Equal(rsp.Public, tpm2.Marshal(tt.Result.ECDHKey.Public)) {
			t.Errorf("public differs from the certified key")
		}
		attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](rsp.Attest)
		if err != nil {
			t.Fatalf("attest does not parse: %v", err)
		}
		if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestCertify {
			t.Errorf("attest magic 0x%x type 0x%x", uint32(attest.Magic), uint16(attest.Type))
		}
		if !bytes.Equal(attest.ExtraData.Buffer, nonce) {
			t.Errorf("extraData = %x; want %x", attest.ExtraData.Buffer, nonce)
		}
		info, err := attest.Attested.Certify()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(info.Name.Buffer, tt.Result.ECDHKey.Name.Buffer) {
			t.Errorf("certified name differs from the key's name")
		}
		sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](rsp.Sig)
		if err != nil {
			t.Fatalf("sig does not parse: %v", err)
		}
		rsaSig, err := sig.Signature.RSASSA()
		if err != nil {
			t.Fatalf("sig is not RSASSA: %v", err)
		}
		digest := sha256.Sum256(rsp.Attest)
		if err := rsa.VerifyPKCS1v15(aik, crypto.SHA256, digest[:], rsaSig.Sig.Buffer); err != nil {
			t.Errorf("signature over attest does not verify: %v", err)
		}
	}

	_, err := s.Certify(context.Background(), peer, vcom.HandleECDHKey, make([]byte, MaxQualifyingData+1))
	wantClass(t, err, ErrInvalid)
}

func TestKeyWithoutNoDARequiresConfiguredAuth(t *testing.T) {
	tt := simtest.Start(t)
	const daKey = 0x81000020
	tt.Evict(t, vcom.HandleDeviceKey)
	auth := []byte("host-secret")
	template := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: tpm2.TPMECCNistP256,
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
	createPersistentKey(t, tt, tpm2.TPMRHOwner, daKey, template, auth)
	before := tt.LockoutCounter(t)

	s := newService(t, tt, nil)
	digest := sha256.Sum256([]byte("x"))
	for range 20 {
		_, err := s.Sign(context.Background(), peer, daKey, digest[:])
		wantClass(t, err, ErrForbidden)
		_, err = s.Certify(context.Background(), peer, daKey, nil)
		wantClass(t, err, ErrForbidden)
	}
	if n := tt.Sent(tpm2.TPMCCSign); n != 0 {
		t.Errorf("Sign reached the TPM %d times without a configured auth value", n)
	}
	if after := tt.LockoutCounter(t); after != before {
		t.Fatalf("TPM_PT_LOCKOUT_COUNTER went from %d to %d", before, after)
	}

	configured := newService(t, tt, func(c *Config) { c.Auth = map[uint32][]byte{daKey: auth} })
	if _, err := configured.Sign(context.Background(), peer, daKey, digest[:]); err != nil {
		t.Fatalf("Sign with the configured auth value: %v", err)
	}
}

func TestObserveCommand(t *testing.T) {
	tt := simtest.Start(t)
	type observed struct{ command, rc uint32 }
	var mu sync.Mutex
	var seen []observed
	s := newService(t, tt, func(c *Config) {
		c.ObserveCommand = func(command, rc uint32, d time.Duration) {
			mu.Lock()
			seen = append(seen, observed{command, rc})
			mu.Unlock()
		}
	})
	if _, err := s.GetPub(context.Background(), peer, vcom.HandleAIK); err != nil {
		t.Fatal(err)
	}
	tt.Fail(tpm2.TPMCCReadPublic, tpm2.TPMRCFailure)
	s.GetPub(context.Background(), peer, vcom.HandleAIK)

	mu.Lock()
	defer mu.Unlock()
	want := []observed{
		{uint32(tpm2.TPMCCReadPublic), 0},
		{uint32(tpm2.TPMCCReadPublic), uint32(tpm2.TPMRCFailure)},
	}
	if len(seen) < 2 || seen[len(seen)-2] != want[0] || seen[len(seen)-1] != want[1] {
		t.Fatalf("observed %x; want it to end with %x", seen, want)
	}
}

func TestCheckHostKeys(t *testing.T) {
	tt := simtest.Start(t)
	ctx := context.Background()

	warnings, err := newService(t, tt, nil).CheckHostKeys(ctx)
	if err != nil || len(warnings) != 0 {
		t.Errorf("CheckHostKeys of the provisioned layout = %q, %v; want no warnings and no error", warnings, err)
	}

	_, err = newService(t, tt, func(c *Config) { c.AIK = vcom.HandleECDHKey }).CheckHostKeys(ctx)
	if err == nil || !strings.Contains(err.Error(), "not a restricted signing key") {
		t.Errorf("CheckHostKeys with an unrestricted key as AIK = %v; want an error", err)
	}
	_, err = newService(t, tt, func(c *Config) { c.EK = vcom.HandleAIK }).CheckHostKeys(ctx)
	if err == nil || !strings.Contains(err.Error(), "not a restricted decryption key") {
		t.Errorf("CheckHostKeys with the AIK as EK = %v; want an error", err)
	}

	warnings, err = newService(t, tt, func(c *Config) { c.EK = 0x81000099 }).CheckHostKeys(ctx)
	if err != nil {
		t.Errorf("CheckHostKeys with a missing EK = %v; want only a warning", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "0x81000099 does not exist") {
		t.Errorf("CheckHostKeys with a missing EK warned %q", warnings)
	}
}
