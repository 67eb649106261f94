package activation_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kithcdp/kith/activation"
)

func TestPolicyDecide(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := activation.Policy{Base: time.Second, Cap: 10 * time.Minute, MaxAge: 24 * time.Hour, Jitter: func() float64 { return 0.5 }}
	refused := errors.New("dial tcp 127.0.0.1:9: connect: connection refused")
	tests := []struct {
		name     string
		r        activation.Result
		attempts int
		age      time.Duration // since the first attempt
		outcome  activation.Outcome
		wait     time.Duration // NextAt − now, for Retry
		err      string        // in Decision.Error
	}{
		{name: "200", r: activation.Result{Status: 200}, attempts: 1, outcome: activation.Delivered},
		{name: "204", r: activation.Result{Status: 204}, attempts: 4, age: time.Hour, outcome: activation.Delivered},
		{name: "500 first failure: jitter over the base", r: activation.Result{Status: 500, Body: "oops"}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond, err: "HTTP 500 Internal Server Error: oops"},
		{name: "503 third failure: base·4", r: activation.Result{Status: 503}, attempts: 3, outcome: activation.Retry, wait: 2 * time.Second, err: "HTTP 503"},
		{name: "502 twentieth failure: the cap", r: activation.Result{Status: 502}, attempts: 20, outcome: activation.Retry, wait: 5 * time.Minute},
		{name: "huge attempt count does not overflow", r: activation.Result{Status: 500}, attempts: 1 << 20, outcome: activation.Retry, wait: 5 * time.Minute},
		{name: "408", r: activation.Result{Status: http.StatusRequestTimeout}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond},
		{name: "429 Retry-After seconds", r: activation.Result{Status: 429, RetryAfter: "7"}, attempts: 1, outcome: activation.Retry, wait: 7 * time.Second, err: "HTTP 429 Too Many Requests"},
		{name: "503 Retry-After HTTP date", r: activation.Result{Status: 503, RetryAfter: now.Add(90 * time.Second).Format(http.TimeFormat)}, attempts: 2, outcome: activation.Retry, wait: 90 * time.Second},
		{name: "Retry-After in the past: now", r: activation.Result{Status: 503, RetryAfter: now.Add(-time.Hour).Format(http.TimeFormat)}, attempts: 2, outcome: activation.Retry, wait: 0},
		{name: "Retry-After garbage: backoff", r: activation.Result{Status: 429, RetryAfter: "soon"}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond},
		{name: "Retry-After negative: backoff", r: activation.Result{Status: 429, RetryAfter: "-5"}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond},
		{name: "Retry-After beyond the max age: at the deadline", r: activation.Result{Status: 429, RetryAfter: "86400"}, attempts: 1, age: 23 * time.Hour, outcome: activation.Retry, wait: time.Hour},
		{name: "timeout", r: activation.Result{Err: errors.New("context deadline exceeded"), Timeout: true}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond, err: "timed out"},
		{name: "connection refused", r: activation.Result{Err: refused}, attempts: 1, outcome: activation.Retry, wait: 500 * time.Millisecond, err: "connection refused"},
		{name: "400 dead at once", r: activation.Result{Status: 400, Body: `{"error":"bad field"}`}, attempts: 1, outcome: activation.Dead, err: `HTTP 400 Bad Request: {"error":"bad field"}`},
		{name: "401 dead", r: activation.Result{Status: 401}, attempts: 1, outcome: activation.Dead, err: "HTTP 401"},
		{name: "404 dead", r: activation.Result{Status: 404}, attempts: 5, age: time.Minute, outcome: activation.Dead},
		{name: "413 dead", r: activation.Result{Status: 413}, attempts: 1, outcome: activation.Dead},
		{name: "redirect not followed: dead", r: activation.Result{Status: 302}, attempts: 1, outcome: activation.Dead, err: "redirect"},
		{name: "5xx past the max age: dead", r: activation.Result{Status: 503}, attempts: 40, age: 24 * time.Hour, outcome: activation.Dead, err: "given up after 40 attempts"},
		{name: "timeout past the max age: dead", r: activation.Result{Err: errors.New("deadline"), Timeout: true}, attempts: 9, age: 25 * time.Hour, outcome: activation.Dead, err: "timed out"},
		{name: "backoff beyond the max age: at the deadline", r: activation.Result{Status: 500}, attempts: 30, age: 24*time.Hour - time.Second, outcome: activation.Retry, wait: time.Second},
		{name: "long body cut", r: activation.Result{Status: 400, Body: strings.Repeat("x", 5000)}, attempts: 1, outcome: activation.Dead, err: strings.Repeat("x", 200) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.r, tt.attempts, now.Add(-tt.age), now)
			if d.Outcome != tt.outcome {
				t.Fatalf("outcome %v, want %v (%+v)", d.Outcome, tt.outcome, d)
			}
			if tt.outcome == activation.Retry {
				if got := d.NextAt.Sub(now); got != tt.wait {
					t.Errorf("next attempt in %v, want %v", got, tt.wait)
				}
			} else if !d.NextAt.IsZero() {
				t.Errorf("NextAt %v for %v", d.NextAt, d.Outcome)
			}
			if !strings.Contains(d.Error, tt.err) {
				t.Errorf("error %q, want it to contain %q", d.Error, tt.err)
			}
			if tt.outcome == activation.Delivered && d.Error != "" {
				t.Errorf("error %q on a delivery", d.Error)
			}
			if len(d.Error) > 400 {
				t.Errorf("error of %d bytes", len(d.Error))
			}
		})
	}
}

// Full jitter: the waits after the same failure spread over the whole
// range from 0 to the ceiling, never above it; the default policy's
// ceilings are 1 s, 2 s, 4 s … up to 10 min.
func TestPolicyJitterSpreadsRetries(t *testing.T) {
	now := time.Now()
	var p activation.Policy // defaults, real randomness
	for attempts, ceiling := range map[int]time.Duration{1: time.Second, 3: 4 * time.Second, 11: 10 * time.Minute, 60: 10 * time.Minute} {
		var lo, hi time.Duration = ceiling, 0
		for range 2000 {
			d := p.Decide(activation.Result{Status: 503}, attempts, now, now)
			w := d.NextAt.Sub(now)
			if w < 0 || w > ceiling {
				t.Fatalf("attempt %d: wait %v outside [0, %v]", attempts, w, ceiling)
			}
			lo, hi = min(lo, w), max(hi, w)
		}
		if lo > ceiling/10 || hi < ceiling*9/10 {
			t.Errorf("attempt %d: waits between %v and %v, want them spread over [0, %v]", attempts, lo, hi, ceiling)
		}
	}
}

// An error a server shapes (a transport error quoting a malformed header,
// a long body) is clipped on a character boundary before it is kept.
func TestDecisionErrorIsClipped(t *testing.T) {
	now := time.Now()
	long := errors.New("malformed MIME header line: " + strings.Repeat("é", 5000))
	d := activation.Policy{}.Decide(activation.Result{Err: long}, 1, now, now)
	if len(d.Error) > 1024+len("…") || !utf8.ValidString(d.Error) || !strings.HasSuffix(d.Error, "…") {
		t.Errorf("error of %d bytes (valid UTF-8 %v): want at most 1024 and a marked cut", len(d.Error), utf8.ValidString(d.Error))
	}
	d = activation.Policy{}.Decide(activation.Result{Status: 503, Body: strings.Repeat("é", 400)}, 1, now, now)
	if !utf8.ValidString(d.Error) || !strings.HasSuffix(d.Error, "…") {
		t.Errorf("body cut into %q", d.Error)
	}
}
