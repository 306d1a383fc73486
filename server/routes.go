package server

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
)

type route struct {
	path   string
	op     policy.Operation
	handle handlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{vcom.PathGetPub, policy.GetPub, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestGetPub) (proto.Message, error) {
				if err := s.check(peer, policy.GetPub, tpm.CheckPersistent, "index", req.Index); err != nil {
					return nil, err
				}
				return s.cfg.TPM.GetPub(ctx, peer, req.Index)
			})},
		{vcom.PathSign, policy.Sign, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestSign) (proto.Message, error) {
				if err := s.check(peer, policy.Sign, tpm.CheckPersistent, "index", req.Index); err != nil {
					return nil, err
				}
				return s.cfg.TPM.Sign(ctx, peer, req.Index, req.Data)
			})},
		{vcom.PathReadNV, policy.ReadNV, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestReadNv) (proto.Message, error) {
				if err := s.check(peer, policy.ReadNV, tpm.CheckNVIndex, "index", req.Index); err != nil {
					return nil, err
				}
				return s.cfg.TPM.ReadNV(ctx, peer, req.Index)
			})},
		{vcom.PathActivateCredParams, policy.ActivateCredParams, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestActivateCredParams) (proto.Message, error) {
				if err := s.check(peer, policy.ActivateCredParams, tpm.CheckPersistent, "index", req.Index); err != nil {
					return nil, err
				}
				return s.cfg.TPM.ActivateCredParams(ctx, peer, req.Index)
			})},
		{vcom.PathActivateCredential, policy.ActivateCredential, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestGeneratedCred) (proto.Message, error) {
				if err := s.check(peer, policy.ActivateCredential, tpm.CheckPersistent, "aik_index", req.AikIndex); err != nil {
					return nil, err
				}
				return s.cfg.TPM.ActivateCredential(ctx, peer, req.AikIndex, req.Cred, req.Secret)
			})},
		{vcom.PathCertifyKey, policy.CertifyKey, operation(s,
			func(ctx context.Context, peer string, req *vcom.TpmRequestCertify) (proto.Message, error) {
				if err := s.check(peer, policy.CertifyKey, tpm.CheckPersistent, "index", req.Index); err != nil {
					return nil, err
				}
				return s.cfg.TPM.Certify(ctx, peer, req.Index, req.QualifyingData)
			})},
	}
}

// check refuses a handle of the wrong type (400) before it asks the access
// policy (403), so that neither the policy nor the TPM sees hierarchy, PCR,
// session or transient handles.
func (s *Server) check(peer string, op policy.Operation, checkType func(op, field string, h uint32) error, field string, h uint32) error {
	if err := checkType(string(op), field, h); err != nil {
		return err
	}
	return s.cfg.Policy.Allow(peer, op, h)
}
