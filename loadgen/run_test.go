package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunNull(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"plain", Config{Events: 2000, BatchSize: 100, Concurrency: 4}},
		{"uneven batches gzip", Config{Events: 2000, BatchSize: 77, Concurrency: 3, Gzip: true}},
		{"paced", Config{Events: 2000, BatchSize: 50, Concurrency: 2, Rate: 20000}},
		{"wait processed is a no-op", Config{Events: 2000, WaitProcessed: true}},
		{"one sender one event", Config{Events: 1, Concurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := NewNullServer()
			srv := httptest.NewServer(ns)
			defer srv.Close()
			cfg := tt.cfg
			cfg.Target, cfg.WriteKey, cfg.Seed, cfg.Timeout = srv.URL, "wk", 7, 30*time.Second
			rep, err := Run(context.Background(), cfg)
			noError(t, err)
			batchSize := cmpOr0(cfg.BatchSize, DefaultBatchSize)
			batches := int64((cfg.Events + batchSize - 1) / batchSize)
			equal(t, "sent", rep.Sent, int64(cfg.Events))
			equal(t, "acked", rep.Acked, int64(cfg.Events))
			equal(t, "decoded by the server", ns.Items(), int64(cfg.Events))
			equal(t, "batches", rep.Batches, batches)
			equal(t, "2xx", rep.Status2xx, batches)
			equal(t, "ack samples", int64(rep.Ack.Count), batches)
			equal(t, "429s", rep.Status429, 0)
			equal(t, "error", rep.Error, "")
			if rep.Ack.P50 <= 0 || rep.Ack.P50 > rep.Ack.P99 || rep.Ack.P99 > rep.Ack.Max {
				t.Fatalf("implausible ack latency %+v", rep.Ack)
			}
			if rep.AckedPerSec <= 0 || rep.Wall <= 0 {
				t.Fatalf("no throughput: %+v", rep)
			}
			if cfg.WaitProcessed && (!rep.Null || rep.Processed) {
				t.Fatalf("null server not detected: Null=%v Processed=%v", rep.Null, rep.Processed)
			}
			if cfg.Rate > 0 {
				// 2000 events at 20000/s cannot finish before the last batch
				// is due.
				due := time.Duration(float64(cfg.Events-batchSize) / cfg.Rate * float64(time.Second))
				if rep.Wall < due {
					t.Fatalf("paced run took %v, the last batch was due at %v", rep.Wall, due)
				}
			}
			if cfg.Gzip && rep.WireBytes*2 > int64(float64(cfg.Events)*rep.MeanEventBytes) {
				t.Fatalf("gzip sent %d bytes for %.0f bytes of events", rep.WireBytes, float64(cfg.Events)*rep.MeanEventBytes)
			}
		})
	}
}

