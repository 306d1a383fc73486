package load

import (
	"io"
	"net/http"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// TrivialHandler returns the handler of the transport floor: for a POST to
// one of the paths in bodies it reads the request body and returns 200 with
// the stored body, and it returns 404 for anything else. It does no
// decoding, no policy check and no TPM work, so a load against it measures
// only the HTTP exchange over the socket and the guest's client.
func TrivialHandler(bodies map[string][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path]
		if !ok || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, vcom.MaxBodySize))
		w.Header().Set("Content-Type", vcom.ContentType)
		w.Write(body)
	})
}
