package httpapi

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/kithcdp/kith"
)

// Every error code has its status, and one the table does not know is
// answered with 500 rather than a panic in WriteHeader(0).
func TestErrorStatus(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tc := range []struct {
		code   string
		status int
		retry  string
	}{
		{kith.EINVALID, 400, ""}, {kith.EUNAUTHORIZED, 401, ""}, {kith.EFORBIDDEN, 403, ""},
		{kith.ENOTFOUND, 404, ""}, {kith.ECONFLICT, 409, ""}, {kith.ETOOLARGE, 413, ""},
		{kith.EOVERLOADED, 429, "1"}, {kith.EINTERNAL, 500, ""}, {kith.EUNAVAILABLE, 503, "30"},
		{"no_such_code", 500, ""},
	} {
		w := httptest.NewRecorder()
		s.error(w, httptest.NewRequest("GET", "/v1/x", nil), kith.Errorf(tc.code, "x"))
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retry {
			t.Errorf("%s: %d Retry-After %q, want %d %q", tc.code, w.Code, w.Header().Get("Retry-After"), tc.status, tc.retry)
		}
	}
}
