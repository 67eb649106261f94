package loadgen

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Null server limits: generous compared with the Segment limits (500 KB per
// batch) so that the ceiling run never fails where Kith would succeed.
const (
	nullMaxBody         = 8 << 20
	nullMaxDecompressed = 32 << 20
)

// NullServer is the ceiling for the ingest benchmark: it speaks just enough
// of the Segment HTTP API for Run to work, and does only the work that any
// real server must do on the ack path — read the (possibly gzipped) body
// and decode every item into a map[string]any — and nothing else. It keeps
// no data. Its GET /v1/stats reports "null": true, which tells Run that
// waiting for processing is meaningless.
//
// A NullServer is safe for concurrent use.
type NullServer struct {
	items    atomic.Int64
	requests atomic.Int64
	mux      *http.ServeMux
	gzips    sync.Pool
}

// NewNullServer returns a ready NullServer.
func NewNullServer() *NullServer {
	s := &NullServer{mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/batch", s.handleBatch)
	for _, kind := range []string{"identify", "track", "page", "screen", "group", "alias"} {
		s.mux.HandleFunc("POST /v1/"+kind, s.handleSingle)
	}
	s.mux.HandleFunc("GET /v1/stats", s.handleStats)
	s.mux.HandleFunc("GET /v1/profiles/{ref}", s.handleProfile)
	return s
}

// NullHandler returns a new NullServer as a plain http.Handler, for callers
// that only need to serve it.
func NullHandler() http.Handler {
	return NewNullServer()
}

// Items reports how many event objects the server has decoded.
func (s *NullServer) Items() int64 { return s.items.Load() }

// Requests reports how many ingest requests the server has answered 200.
func (s *NullServer) Requests() int64 { return s.requests.Load() }

// ServeHTTP routes a request.
func (s *NullServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *NullServer) handleBatch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Batch []map[string]any `json:"batch"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	s.items.Add(int64(len(body.Batch)))
	s.ok(w)
}

func (s *NullServer) handleSingle(w http.ResponseWriter, r *http.Request) {
	var item map[string]any
	if !s.decode(w, r, &item) {
		return
	}
	s.items.Add(1)
	s.ok(w)
}

func (s *NullServer) ok(w http.ResponseWriter) {
	s.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// decode reads the body, gunzipping it when the client says so, into v. It
// answers 400 itself and returns false when the body is unusable.
func (s *NullServer) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	var body io.Reader = http.MaxBytesReader(w, r.Body, nullMaxBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, _ := s.gzips.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(body)
		} else {
			err = zr.Reset(body)
		}
		if err != nil {
			http.Error(w, `{"error":"invalid gzip body"}`, http.StatusBadRequest)
			return false
		}
		defer s.gzips.Put(zr)
		body = io.LimitReader(zr, nullMaxDecompressed)
	}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		http.Error(w, `{"error":"invalid JSON body"}`, http.StatusBadRequest)
		return false
	}
	return true
}

func (s *NullServer) handleStats(w http.ResponseWriter, _ *http.Request) {
	n := strconv.FormatInt(s.items.Load(), 10)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"null":true,"total":{"received":`+n+`,"accepted":`+n+
		`,"duplicate":0,"processed":`+n+`}}`)
}

func (s *NullServer) handleProfile(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	ref, _ := json.Marshal(r.PathValue("ref"))
	_, _ = w.Write([]byte(`{"ref":` + string(ref) + `,"traits":{}}`))
}

// StartNull serves a NullServer on addr (127.0.0.1:0, a random port, when
// addr is empty) in the background. It returns the server's base URL and a
// function that stops it.
func StartNull(addr string) (url string, stop func(), err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("loadgen: listen for null server: %w", err)
	}
	srv := &http.Server{Handler: NullHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Serve fails only if the listener does; a client then sees
		// transport errors, which its report counts.
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
			<-done
		})
	}
	return "http://" + ln.Addr().String(), stop, nil
}
