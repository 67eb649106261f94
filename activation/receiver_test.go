package activation_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// receiver is a real HTTP server on loopback that records every request
// and answers what respond says (200 when respond is nil).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []request
	respond func(r request) int
	// handle, when set, writes the whole answer instead.
	handle func(w http.ResponseWriter, r request)
}

// request is one request a receiver got.
type request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

func newReceiver(t testing.TB, respond func(r request) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	rc.mu.Lock()
	rc.got = append(rc.got, req)
	respond, handle := rc.respond, rc.handle
	rc.mu.Unlock()
	if handle != nil {
		handle(w, req)
		return
	}
	status := http.StatusOK
	if respond != nil {
		status = respond(req)
	}
	w.WriteHeader(status)
}

// requests returns what the receiver got so far.
func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

// httpReceiver is a receiver whose handler writes the whole answer.
func httpReceiver(t *testing.T, h func(w http.ResponseWriter, r request)) *receiver {
	t.Helper()
	rc := newReceiver(t, nil)
	rc.mu.Lock()
	rc.handle = h
	rc.mu.Unlock()
	return rc
}

// setHandle changes the receiver's handler from now on.
func (rc *receiver) setHandle(h func(w http.ResponseWriter, r request)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.handle = h
}

// failingFor is a receiver that answers status to the messages of one
// user (by userId) until heal is called, and 200 to every other.
func failingFor(t testing.TB, user string, status int) (rc *receiver, heal func()) {
	var mu sync.Mutex
	failing := true
	rc = newReceiver(t, func(req request) int {
		mu.Lock()
		defer mu.Unlock()
		var m struct {
			UserID string `json:"userId"`
		}
		_ = json.Unmarshal(req.Body, &m)
		if failing && m.UserID == user {
			return status
		}
		return http.StatusOK
	})
	return rc, func() {
		mu.Lock()
		defer mu.Unlock()
		failing = false
	}
}
