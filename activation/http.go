package activation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Message is one message for a destination, as a sender sends it.
type Message struct {
	// ID is the delivery's id, the same on every attempt: a receiver
	// deduplicates by it (webhook-id).
	ID string
	// Body is the Segment-shape message.
	Body []byte
}

// Limits is how much one request of a sender may carry; the worker cuts
// its messages into requests within them.
type Limits struct {
	// Messages per request (1: no batching).
	Messages int
	// Bytes of message bodies per request; a single larger message still
	// goes alone.
	Bytes int
}

// Sender turns messages into one request to its destination. It is the
// whole of a destination type's code: it builds and signs the request and
// says what came back. Batching, retries, the rate limit and the outbound
// rules are the worker's and the transport's, shared by every type.
type Sender interface {
	Limits() Limits
	// Send makes one attempt at delivering msgs in one request named id
	// (stable across attempts of the same messages). It never retries.
	Send(ctx context.Context, id string, msgs []Message) Result
}

// Result is what one attempt came to, before any decision about it: the
// policy (Classify) decides from it alone.
type Result struct {
	// Status is the HTTP status answered (0 when nothing was).
	Status int
	// RetryAfter is the Retry-After header answered, if any.
	RetryAfter string
	// Err is why no response came (timeout, connection refused, TLS,
	// a redirect refused), or nil.
	Err error
	// Timeout reports that Err is the attempt running out of time.
	Timeout bool
	// Body is the start of the response body, for the error recorded on
	// a failed delivery.
	Body string
	// Latency is how long the attempt took.
	Latency time.Duration
}

// transport is what senders share for reaching the network; the zero
// value builds each sender its own connection pool (so one destination's
// hanging connections never take another's) from http.DefaultTransport.
type transport struct {
	// base, when set, is used as is (tests reaching a TLS receiver with
	// its certificate).
	base http.RoundTripper
}

// maxResponseBody caps what is read of a response: a receiver cannot make
// Kith read without end. The rest is discarded by closing the connection.
const maxResponseBody = 64 << 10

// maxRedirects caps the redirects followed (to the same host only).
const maxRedirects = 5

// outbound does one sender's requests under the rules every destination
// shares: each attempt bounded by the timeout, TLS verified (Go's default,
// never turned off), redirects followed only to the same host and scheme,
// and response bodies read up to maxResponseBody.
type outbound struct {
	client  *http.Client
	timeout time.Duration
}

func newOutbound(timeout time.Duration, t transport) *outbound {
	rt := t.base
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		rt = tr
	}
	return &outbound{
		timeout: timeout,
		client: &http.Client{
			Transport: rt,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				first := via[0].URL
				if req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
					// Answered as the redirect itself, which the policy
					// dead-letters: a receiver moved to another host is
					// a configuration to change, not to follow.
					return http.ErrUseLastResponse
				}
				if len(via) >= maxRedirects {
					return fmt.Errorf("stopped after %d redirects", maxRedirects)
				}
				return nil
			},
		},
	}
}

// do makes one attempt of req (built without a context; do gives it the
// attempt's deadline).
func (o *outbound) do(ctx context.Context, req *http.Request) Result {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	start := time.Now()
	resp, err := o.client.Do(req.WithContext(ctx))
	if err != nil {
		r := Result{Err: err, Latency: time.Since(start)}
		r.Timeout = errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
		// The URL stays out of the error, which is stored and shown: a
		// URL may carry a token (Slack-style hooks).
		var ue *url.Error
		if errors.As(err, &ue) {
			r.Err = fmt.Errorf("%s request: %w", ue.Op, ue.Err)
		}
		return r
	}
	defer resp.Body.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(resp.Body, head)
	// Drain what is left, up to the cap, so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody-int64(n)))
	return Result{
		Status:     resp.StatusCode,
		RetryAfter: resp.Header.Get("Retry-After"),
		Body:       string(head[:n]),
		Latency:    time.Since(start),
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
