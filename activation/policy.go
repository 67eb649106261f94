package activation

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome is what becomes of the messages of one attempt.
type Outcome int

const (
	// Delivered: the receiver took them (2xx).
	Delivered Outcome = iota
	// Retry: they wait for another attempt at Decision.NextAt.
	Retry
	// Dead: they go to the dead-letter list, where they wait to be
	// replayed by hand.
	Dead
)

// String names the outcome as the console's list of attempts shows it.
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Policy is the one place that decides what an attempt's result means
// and when the next attempt comes: 2xx is delivered; 5xx, 408, 429,
// timeouts and connection errors are retried with exponential backoff and
// full jitter (or after the Retry-After the receiver asked for); any
// other status goes to the dead-letter list at once, and so does a retry
// once the message is older than MaxAge. The zero value is the default
// policy.
type Policy struct {
	// Base is the backoff ceiling after the first failure, doubling with
	// each later one (default 1 s).
	Base time.Duration
	// Cap is the largest backoff (default 10 min).
	Cap time.Duration
	// MaxAge is how long after its first attempt a message is retried
	// (default 24 h).
	MaxAge time.Duration
	// Jitter returns a number in [0, 1) that scales each backoff (nil:
	// math/rand/v2); tests fix it.
	Jitter func() float64
}

// Policy defaults.
const (
	DefaultBase   = time.Second
	DefaultCap    = 10 * time.Minute
	DefaultMaxAge = 24 * time.Hour
)

func (p Policy) withDefaults() Policy {
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Cap <= 0 {
		p.Cap = DefaultCap
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultMaxAge
	}
	if p.Jitter == nil {
		p.Jitter = rand.Float64
	}
	return p
}

// Decision is what the policy decided about one attempt.
type Decision struct {
	Outcome Outcome
	// NextAt is when to try again (Retry only).
	NextAt time.Time
	// Error says why the attempt failed ("" when delivered): the
	// delivery's LastError.
	Error string
}

// maxErrorBody caps how much of a response body goes into an error.
const maxErrorBody = 200

// Decide classifies r, the result of a message's attempts-th attempt
// (counting this one) when the message was first attempted at firstAt,
// and decides what follows.
func (p Policy) Decide(r Result, attempts int, firstAt, now time.Time) Decision {
	p = p.withDefaults()
	d := p.decide(r, attempts, firstAt, now)
	// Transport errors can quote what the server sent (a malformed
	// header line, up to megabytes): the error is stored with every
	// delivery of the batch and served by the API, so it is clipped here,
	// once.
	d.Error = clip(d.Error, maxErrorText)
	return d
}

// maxErrorText is the most of an error's text kept (bytes).
const maxErrorText = 1024

// clip cuts s to at most n bytes on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func (p Policy) decide(r Result, attempts int, firstAt, now time.Time) Decision {
	var why string
	switch {
	case r.Err != nil && r.Timeout:
		why = "timed out: " + r.Err.Error()
	case r.Err != nil:
		why = r.Err.Error()
	case r.Status >= 200 && r.Status <= 299:
		return Decision{Outcome: Delivered}
	case retryable(r.Status):
		why = statusError(r)
	case r.Status >= 300 && r.Status <= 399:
		return Decision{Outcome: Dead, Error: statusError(r) + " (a redirect to another host or scheme is not followed)"}
	default:
		return Decision{Outcome: Dead, Error: statusError(r)}
	}
	deadline := firstAt.Add(p.MaxAge)
	if !now.Before(deadline) {
		return Decision{Outcome: Dead, Error: fmt.Sprintf("%s (given up after %d attempts over %s)", why, attempts, p.MaxAge)}
	}
	wait, asked := retryAfter(r.RetryAfter, now)
	if !asked {
		wait = p.backoff(attempts)
	}
	next := now.Add(wait)
	if next.After(deadline) {
		// One last attempt at the deadline, rather than giving up early.
		next = deadline
	}
	return Decision{Outcome: Retry, NextAt: next, Error: why}
}

// retryable reports whether a status asks to try again later.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500 && status <= 599
}

// backoff is the wait before attempt n+1 after n failures: full jitter
// over an exponentially growing ceiling, min(Cap, Base·2^(n-1)). Full
// jitter spreads the retries of many messages that failed together.
func (p Policy) backoff(n int) time.Duration {
	ceiling := p.Cap
	if n < 1 {
		n = 1
	}
	if n-1 < 62 {
		if d := p.Base << (n - 1); d > 0 && d < p.Cap {
			ceiling = d
		}
	}
	return time.Duration(p.Jitter() * float64(ceiling))
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. A date
// in the past means now.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(365*24*3600))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func statusError(r Result) string {
	s := fmt.Sprintf("HTTP %d %s", r.Status, http.StatusText(r.Status))
	body := strings.TrimSpace(r.Body)
	body = clip(body, maxErrorBody)
	if body != "" {
		s += ": " + body
	}
	return s
}
