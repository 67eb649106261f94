package httpapi

import (
	"net/http"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/httperr"
)

// error writes err as {"error":{"code","message"}} with the status its code
// answers with (httperr, shared with the console); internal errors are
// logged and their detail withheld from the client.
func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	s.errorWith(w, r, err, nil)
}

// errorWith writes err as error does, with extra members in the body.
func (s *Server) errorWith(w http.ResponseWriter, r *http.Request, err error, extra map[string]any) {
	code := kith.ErrorCode(err)
	if code == kith.EINTERNAL {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	httperr.SetRetryAfter(w.Header(), code)
	body := map[string]any{"error": map[string]string{"code": code, "message": kith.ErrorMessage(err)}}
	for k, v := range extra {
		body[k] = v
	}
	status, known := httperr.Status(code)
	if !known {
		s.log.Error("request failed with an unknown error code", "code", code, "err", err)
	}
	writeJSON(w, status, body)
}
