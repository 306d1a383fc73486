package server

import (
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/tpm"
)

// Handles of a key and an NV index that lack noDA and have an auth value
// that the host did not configure in the agent.
const (
	daKey   tpm2.TPMHandle = 0x81000020
	daIndex tpm2.TPMHandle = 0x01000020
)

var daAuth = []byte("host secret")

// retryingTPM sends a command again while the TPM responds with a retry
// warning, as swtpm does for the first NV write after a start.
type retryingTPM struct{ transport.TPM }

func (r retryingTPM) Send(cmd []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		rsp, err := r.TPM.Send(cmd)
		if err != nil || len(rsp) < 10 || attempt == 100 {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(10 * time.Millisecond)
		default:
			return rsp, nil
		}
	}
}

// createDAObjects creates daKey, an unrestricted ECC signing key, and
// daIndex, an NV index read with its own authorisation, both with the auth
// value daAuth and without noDA, so that a wrong auth value on either
// raises the TPM's dictionary-attack counter.
func createDAObjects(t *testing.T, direct transport.TPM) {
	t.Helper()
	tpm := retryingTPM{direct}
	created, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InSensitive: tpm2.TPM2BSensitiveCreate{
			Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: daAuth}},
		},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
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
		}),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: created.ObjectHandle}.Execute(tpm)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: created.ObjectHandle, Name: created.Name},
		PersistentHandle: daKey,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("EvictControl(0x%08x): %v", uint32(daKey), err)
	}

	nvPublic := tpm2.TPMSNVPublic{
		NVIndex:    daIndex,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{AuthWrite: true, AuthRead: true, NT: tpm2.TPMNTOrdinary},
		DataSize:   16,
	}
	_, err = tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHOwner,
		Auth:       tpm2.TPM2BAuth{Buffer: daAuth},
		PublicInfo: tpm2.New2B(nvPublic),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_DefineSpace(0x%08x): %v", uint32(daIndex), err)
	}
	// The index stays unwritten: readnv checks the authorisation before it
	// checks whether the index holds data.
}

// lockoutCounter returns TPM_PT_LOCKOUT_COUNTER.
func lockoutCounter(t *testing.T, tpm transport.TPM) uint32 {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 1,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("read TPM_PT_LOCKOUT_COUNTER: %v", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTLockoutCounter {
		t.Fatalf("read TPM_PT_LOCKOUT_COUNTER: %v", err)
	}
	return props.TPMProperty[0].Value
}

// signWithWrongAuth presents a wrong auth value for daKey, which must
// raise the lockout counter: the check that the counter can move at all.
// swtpm (libtpms) responds to the first authorisation failure after a
// start with TPM_RC_RETRY and counts it only when the command is sent again.
func signWithWrongAuth(t *testing.T, direct transport.TPM) {
	t.Helper()
	tpm := retryingTPM{direct}
	pub, err := tpm2.ReadPublic{ObjectHandle: daKey}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, err = tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: daKey, Name: pub.Name, Auth: tpm2.PasswordAuth([]byte("wrong"))},
		Digest:     tpm2.TPM2BDigest{Buffer: digest[:]},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(tpm)
	if err == nil {
		t.Fatal("Sign with a wrong auth value succeeded")
	}
}

// daRequest returns guest request i of a rotation through every operation
// that would present an authorisation to daKey or daIndex.
func daRequest(i int) (string, proto.Message) {
	digest := sha256.Sum256([]byte("data"))
	switch i % 4 {
	case 0:
		return vcom.PathSign, &vcom.TpmRequestSign{Index: uint32(daKey), Data: digest[:]}
	case 1:
		return vcom.PathCertifyKey, &vcom.TpmRequestCertify{Index: uint32(daKey), QualifyingData: []byte("nonce")}
	case 2:
		return vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: uint32(daKey), Cred: []byte{0, 1, 1}, Secret: []byte{0, 1, 1}}
	}
	return vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: uint32(daIndex)}
}

// sendDARequests sends 200 guest requests against daKey and daIndex and
// checks that each is refused for lack of a configured auth value, while
// another peer is served.
func sendDARequests(t *testing.T, a *agent) {
	t.Helper()
	well := a.as(t, "well")
	for i := range 200 {
		path, req := daRequest(i)
		r := a.post(t, path, req)
		checkError(t, path, r, http.StatusForbidden, "lacks noDA")
		if i%50 == 0 {
			well.mustServe(t, "between requests against a key without noDA")
		}
	}
}

// TestLockoutCounterUnchanged sends 200 guest requests against a key and
// an NV index that lack noDA and whose auth value the host did not
// configure, and checks that TPM_PT_LOCKOUT_COUNTER does not move.
func TestLockoutCounterUnchanged(t *testing.T) {
	sim := simtest.Start(t)
	sim.Evict(t, vcom.HandleDeviceKey) // room in the simulator's NV for daKey
	createDAObjects(t, sim)
	before := lockoutCounter(t, sim)

	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	a := newAgent(t, svc, func(c *Config) { c.RequestRate = -1 })
	sendDARequests(t, a)

	if after := lockoutCounter(t, sim); after != before {
		t.Fatalf("TPM_PT_LOCKOUT_COUNTER went from %d to %d after 200 guest requests", before, after)
	}
	if n := sim.Sent(tpm2.TPMCCSign) + sim.Sent(tpm2.TPMCCCertify) + sim.Sent(tpm2.TPMCCActivateCredential) + sim.Sent(tpm2.TPMCCNVRead); n != 0 {
		t.Errorf("%d commands that present an authorisation reached the TPM", n)
	}

	signWithWrongAuth(t, sim)
	if after := lockoutCounter(t, sim); after != before+1 {
		t.Errorf("a wrong auth value moved TPM_PT_LOCKOUT_COUNTER from %d to %d; want %d, or the check above proves nothing", before, after, before+1)
	}
}
