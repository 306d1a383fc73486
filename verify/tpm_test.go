package verify

import (
	"bytes"
	"fmt"
	"math/big"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// tpmKey is a transient object in the simulator.
type tpmKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	// raw is the TPMT_PUBLIC as the TPM returned it, without size prefix.
	raw    []byte
	public *tpm2.TPMTPublic
}

// authHandle returns the key as a handle authorised with its empty auth
// value.
func (k *tpmKey) authHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)}
}

// wireName returns the key's TPM2B_NAME with its size prefix, as
// TpmResponseActivateCredParams.aik_name carries it.
func (k *tpmKey) wireName() []byte {
	return tpm2.Marshal(k.name)
}

// simKeys are the keys that the tests share. Creating RSA keys in the
// simulator takes seconds, so they are created once per test binary.
type simKeys struct {
	tpm transport.TPMCloser

	rsaEK *tpmKey // TCG RSA-2048 EK template
	eccEK *tpmKey // TCG ECC P-256 EK template
	aik   *tpmKey // restricted RSA-2048 signing key, RSASSA-SHA256
	eccAK *tpmKey // restricted ECC P-256 signing key, ECDSA-SHA256
	ecc   *tpmKey // unrestricted ECC P-256 sign and decrypt key, NULL scheme
	pss   *tpmKey // unrestricted RSA-2048 signing key, RSAPSS-SHA384
}

var (
	simOnce sync.Once
	sim     *simKeys
	simErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sim != nil {
		if err := sim.close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the simulator:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// keys returns the shared keys, and starts the simulator and creates them
// on the first call.
func keys(t *testing.T) *simKeys {
	t.Helper()
	simOnce.Do(func() { sim, simErr = openSimulator() })
	if simErr != nil {
		t.Fatalf("starting the simulator: %v", simErr)
	}
	return sim
}

func openSimulator() (*simKeys, error) {
	s, err := simulator.Get()
	if err != nil {
		return nil, err
	}
	k := &simKeys{tpm: transport.FromReadWriteCloser(s)}

	// The simulator has three transient object slots, so each key is made
	// persistent, as on a host, and its transient copy flushed.
	steps := []struct {
		key       **tpmKey
		hierarchy tpm2.TPMHandle
		template  tpm2.TPMTPublic
		handle    uint32
	}{
		{&k.rsaEK, tpm2.TPMRHEndorsement, tpm2.RSAEKTemplate, vcom.HandleEK},
		{&k.eccEK, tpm2.TPMRHEndorsement, tpm2.ECCEKTemplate, 0x81010002},
		{&k.aik, tpm2.TPMRHEndorsement, rsaSigningTemplate(true, tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256), vcom.HandleAIK},
		{&k.eccAK, tpm2.TPMRHEndorsement, eccSigningTemplate(true, tpm2.TPMAlgECDSA), 0x81000013},
		{&k.ecc, tpm2.TPMRHOwner, eccSigningTemplate(false, tpm2.TPMAlgNull), vcom.HandleECDHKey},
		{&k.pss, tpm2.TPMRHOwner, rsaSigningTemplate(false, tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA384), 0x81000015},
	}
	for _, step := range steps {
		key, err := createPersistent(k.tpm, step.hierarchy, step.template, tpm2.TPMHandle(step.handle))
		if err != nil {
			k.close()
			return nil, err
		}
		*step.key = key
	}
	return k, nil
}

// close evicts every persistent key and closes the simulator.
func (k *simKeys) close() error {
	var errs []error
	for _, key := range []*tpmKey{k.rsaEK, k.eccEK, k.aik, k.eccAK, k.ecc, k.pss} {
		if key == nil {
			continue
		}
		_, err := tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     tpm2.NamedHandle{Handle: key.handle, Name: key.name},
			PersistentHandle: key.handle,
		}.Execute(k.tpm)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := k.tpm.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// createPersistent creates a primary key from template and makes it
// persistent at handle. The transient copy is flushed on every path.
func createPersistent(tpm transport.TPM, hierarchy tpm2.TPMHandle, template tpm2.TPMTPublic, handle tpm2.TPMHandle) (*tpmKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: hierarchy,
		InPublic:      tpm2.New2B(template),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("CreatePrimary: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tpm)

	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: handle,
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("EvictControl 0x%08x: %w", uint32(handle), err)
	}

	raw := rsp.OutPublic.Bytes()
	public, err := ParsePublic(raw)
	if err != nil {
		return nil, err
	}
	return &tpmKey{handle: handle, name: rsp.Name, raw: raw, public: public}, nil
}

func signingAttributes(restricted bool) tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          restricted,
		SignEncrypt:         true,
	}
}

func rsaSigningTemplate(restricted bool, scheme, hash tpm2.TPMAlgID) tpm2.TPMTPublic {
	details := tpm2.NewTPMUAsymScheme(scheme, &tpm2.TPMSSigSchemeRSASSA{HashAlg: hash})
	if scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(scheme, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: hash})
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: signingAttributes(restricted),
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
			KeyBits: 2048,
		}),
	}
}