func cmpOr0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func TestRunRetriesAfter429(t *testing.T) {
	tests := []struct {
		name     string
		rejectN  int64
		events   int
		want429s int64
	}{
		{"first request", 1, 2000, 1},
		{"first three", 3, 500, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := NewNullServer()
			var seen atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/batch" && seen.Add(1) <= tt.rejectN {
					_, _ = io.Copy(io.Discard, r.Body)
					w.Header().Set("Retry-After", "0")
					http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
					return
				}
				ns.ServeHTTP(w, r)
			}))
			defer srv.Close()
			rep, err := Run(context.Background(), Config{Target: srv.URL, Events: tt.events, Concurrency: 1, Seed: 1, ReadRate: -1, Timeout: 30 * time.Second})
			noError(t, err)
			equal(t, "429s", rep.Status429, tt.want429s)
			equal(t, "retries", rep.Retries, tt.want429s)
			equal(t, "acked", rep.Acked, int64(tt.events))
			equal(t, "decoded", ns.Items(), int64(tt.events))
			equal(t, "batches", rep.Batches, int64(tt.events/DefaultBatchSize))
		})
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
		check   func(t *testing.T, rep Report, err error)
	}{
		{
			name: "server error",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "disk on fire", http.StatusInternalServerError)
			},
			check: func(t *testing.T, rep Report, err error) {
				if err == nil || !strings.Contains(err.Error(), "disk on fire") {
					t.Fatalf("error %v does not name the server's answer", err)
				}
				equal(t, "acked", rep.Acked, 0)
				equal(t, "other", rep.StatusOther, 5)
				equal(t, "sent", rep.Sent, 500)
				if !strings.Contains(rep.String(), "500 Internal Server Error") {
					t.Fatalf("report hides the failure:\n%s", rep)
				}
			},
		},
		{
			name: "server hangs",
			handler: func(w http.ResponseWriter, r *http.Request) {
				// Reading the body lets the server notice the client leave.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			},
			timeout: 300 * time.Millisecond,
			check: func(t *testing.T, rep Report, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error %v, want a deadline", err)
				}
				equal(t, "acked", rep.Acked, 0)
			},
		},
		{
			name: "endless 429",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
			},
			check: func(t *testing.T, rep Report, err error) {
				if err == nil {
					t.Fatal("no error after endless 429s")
				}
				equal(t, "429s", rep.Status429, 5*(maxRetries+1))
				equal(t, "acked", rep.Acked, 0)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			started := time.Now()
			rep, err := Run(context.Background(), Config{Target: srv.URL, Events: 500, Concurrency: 2, ReadRate: -1, Timeout: timeout})
			if time.Since(started) > timeout+5*time.Second {
				t.Fatalf("Run overran its timeout: %v", time.Since(started))
			}
			if rep.Error == "" {
				t.Fatal("Report.Error is empty")
			}
			tt.check(t, rep, err)
		})
	}
}

// laggingServer wraps a NullServer with stats that look like Kith's: some
// events from before the run, and processing that trails acceptance.
type laggingServer struct {
	*NullServer
	before    int64
	lagPolls  int64 // polls after all events arrived before they count as processed
	polls     atomic.Int64
	expect    int64
	badAuth   atomic.Int64
	profiles  atomic.Int64
	writeKey  string
	adminAuth string
}

