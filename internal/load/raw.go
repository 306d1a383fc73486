package load

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/verify"
)

// RawSequence is the TPM commands that do the work of one operation, sent
// straight to a TPM with no agent. What an operation needs to know in
// advance, such as names and schemes, is read once by PrepareRaw, so the
// sequence holds only the commands that produce the operation's result:
//
//	getpub              ReadPublic
//	sign                Hash and Sign (restricted key), or Sign
//	readnv              NV_ReadPublic and NV_Read per TPM_PT_NV_BUFFER_MAX
//	activatecredparams  ReadPublic of the EK and of the key
//	activatecred        StartAuthSession, PolicySecret,
//	                    ActivateCredential and FlushContext
//	certifykey          Certify
//
// The agent sends a ReadPublic of the key before sign, certifykey and
// activatecred as well, so their ratios include that command.
type RawSequence struct {
	Op  Op
	run func(t transport.TPM) error
}

// Do sends the sequence once.
func (s *RawSequence) Do(t transport.TPM) error {
	return s.run(t)
}

// PrepareRaw reads what op on handle needs from t and returns the sequence.
// ek is the endorsement key that activatecred uses, and aik the attestation
// key that certifykey signs with. dataSize is the size of sign's data.
func PrepareRaw(t transport.TPM, op Op, handle, ek, aik uint32, dataSize int) (*RawSequence, error) {
	var run func(t transport.TPM) error
	var err error
	switch op {
	case GetPub:
		run = func(t transport.TPM) error {
			_, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(t)
			return err
		}
	case Sign:
		run, err = rawSign(t, handle, dataSize)
	case ReadNV:
		run, err = rawReadNV(t, handle)
	case ActivateCredParams:
		run = func(t transport.TPM) error {
			if _, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(ek)}).Execute(t); err != nil {
				return err
			}
			_, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(t)
			return err
		}
	case ActivateCredential:
		run, err = rawActivateCredential(t, handle, ek)
	case CertifyKey:
		run, err = rawCertify(t, handle, aik)
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare raw %s on 0x%08x: %w", op, handle, err)
	}
	return &RawSequence{Op: op, run: run}, nil
}

// RawRun accumulates the measurement of one raw sequence over one or more
// periods, so that the raw rate can be measured before and after a load
// on the agent and averaged over both.
type RawRun struct {
	Seq     *RawSequence
	samples []time.Duration
	errs    errorLog
	elapsed time.Duration
}

// Run sends the sequence one time after another on t for duration, or
// until ctx ends, and adds the calls to the run.
func (r *RawRun) Run(ctx context.Context, t transport.TPM, duration time.Duration) {
	start := time.Now()
	deadline := start.Add(duration)
	end := start
	for end.Before(deadline) && ctx.Err() == nil {
		if err := r.Seq.Do(t); err != nil {
			r.errs.add(err)
		} else {
			r.samples = append(r.samples, time.Since(end))
		}
		end = time.Now()
	}
	r.elapsed += end.Sub(start)
}

// Result returns the measurement of every period so far.
func (r *RawRun) Result() Result {
	return Result{
		Op:           r.Seq.Op,
		Target:       TargetRaw,
		Guests:       1,
		Calls:        len(r.samples),
		Errors:       r.errs.count,
		Elapsed:      r.elapsed,
		Latency:      summarise(slices.Clone(r.samples)),
		ErrorSamples: r.errs.samples,
	}
}

type object struct {
	handle tpm2.TPMHandle
	public *tpm2.TPMTPublic
	name   tpm2.TPM2BName
}

func readPublic(t transport.TPM, h uint32) (*object, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(h)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("ReadPublic 0x%08x: %w", h, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("ReadPublic 0x%08x: %w", h, err)
	}
	return &object{handle: tpm2.TPMHandle(h), public: pub, name: rsp.Name}, nil
}

// auth returns an empty password authorisation of o, which the layout's
// keys take.
func (o *object) auth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: o.handle, Name: o.name, Auth: tpm2.PasswordAuth(nil)}
}

func rawSign(t transport.TPM, handle uint32, dataSize int) (func(transport.TPM) error, error) {
	key, err := readPublic(t, handle)
	if err != nil {
		return nil, err
	}
	scheme, hashAlg, err := signScheme(key.public)
	if err != nil {
		return nil, err
	}
	data := make([]byte, dataSize)
	for i := range data {
		data[i] = byte(i)
	}

	if !key.public.ObjectAttributes.Restricted {
		hash, err := hashAlg.Hash()
		if err != nil {
			return nil, err
		}
		digest := make([]byte, hash.Size())
		null := tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull}
		return func(t transport.TPM) error {
			_, err := tpm2.Sign{
				KeyHandle:  key.auth(),
				Digest:     tpm2.TPM2BDigest{Buffer: digest},
				InScheme:   scheme,
				Validation: null,
			}.Execute(t)
			return err
		}, nil
	}

	return func(t transport.TPM) error {
		hashed, err := tpm2.Hash{
			Data:      tpm2.TPM2BMaxBuffer{Buffer: data},
			HashAlg:   hashAlg,
			Hierarchy: tpm2.TPMRHOwner,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("Hash: %w", err)
		}
		_, err = tpm2.Sign{
			KeyHandle:  key.auth(),
			Digest:     hashed.OutHash,
			InScheme:   scheme,
			Validation: hashed.Validation,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("Sign: %w", err)
		}
		return nil
	}, nil
}

