package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/transport"
)

// retryAfterSeconds is the Retry-After value sent with 503: long enough for
// a restarted TPM to come back, short enough that guests do not stall.
const retryAfterSeconds = "1"

// exchange is one request as the server handles it.
type exchange struct {
	peer      string           // the peer's identity, as transport.Peer.ID returns it
	op        policy.Operation // empty for an unknown path
	handle    uint32           // the request's handle, once its body is decoded
	hasHandle bool
	start     time.Time
}

// requestHandle returns the handle that a request message names: the index
// of every operation but activatecred, and activatecred's aik_index.
func requestHandle(m proto.Message) (uint32, bool) {
	switch m := m.(type) {
	case interface{ GetIndex() uint32 }:
		return m.GetIndex(), true
	case interface{ GetAikIndex() uint32 }:
		return m.GetAikIndex(), true
	}
	return 0, false
}

// handlerFunc handles the request of one operation.
type handlerFunc func(w http.ResponseWriter, r *http.Request, ex exchange)

// operation returns the handler of one operation: it checks the method,
// reads the whole body, decodes the request message, runs call, and writes
// the response message or the error. call runs only once the body is in,
// so a slow guest never holds the TPM.
func operation[Req any, PReq interface {
	*Req
	proto.Message
}](s *Server, call func(ctx context.Context, peer string, req PReq) (proto.Message, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, ex exchange) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, r, ex, http.StatusMethodNotAllowed,
				fmt.Sprintf("%s: method %s is not allowed; send the request with POST", ex.op, r.Method), nil)
			return
		}

		body, status, msg := s.readBody(w, r)
		if status != 0 {
			s.fail(w, r, ex, status, fmt.Sprintf("%s: %s", ex.op, msg), nil)
			return
		}

		req := PReq(new(Req))
		if err := decode(body, req); err != nil {
			s.fail(w, r, ex, http.StatusBadRequest,
				fmt.Sprintf("%s: the body is not a valid %s message: %v", ex.op, req.ProtoReflect().Descriptor().Name(), err), nil)
			return
		}
		ex.handle, ex.hasHandle = requestHandle(req)

		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		rsp, err := call(ctx, ex.peer, req)
		if err != nil {
			status := statusOf(err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", retryAfterSeconds)
			}
			s.fail(w, r, ex, status, guestMessage(err), err)
			return
		}

		out, err := proto.Marshal(rsp)
		if err != nil {
			s.fail(w, r, ex, http.StatusInternalServerError, fmt.Sprintf("%s: encoding the response failed: %v", ex.op, err), err)
			return
		}
		s.reply(w, r, ex, out)
	}
}

// readBody reads a request body of at most vcom.MaxBodySize bytes, within
// the body's read deadline. Nothing reads the connection while the request
// waits for the TPM, so the deadline does not bound that wait; the
// connection's loop sets the next one. On failure readBody returns the
// status and the message to send.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	tooLarge := fmt.Sprintf("the body is larger than the limit of %d bytes", vcom.MaxBodySize)
	if r.ContentLength > vcom.MaxBodySize {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, vcom.MaxBodySize))
	if err != nil {
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The stream is cut mid-body, so the connection cannot carry
			// another request.
			w.Header().Set("Connection", "close")
			return nil, http.StatusRequestTimeout, fmt.Sprintf("the body did not arrive within %s; send the whole request at once", s.cfg.BodyTimeout)
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

// reply writes a response message. Together with fail, it is where every
// request that reaches a handler ends.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, ex exchange, out []byte) {
	w.Header().Set("Content-Type", vcom.ContentType)
	s.setWriteDeadline(w)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	duration := time.Since(ex.start)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ObserveRequest(string(ex.op), http.StatusOK, duration)
	}
	s.log.Debug("request served", "peer", ex.peer, "op", ex.op, "handle", tpm.FormatHandle(ex.handle), "status", http.StatusOK, "duration", duration)
}