func (s *laggingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost:
		if user, pass, ok := r.BasicAuth(); !ok || user != s.writeKey || pass != "" {
			s.badAuth.Add(1)
		}
	case r.Header.Get("Authorization") != s.adminAuth:
		s.badAuth.Add(1)
	case strings.HasPrefix(r.URL.Path, "/v1/profiles/user_id:usr_"):
		s.profiles.Add(1)
	case r.URL.Path == "/v1/stats":
		items := s.Items()
		processed := s.before
		if items == s.expect && s.polls.Add(1) > s.lagPolls {
			processed += items
		}
		n := func(v int64) string { return strconv.FormatInt(v, 10) }
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"sources":{"web":{"received":`+n(s.before+items)+`,"accepted":`+n(s.before+items)+
			`,"duplicate":0,"rejected":{},"processed":`+n(processed)+`}}}`)
		return
	}
	s.NullServer.ServeHTTP(w, r)
}

func TestRunWaitProcessed(t *testing.T) {
	ls := &laggingServer{NullServer: NewNullServer(), before: 500, lagPolls: 4, expect: 3000, writeKey: "wk", adminAuth: "Bearer tok"}
	srv := httptest.NewServer(ls)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, WriteKey: "wk", AdminToken: "tok", Events: 3000, Concurrency: 4,
		Rate: 6000, ReadRate: 400, WaitProcessed: true, Timeout: 30 * time.Second,
	})
	noError(t, err)
	equal(t, "bad auth", ls.badAuth.Load(), 0)
	equal(t, "processed", rep.Processed, true)
	equal(t, "null", rep.Null, false)
	equal(t, "server accepted", rep.ServerAccepted, 3000)
	if rep.EndToEnd < rep.Wall+time.Duration(ls.lagPolls-1)*statsPoll {
		t.Fatalf("end to end %v should trail the last ack at %v by the processing lag", rep.EndToEnd, rep.Wall)
	}
	if rep.EndToEndPerSec >= rep.AckedPerSec {
		t.Fatalf("end-to-end rate %.0f is not below the ack rate %.0f", rep.EndToEndPerSec, rep.AckedPerSec)
	}
	// 0.5 s of ingest at 400 reads/s; reads cut short when ingest ends
	// reach the server uncounted.
	if n, seen := int64(rep.Reads.Count), ls.profiles.Load(); n < 50 || n > seen || seen-n > readWorkers {
		t.Fatalf("reads: report %d, server saw %d", n, seen)
	}
	equal(t, "read errors", rep.ReadErrors, 0)
	if !strings.Contains(rep.String(), "processed  all in") {
		t.Fatalf("report lacks end-to-end line:\n%s", rep)
	}
}

func TestStartNull(t *testing.T) {
	url, stop, err := StartNull("")
	noError(t, err)
	defer stop()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("null server at %q, want a loopback URL", url)
	}
	rep, err := Run(context.Background(), Config{Target: url, Events: 1000, Null: true, WaitProcessed: true, Timeout: 30 * time.Second})
	noError(t, err)
	equal(t, "acked", rep.Acked, 1000)
	equal(t, "null", rep.Null, true)
	stop()
	stop() // idempotent
}

func TestNullServerEndpoints(t *testing.T) {
	ns := NewNullServer()
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"track", http.MethodPost, "/v1/track", `{"type":"track","event":"x","userId":"u"}`, http.StatusOK},
		{"identify", http.MethodPost, "/v1/identify", `{"userId":"u"}`, http.StatusOK},
		{"batch", http.MethodPost, "/v1/batch", `{"batch":[{"type":"page"},{"type":"page"}]}`, http.StatusOK},
		{"bad json", http.MethodPost, "/v1/batch", `{"batch":[`, http.StatusBadRequest},
		{"stats", http.MethodGet, "/v1/stats", "", http.StatusOK},
		{"profile", http.MethodGet, "/v1/profiles/user_id:abc", "", http.StatusOK},
		{"unknown", http.MethodPost, "/v1/nope", `{}`, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			ns.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			equal(t, "status", rec.Code, tt.want)
		})
	}
	equal(t, "items", ns.Items(), 4)
	equal(t, "requests", ns.Requests(), 3)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no target", Config{}, "target URL is required"},
		{"not http", Config{Target: "ftp://x"}, "not an http(s) base URL"},
		{"no host", Config{Target: "http://"}, "not an http(s) base URL"},
		{"negative events", Config{Target: "http://x", Events: -1}, "events must be positive"},
		{"negative rate", Config{Target: "http://x", Rate: -5}, "rate must be 0 or positive"},
		{"negative timeout", Config{Target: "http://x", Timeout: -time.Second}, "timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	c, err := Config{Target: "http://x/"}.withDefaults()
	noError(t, err)
	equal(t, "target", c.Target, "http://x")
	equal(t, "events", c.Events, DefaultEvents)
	if c.Seed == 0 {
		t.Fatal("no seed chosen")
	}
}

// A run bounded by time sends the batches due before its end (paced:
// exactly those), and reports and checks the events it sent, not the cap.
func TestRunDuration(t *testing.T) {
	ns := NewNullServer()
	srv := httptest.NewServer(ns)
	defer srv.Close()
	cfg := Config{Target: srv.URL, WriteKey: "wk", Seed: 7, Timeout: 30 * time.Second,
		Events: 1_000_000, BatchSize: 100, Concurrency: 2, Rate: 10000, Duration: 300 * time.Millisecond, ReadRate: -1}
	rep, err := Run(context.Background(), cfg)
	noError(t, err)
	// Batches due at 0, 10 ms, … 290 ms: 30 of 100 events.
	equal(t, "events", int64(rep.Events), 3000)
	equal(t, "acked", rep.Acked, 3000)
	equal(t, "decoded by the server", ns.Items(), 3000)
}