// signScheme returns the scheme and hash a key signs with: its own, or
// RSASSA-SHA256 or ECDSA-SHA256 where its scheme is null.
func signScheme(pub *tpm2.TPMTPublic) (tpm2.TPMTSigScheme, tpm2.TPMIAlgHash, error) {
	alg, hash := tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		detail, err := pub.Parameters.RSADetail()
		if err != nil {
			return tpm2.TPMTSigScheme{}, 0, err
		}
		switch detail.Scheme.Scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgRSASSA:
			d, err := detail.Scheme.Details.RSASSA()
			if err != nil {
				return tpm2.TPMTSigScheme{}, 0, err
			}
			hash = d.HashAlg
		case tpm2.TPMAlgRSAPSS:
			d, err := detail.Scheme.Details.RSAPSS()
			if err != nil {
				return tpm2.TPMTSigScheme{}, 0, err
			}
			alg, hash = tpm2.TPMAlgRSAPSS, d.HashAlg
		default:
			return tpm2.TPMTSigScheme{}, 0, fmt.Errorf("RSA scheme 0x%04x is not RSASSA or RSAPSS", uint16(detail.Scheme.Scheme))
		}
	case tpm2.TPMAlgECC:
		alg = tpm2.TPMAlgECDSA
		detail, err := pub.Parameters.ECCDetail()
		if err != nil {
			return tpm2.TPMTSigScheme{}, 0, err
		}
		if detail.Scheme.Scheme != tpm2.TPMAlgNull {
			d, err := detail.Scheme.Details.ECDSA()
			if err != nil {
				return tpm2.TPMTSigScheme{}, 0, err
			}
			hash = d.HashAlg
		}
	default:
		return tpm2.TPMTSigScheme{}, 0, fmt.Errorf("key of type 0x%04x does not sign", uint16(pub.Type))
	}
	scheme := tpm2.TPMTSigScheme{
		Scheme:  alg,
		Details: tpm2.NewTPMUSigScheme(alg, &tpm2.TPMSSchemeHash{HashAlg: hash}),
	}
	return scheme, hash, nil
}

func rawReadNV(t transport.TPM, handle uint32) (func(transport.TPM) error, error) {
	bufferMax, err := nvBufferMax(t)
	if err != nil {
		return nil, err
	}
	return func(t transport.TPM) error {
		rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(handle)}.Execute(t)
		if err != nil {
			return fmt.Errorf("NV_ReadPublic: %w", err)
		}
		pub, err := rsp.NVPublic.Contents()
		if err != nil {
			return fmt.Errorf("NV_ReadPublic: %w", err)
		}
		index := tpm2.AuthHandle{Handle: tpm2.TPMHandle(handle), Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)}
		for offset := 0; offset < int(pub.DataSize); offset += bufferMax {
			size := min(int(pub.DataSize)-offset, bufferMax)
			_, err := tpm2.NVRead{
				AuthHandle: index,
				NVIndex:    tpm2.NamedHandle{Handle: index.Handle, Name: index.Name},
				Size:       uint16(size),
				Offset:     uint16(offset),
			}.Execute(t)
			if err != nil {
				return fmt.Errorf("NV_Read: %w", err)
			}
		}
		return nil
	}, nil
}

// nvBufferMax reads TPM_PT_NV_BUFFER_MAX, the largest NV_Read.
func nvBufferMax(t transport.TPM) (int, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("read TPM_PT_NV_BUFFER_MAX: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("read TPM_PT_NV_BUFFER_MAX: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTNVBufferMax && p.Value > 0 {
			return int(p.Value), nil
		}
	}
	return 0, fmt.Errorf("the TPM does not report TPM_PT_NV_BUFFER_MAX")
}

func rawActivateCredential(t transport.TPM, handle, ekHandle uint32) (func(transport.TPM) error, error) {
	key, err := readPublic(t, handle)
	if err != nil {
		return nil, err
	}
	ek, err := readPublic(t, ekHandle)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cred, encSecret, err := verify.MakeCredential(rand.Reader, ek.public, tpm2.Marshal(key.name), secret)
	if err != nil {
		return nil, err
	}
	// The TPM takes the bodies; MakeCredential returns them with their
	// 2-byte size prefixes, as the wire carries them.
	cred, encSecret = cred[2:], encSecret[2:]

	return func(t transport.TPM) error {
		sess, closeSession, err := tpm2.PolicySession(t, ek.public.NameAlg, 16)
		if err != nil {
			return fmt.Errorf("StartAuthSession: %w", err)
		}
		defer closeSession()
		_, err = tpm2.PolicySecret{
			AuthHandle: tpm2.AuthHandle{
				Handle: tpm2.TPMRHEndorsement,
				Name:   tpm2.HandleName(tpm2.TPMRHEndorsement),
				Auth:   tpm2.PasswordAuth(nil),
			},
			PolicySession: sess.Handle(),
			NonceTPM:      sess.NonceTPM(),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("PolicySecret: %w", err)
		}
		_, err = tpm2.ActivateCredential{
			ActivateHandle: key.auth(),
			KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: sess},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: cred},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("ActivateCredential: %w", err)
		}
		return nil
	}, nil
}

func rawCertify(t transport.TPM, handle, aikHandle uint32) (func(transport.TPM) error, error) {
	key, err := readPublic(t, handle)
	if err != nil {
		return nil, err
	}
	aik, err := readPublic(t, aikHandle)
	if err != nil {
		return nil, err
	}
	scheme, _, err := signScheme(aik.public)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, NonceSize)
	rand.Read(nonce)
	return func(t transport.TPM) error {
		_, err := tpm2.Certify{
			ObjectHandle:   key.auth(),
			SignHandle:     aik.auth(),
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       scheme,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("Certify: %w", err)
		}
		return nil
	}, nil
}