// eccSigningTemplate returns a P-256 signing key. With scheme TPM_ALG_NULL
// the key can also decrypt.
func eccSigningTemplate(restricted bool, scheme tpm2.TPMAlgID) tpm2.TPMTPublic {
	attrs := signingAttributes(restricted)
	eccScheme := tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
	if scheme == tpm2.TPMAlgNull {
		attrs.Decrypt = true
	} else {
		eccScheme = tpm2.TPMTECCScheme{
			Scheme:  scheme,
			Details: tpm2.NewTPMUAsymScheme(scheme, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		}
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme:  eccScheme,
			CurveID: tpm2.TPMECCNistP256,
		}),
	}
}

// signData has a restricted key sign data as the agent does: TPM2_Hash
// produces the digest and the hashcheck ticket that TPM2_Sign requires.
func (k *simKeys) signData(t *testing.T, key *tpmKey, hash tpm2.TPMAlgID, data []byte) *vcom.TpmResponseSign {
	t.Helper()
	hashed, err := tpm2.Hash{
		Data:      tpm2.TPM2BMaxBuffer{Buffer: data},
		HashAlg:   hash,
		Hierarchy: tpm2.TPMRHOwner,
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}

	rsp, err := tpm2.Sign{
		KeyHandle:  key.authHandle(),
		Digest:     hashed.OutHash,
		Validation: hashed.Validation,
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return signResponse(t, &rsp.Signature)
}

// signDigest has an unrestricted key sign digest with the given scheme, or
// the key's own scheme when scheme is TPM_ALG_NULL.
func (k *simKeys) signDigest(t *testing.T, key *tpmKey, scheme, hash tpm2.TPMAlgID, digest []byte) *vcom.TpmResponseSign {
	t.Helper()
	inScheme := tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}
	if scheme != tpm2.TPMAlgNull {
		inScheme = tpm2.TPMTSigScheme{
			Scheme:  scheme,
			Details: tpm2.NewTPMUSigScheme(scheme, &tpm2.TPMSSchemeHash{HashAlg: hash}),
		}
	}

	rsp, err := tpm2.Sign{
		KeyHandle: key.authHandle(),
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme:  inScheme,
		Validation: tpm2.TPMTTKHashCheck{
			Tag:       tpm2.TPMSTHashCheck,
			Hierarchy: tpm2.TPMRHNull,
		},
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return signResponse(t, &rsp.Signature)
}

// signResponse encodes a TPMT_SIGNATURE as the agent returns it in a
// TpmResponseSign, with ECDSA r and s stripped of leading zero bytes.
func signResponse(t *testing.T, sig *tpm2.TPMTSignature) *vcom.TpmResponseSign {
	t.Helper()
	scheme, err := SchemeName(sig.SigAlg)
	if err != nil {
		t.Fatal(err)
	}

	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		rsaSig, err := rsaSignature(sig)
		if err != nil {
			t.Fatal(err)
		}
		hash, err := HashName(rsaSig.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return &vcom.TpmResponseSign{Algorithm: scheme, RsaSignature: rsaSig.Sig.Buffer, RsaHash: hash}

	default:
		eccSig, err := sig.Signature.ECDSA()
		if err != nil {
			t.Fatal(err)
		}
		hash, err := HashName(eccSig.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return &vcom.TpmResponseSign{
			Algorithm:     scheme,
			EccSignatureR: new(big.Int).SetBytes(eccSig.SignatureR.Buffer).Bytes(),
			EccSignatureS: new(big.Int).SetBytes(eccSig.SignatureS.Buffer).Bytes(),
			EccHash:       hash,
		}
	}
}

// certify runs TPM2_Certify of object with signer, as the agent does, and
// returns the response as the agent encodes it.
func (k *simKeys) certify(t *testing.T, object, signer *tpmKey, nonce []byte) *vcom.TpmResponseCertify {
	t.Helper()
	rsp, err := tpm2.Certify{
		ObjectHandle:   object.authHandle(),
		SignHandle:     signer.authHandle(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	return &vcom.TpmResponseCertify{
		Public: bytes.Clone(object.raw),
		Sig:    tpm2.Marshal(rsp.Signature),
		Attest: rsp.CertifyInfo.Bytes(),
	}
}
