// Package load generates guest load against a vcomlink agent and measures
// it: throughput and latency per operation at a given number of concurrent
// guests, the rate of the same TPM commands sent straight to a TPM, and the
// resident memory that idle guest connections cost the agent.
package load

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/verify"
)

// Op is a guest operation, named as its URL path names it.
type Op string

// The guest operations.
const (
	GetPub             Op = "getpub"
	Sign               Op = "sign"
	ReadNV             Op = "readnv"
	ActivateCredParams Op = "activatecredparams"
	ActivateCredential Op = "activatecred"
	CertifyKey         Op = "certifykey"
)

// Ops lists every operation, in the order of the wire contract.
var Ops = []Op{GetPub, Sign, ReadNV, ActivateCredParams, ActivateCredential, CertifyKey}

// ParseOp parses an operation name.
func ParseOp(s string) (Op, error) {
	for _, op := range Ops {
		if string(op) == s {
			return op, nil
		}
	}
	names := make([]string, len(Ops))
	for i, op := range Ops {
		names[i] = string(op)
	}
	return "", fmt.Errorf("unknown operation %q; use one of %s", s, strings.Join(names, ", "))
}

// Path returns the URL path of the operation.
func (op Op) Path() string {
	return "/tpm/" + string(op)
}

// DefaultHandle returns the handle an operation uses unless another is
// named: the AIK for getpub, sign, activatecredparams and activatecred, the
// EK certificate for readnv, and the ECDH key for certifykey, which the AIK
// certifies.
func DefaultHandle(op Op) uint32 {
	switch op {
	case ReadNV:
		return vcom.HandleEKCert
	case CertifyKey:
		return vcom.HandleECDHKey
	}
	return vcom.HandleAIK
}

// Request is one prepared guest request that can be sent again and again.
type Request struct {
	Op     Op
	Handle uint32
	// Data is the data that sign sends.
	Data []byte
	// Nonce is the qualifying data that certifykey sends.
	Nonce []byte
	// Cred and Secret are the credential that activatecred sends, made for
	// the agent's EK and the key at Handle.
	Cred, Secret []byte
}

// NonceSize is the size of the qualifying data that certifykey sends, in
// bytes: that of a SHA-256 digest, as a verifier's nonce usually is.
const NonceSize = 32

// Prepare makes a request for op on handle. For sign, data is dataSize
// bytes that do not begin with TPM_GENERATED_VALUE. For activatecred, it
// requests the EK and the key's name from the agent with c and makes a
// credential for them.
func Prepare(ctx context.Context, c *client.Client, op Op, handle uint32, dataSize int) (*Request, error) {
	r := &Request{Op: op, Handle: handle}
	switch op {
	case Sign:
		r.Data = make([]byte, dataSize)
		for i := range r.Data {
			r.Data[i] = byte(i)
		}
	case CertifyKey:
		r.Nonce = make([]byte, NonceSize)
		rand.Read(r.Nonce)
	case ActivateCredential:
		params, err := c.ActivateCredParams(ctx, handle)
		if err != nil {
			return nil, fmt.Errorf("prepare activatecred: %w", err)
		}
		secret := make([]byte, 32)
		rand.Read(secret)
		r.Cred, r.Secret, err = verify.MakeCredential(rand.Reader, params.EK, params.AIKName, secret)
		if err != nil {
			return nil, fmt.Errorf("prepare activatecred: %w", err)
		}
	}
	return r, nil
}

// Messages returns the request message and an empty message of the
// response type.
func (r *Request) Messages() (req, rsp proto.Message) {
	switch r.Op {
	case GetPub:
		return &vcom.TpmRequestGetPub{Index: r.Handle}, &vcom.TpmResponseGetPub{}
	case Sign:
		return &vcom.TpmRequestSign{Index: r.Handle, Data: r.Data}, &vcom.TpmResponseSign{}
	case ReadNV:
		return &vcom.TpmRequestReadNv{Index: r.Handle}, &vcom.TpmResponseReadNv{}
	case ActivateCredParams:
		return &vcom.TpmRequestActivateCredParams{Index: r.Handle}, &vcom.TpmResponseActivateCredParams{}
	case ActivateCredential:
		return &vcom.TpmRequestGeneratedCred{Cred: r.Cred, Secret: r.Secret, AikIndex: r.Handle}, &vcom.TpmResponseActivatedCred{}
	case CertifyKey:
		return &vcom.TpmRequestCertify{Index: r.Handle, QualifyingData: r.Nonce}, &vcom.TpmResponseCertify{}
	}
	return nil, nil
}

// Do sends the request with c and returns the agent's response message.
// The client checks each response as a guest would, so a malformed one is
// an error.
func (r *Request) Do(ctx context.Context, c *client.Client) (proto.Message, error) {
	switch r.Op {
	case GetPub:
		rsp, err := c.GetPub(ctx, r.Handle)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	case Sign:
		rsp, err := c.Sign(ctx, r.Handle, r.Data)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	case ReadNV:
		rsp, err := c.ReadNV(ctx, r.Handle)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	case ActivateCredParams:
		rsp, err := c.ActivateCredParams(ctx, r.Handle)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	case ActivateCredential:
		rsp, err := c.ActivateCredential(ctx, r.Handle, r.Cred, r.Secret)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	case CertifyKey:
		rsp, err := c.Certify(ctx, r.Handle, r.Nonce)
		if err != nil {
			return nil, err
		}
		return rsp.Response, nil
	}
	return nil, fmt.Errorf("unknown operation %q", r.Op)
}
