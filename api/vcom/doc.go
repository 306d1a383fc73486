// Package vcom holds the vcomlink wire protocol: the protobuf messages that
// guests and the host agent exchange, the HTTP paths they are posted to, and
// the well-known TPM handles of the host's layout.
//
// The messages are generated from messages.proto by scripts/genproto; edit
// the .proto file, never messages.pb.go.
package vcom

// Paths of the six operations. Each takes a POST whose body is the request
// message named in its comment.
const (
	PathGetPub             = "/tpm/getpub"             // TpmRequestGetPub
	PathSign               = "/tpm/sign"               // TpmRequestSign
	PathReadNV             = "/tpm/readnv"             // TpmRequestReadNv
	PathActivateCredParams = "/tpm/activatecredparams" // TpmRequestActivateCredParams
	PathActivateCredential = "/tpm/activatecred"       // TpmRequestGeneratedCred
	PathCertifyKey         = "/tpm/certifykey"         // TpmRequestCertify
)

// ContentType is the Content-Type of every successful response.
const ContentType = "application/x-proto-binary"

// MaxBodySize is the largest request body, in bytes, that the agent accepts.
const MaxBodySize = 64 << 10

// DefaultPort is the vsock port the agent listens on, and DefaultHostCID the
// CID a guest dials to reach its host.
const (
	DefaultPort    = 2000
	DefaultHostCID = 2
)
