package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
)

// retryAfterSeconds is the Retry-After value sent with 503: long enough for
// a restarted TPM to come back, short enough that guests do not stall.
const retryAfterSeconds = "1"

// operation returns the handler of one operation: it checks the method and
// the body size, decodes the request message, runs call, and writes the
// response message or the error.
func operation[Req any, PReq interface {
	*Req
	proto.Message
}](s *Server, op policy.Operation, call func(ctx context.Context, peer string, req PReq) (proto.Message, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		peer := peerOf(r).ID()

		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, r, op, peer, start, http.StatusMethodNotAllowed,
				fmt.Sprintf("%s: method %s is not allowed; send the request with POST", op, r.Method), nil)
			return
		}

		body, status, msg := readBody(w, r)
		if status != 0 {
			s.fail(w, r, op, peer, start, status, fmt.Sprintf("%s: %s", op, msg), nil)
			return
		}

		req := PReq(new(Req))
		if err := decode(body, req); err != nil {
			s.fail(w, r, op, peer, start, http.StatusBadRequest,
				fmt.Sprintf("%s: the body is not a valid %s message: %v", op, req.ProtoReflect().Descriptor().Name(), err), nil)
			return
		}

		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		rsp, err := call(ctx, peer, req)
		if err != nil {
			status := statusOf(err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", retryAfterSeconds)
			}
			s.fail(w, r, op, peer, start, status, oneLine(err.Error()), err)
			return
		}

		out, err := proto.Marshal(rsp)
		if err != nil {
			s.fail(w, r, op, peer, start, http.StatusInternalServerError, fmt.Sprintf("%s: encoding the response failed: %v", op, err), err)
			return
		}
		w.Header().Set("Content-Type", vcom.ContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(out)
		s.log.Debug("request served", "peer", peer, "op", op, "status", http.StatusOK, "duration", time.Since(start))
	})
}

// readBody reads a request body of at most vcom.MaxBodySize bytes. On
// failure it returns the status and the message to send.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	tooLarge := fmt.Sprintf("the body is larger than the limit of %d bytes", vcom.MaxBodySize)
	if r.ContentLength > vcom.MaxBodySize {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, vcom.MaxBodySize))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		}
		return nil, http.StatusBadRequest, fmt.Sprintf("reading the body failed: %v", err)
	}
	return body, 0, ""
}

// statusOf maps a failure to its HTTP status. This is the one place where
// error classes become statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, policy.ErrDenied), errors.Is(err, tpm.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, tpm.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, tpm.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, tpm.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, tpm.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail writes a one-line text error and logs it: refusals and TPM failures
// at levels an operator sees, bad input at debug level so that a guest
// cannot flood the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op policy.Operation, peer string, start time.Time, status int, msg string, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")

	attrs := []any{"peer", peer, "op", op, "status", status, "duration", time.Since(start), "err", msg}
	if rc, ok := tpm.ResponseCode(err); ok {
		attrs = append(attrs, "rc", fmt.Sprintf("0x%03x", uint32(rc)))
	}
	level := slog.LevelDebug
	switch {
	case status == http.StatusForbidden:
		level = slog.LevelWarn
	case status >= 500:
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed", attrs...)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	peer := peerOf(r).ID()
	msg := fmt.Sprintf("no operation at %q; the operations are %s", r.URL.Path, strings.Join(operationPaths(), ", "))
	s.fail(w, r, "", peer, time.Now(), http.StatusNotFound, oneLine(msg), nil)
}

func operationPaths() []string {
	return []string{
		vcom.PathGetPub, vcom.PathSign, vcom.PathReadNV,
		vcom.PathActivateCredParams, vcom.PathActivateCredential, vcom.PathCertifyKey,
	}
}

// oneLine keeps a message on one line, whatever its parts contained.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