// fail writes a one-line text error and logs it. Refusals (403, 429) and
// TPM errors (500) are logged at warning and error level, within the limits
// of the refusal log, so that a guest cannot flood the log. TPM outages
// (503, 504) are logged at debug level, because the TPM service logs each
// outage once; bad input is logged at debug level.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ex exchange, status int, msg string, err error) {
	s.logFailure(r, ex, status, msg, err)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ObserveRequest(metricsOp(ex), status, time.Since(ex.start))
		if reason := refusalReason(ex, status, err); reason != "" {
			s.cfg.Metrics.Refused(reason)
		}
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.setWriteDeadline(w)
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// logFailure logs a failed request before its response goes out, so that
// the log line exists by the time the guest reads the status.
func (s *Server) logFailure(r *http.Request, ex exchange, status int, msg string, err error) {
	attrs := []any{"peer", ex.peer, "op", ex.op}
	handle, hasHandle := handleOf(err)
	if !hasHandle {
		handle, hasHandle = ex.handle, ex.hasHandle
	}
	if hasHandle {
		attrs = append(attrs, "handle", tpm.FormatHandle(handle))
	}
	attrs = append(attrs, "status", status, "duration", time.Since(ex.start), "err", msg)
	if rc, ok := tpm.ResponseCode(err); ok {
		attrs = append(attrs, "rc", fmt.Sprintf("0x%03x", uint32(rc)))
	}

	label := fmt.Sprintf("%d %s", status, metricsOp(ex))
	if hasHandle {
		label += " " + tpm.FormatHandle(handle)
	}
	if status == http.StatusTooManyRequests {
		// The connection limit and the rate limit both respond with 429.
		label += " (" + refusalReason(ex, status, err) + ")"
	}
	switch {
	case status == http.StatusForbidden, status == http.StatusTooManyRequests:
		if s.refusals.record(ex.peer, label, label) {
			s.log.Log(r.Context(), slog.LevelWarn, "request refused", attrs...)
		}
	case status == http.StatusInternalServerError:
		key := fmt.Sprintf("%d %s %08x %s", status, ex.op, handle, msg)
		if s.failures.record(ex.peer, key, label) {
			s.log.Log(r.Context(), slog.LevelError, "request failed", attrs...)
		}
	default:
		s.log.Log(r.Context(), slog.LevelDebug, "request failed", attrs...)
	}
}

// setWriteDeadline bounds the time that writing the response may take, so
// that a guest that does not read cannot hold its connection.
func (s *Server) setWriteDeadline(w http.ResponseWriter) {
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
}

// handleOf returns the handle that a refusal or TPM error concerns.
func handleOf(err error) (uint32, bool) {
	var denied *policy.Denied
	if errors.As(err, &denied) {
		return denied.Handle, true
	}
	var tpmErr *tpm.Error
	if errors.As(err, &tpmErr) {
		return tpmErr.Handle, true
	}
	return 0, false
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, ex exchange) {
	// A request target in authority form, as CONNECT sends, has no path.
	target := r.URL.Path
	if target == "" {
		target = r.RequestURI
	}
	msg := fmt.Sprintf("no operation at %q; the operations are %s", target, strings.Join(operationPaths(), ", "))
	s.fail(w, r, ex, http.StatusNotFound, oneLine(msg), nil)
}

func operationPaths() []string {
	return []string{
		vcom.PathGetPub, vcom.PathSign, vcom.PathReadNV,
		vcom.PathActivateCredParams, vcom.PathActivateCredential, vcom.PathCertifyKey,
	}
}

// guestMessage returns the message a guest gets for a failed operation.
// For an unreachable or silent TPM it leaves out the cause, which names the
// host's TPM device or socket and is in the agent's log.
func guestMessage(err error) string {
	var tpmErr *tpm.Error
	if errors.As(err, &tpmErr) && (tpmErr.Class == tpm.ErrUnavailable || tpmErr.Class == tpm.ErrTimeout) {
		return oneLine(fmt.Sprintf("%s %s: %s", tpmErr.Op, tpm.FormatHandle(tpmErr.Handle), tpmErr.Msg))
	}
	return oneLine(err.Error())
}

// metricsOp labels the requests of unknown paths, which have no operation.
func metricsOp(ex exchange) string {
	if ex.op == "" {
		return "unknown"
	}
	return string(ex.op)
}

// refusalReason names why a request was refused before it reached the TPM,
// for the refusal metrics, or returns "" for a request that reached it.
func refusalReason(ex exchange, status int, err error) string {
	switch status {
	case http.StatusBadRequest:
		if _, ok := tpm.ResponseCode(err); ok {
			return ""
		}
		return "invalid"
	case http.StatusForbidden:
		if errors.Is(err, policy.ErrDenied) {
			return "policy"
		}
		if _, ok := tpm.ResponseCode(err); ok {
			return ""
		}
		return "host_configuration"
	case http.StatusNotFound:
		if ex.op == "" {
			return "unknown_path"
		}
	case http.StatusMethodNotAllowed:
		return "method"
	case http.StatusRequestTimeout:
		return "body_timeout"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusTooManyRequests:
		var limit *transport.LimitError
		if errors.As(err, &limit) {
			return "connections"
		}
		return "rate"
	case http.StatusServiceUnavailable:
		if err == nil {
			return "shutting_down"
		}
	}
	return ""
}

// oneLine keeps a message on one line, whatever its parts contained.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
