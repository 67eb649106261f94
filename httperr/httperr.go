// Package httperr is the one mapping from Kith's error codes (kith.Error)
// to HTTP: the status each code answers with, and the Retry-After header a
// caller gets when a retry may succeed. The API and the console both
// answer with it, so a code means the same status wherever it surfaces.
//
// It is a package of its own, depending only on the root package and
// net/http, because both adapters must import it: the root package holds
// the domain and knows no HTTP, and the console importing httpapi would
// tie it to the whole API server (collection, imports, DMP, insights) and
// invert two layers that sit side by side.
package httperr

import (
	"net/http"

	"github.com/kithcdp/kith"
)

// statuses is the status of each known code.
var statuses = map[string]int{
	kith.ECONFLICT:     http.StatusConflict,
	kith.EINVALID:      http.StatusBadRequest,
	kith.ENOTFOUND:     http.StatusNotFound,
	kith.EUNAUTHORIZED: http.StatusUnauthorized,
	kith.EFORBIDDEN:    http.StatusForbidden,
	kith.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	kith.EOVERLOADED:   http.StatusTooManyRequests,
	kith.EUNAVAILABLE:  http.StatusServiceUnavailable,
	kith.EINTERNAL:     http.StatusInternalServerError,
}

// Status returns the HTTP status an error code answers with. A code the
// table does not know is a bug: it answers 500 (never 0, which
// WriteHeader rejects with a panic) and known is false, so the caller can
// log it.
func Status(code string) (status int, known bool) {
	status, known = statuses[code]
	if !known {
		return http.StatusInternalServerError, false
	}
	return status, true
}

// SetRetryAfter sets Retry-After on h when the code says a retry may
// succeed: soon after an overload (a queue drains within a second), later
// when the store cannot take writes (a full disk is not freed in a
// second).
func SetRetryAfter(h http.Header, code string) {
	switch code {
	case kith.EOVERLOADED:
		h.Set("Retry-After", "1")
	case kith.EUNAVAILABLE:
		h.Set("Retry-After", "30")
	}
}
