package activation_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// webhookTo is a webhook destination to url with extra config members.
func webhookTo(url string, extra string) kith.Destination {
	cfg := `{"url":"` + url + `","secret":"` + secret + `"`
	if extra != "" {
		cfg += "," + extra
	}
	return kith.Destination{ID: "dst_test", Name: "hook", Type: kith.DestinationWebhook, Config: json.RawMessage(cfg + "}")}
}

func sender(t *testing.T, d kith.Destination, rt http.RoundTripper) activation.Sender {
	t.Helper()
	s, err := activation.NewSender(d, rt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify checks a request's signature as a receiver would, twice: with
// the Standard Webhooks library, and by computing HMAC-SHA256 over
// "<id>.<timestamp>.<body>" with the key after whsec_ independently.
func verify(t *testing.T, r request) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.Body, r.Header); err != nil {
		t.Errorf("the Standard Webhooks library refuses the request: %v", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	found := false
	for _, sig := range strings.Split(r.Header.Get("webhook-signature"), " ") {
		found = found || hmac.Equal([]byte(sig), []byte(want))
	}
	if !found {
		t.Errorf("signature %q, want %q among them", r.Header.Get("webhook-signature"), want)
	}
	ts, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q is not the Unix time now", r.Header.Get("webhook-timestamp"))
	}
}

// One message per request: the body is the message itself, signed with
// its delivery id, the custom headers added.
func TestWebhookSendsSignedMessage(t *testing.T) {
	rc := newReceiver(t, nil)
	s := sender(t, webhookTo(rc.URL+"/in", `"headers":{"Authorization":"Bearer abc","X-Team":"growth"}`), nil)
	msg := []byte(`{"type":"track","event":"Order Completed","messageId":"m1","userId":"u1","properties":{"revenue":12.5}}`)
	res := s.Send(context.Background(), "dlv_x_e1", []activation.Message{{ID: "dlv_x_e1", Body: msg}})
	if res.Err != nil || res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/in" || string(r.Body) != string(msg) {
		t.Errorf("got %s %s %s", r.Method, r.Path, r.Body)
	}
	for k, v := range map[string]string{"webhook-id": "dlv_x_e1", "Content-Type": "application/json", "Authorization": "Bearer abc", "X-Team": "growth"} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	verify(t, r)

	// A tampered body no longer verifies: the check above is not vacuous.
	wh, _ := standardwebhooks.NewWebhook(secret)
	if wh.Verify(append(r.Body, ' '), r.Header) == nil {
		t.Error("a tampered body verifies")
	}
}

// With batching, the body is {"batch":[…]} with the messages in order.
func TestWebhookBatch(t *testing.T) {
	rc := newReceiver(t, nil)
	s := sender(t, webhookTo(rc.URL, `"batch":3`), nil)
	if l := s.Limits(); l.Messages != 3 {
		t.Fatalf("limits %+v", l)
	}
	var msgs []activation.Message
	for i := range 3 {
		msgs = append(msgs, activation.Message{ID: fmt.Sprintf("dlv_x_e%d", i), Body: []byte(fmt.Sprintf(`{"type":"track","event":"E","messageId":"m%d","userId":"u"}`, i))})
	}
	if res := s.Send(context.Background(), "bat_1", msgs); res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	r := rc.requests()[0]
	var body struct {
		Batch []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	if len(body.Batch) != 3 || body.Batch[0].MessageID != "m0" || body.Batch[2].MessageID != "m2" {
		t.Errorf("batch %s", r.Body)
	}
	if r.Header.Get("webhook-id") != "bat_1" {
		t.Errorf("webhook-id %q", r.Header.Get("webhook-id"))
	}
	verify(t, r)
}

// The outbound rules: a redirect to another host is not followed (the
// redirect is the answer, which the policy dead-letters); one on the same
// host is; TLS is verified; a response body is read only up to a cap; a
// hanging receiver times out; a URL's token never shows in an error.
func TestWebhookOutboundRules(t *testing.T) {
	other := newReceiver(t, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/here", http.StatusPermanentRedirect)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for {
			if _, err := w.Write(chunk); err != nil {
				return // the client hung up after its cap
			}
		}
	})
	hang := make(chan struct{})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that a hang-up ends r's context
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tls := httptest.NewTLSServer(mux)
	t.Cleanup(tls.Close)
	t.Cleanup(func() { close(hang) }) // before the servers close

	msg := []activation.Message{{ID: "dlv_x_e1", Body: []byte(`{"type":"track","event":"E","userId":"u"}`)}}
	send := func(d kith.Destination, rt http.RoundTripper) activation.Result {
		return sender(t, d, rt).Send(context.Background(), "dlv_x_e1", msg)
	}
	policy := activation.Policy{}
	decide := func(r activation.Result) activation.Decision { return policy.Decide(r, 1, time.Now(), time.Now()) }

	t.Run("redirect to another host", func(t *testing.T) {
		res := send(webhookTo(srv.URL+"/away", ""), nil)
		if res.Status != http.StatusTemporaryRedirect || len(other.requests()) != 0 {
			t.Fatalf("result %+v, the other host got %d requests", res, len(other.requests()))
		}
		if d := decide(res); d.Outcome != activation.Dead {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("redirect on the same host", func(t *testing.T) {
		if res := send(webhookTo(srv.URL+"/moved", ""), nil); res.Status != http.StatusAccepted {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("TLS verified", func(t *testing.T) {
		res := send(webhookTo(tls.URL+"/here", ""), nil)
		if res.Err == nil || !strings.Contains(res.Err.Error(), "certificate") {
			t.Fatalf("result %+v, want a certificate error", res)
		}
		if d := decide(res); d.Outcome == activation.Delivered {
			t.Errorf("decision %+v", d)
		}
		// The same receiver, trusted, takes it.
		if res := send(webhookTo(tls.URL+"/here", ""), tls.Client().Transport); res.Status != http.StatusAccepted {
			t.Errorf("trusted: %+v", res)
		}
	})
	t.Run("endless body read up to the cap", func(t *testing.T) {
		res := send(webhookTo(srv.URL+"/endless", `"timeout":"20s"`), nil)
		if res.Err != nil || res.Status != 200 || len(res.Body) != 512 {
			t.Fatalf("result %v %d, body %d bytes", res.Err, res.Status, len(res.Body))
		}
		if res.Latency > 10*time.Second {
			t.Errorf("took %v: the body was not capped", res.Latency)
		}
	})
	t.Run("hanging receiver times out", func(t *testing.T) {
		res := send(webhookTo(srv.URL+"/hang", `"timeout":"200ms"`), nil)
		if res.Err == nil || !res.Timeout {
			t.Fatalf("result %+v", res)
		}
		if d := decide(res); d.Outcome != activation.Retry || !strings.Contains(d.Error, "timed out") {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("no token of the URL in errors", func(t *testing.T) {
		res := send(webhookTo("http://127.0.0.1:1/services/T0KEN-SECRET", `"timeout":"2s"`), nil)
		if res.Err == nil {
			t.Fatalf("result %+v", res)
		}
		if d := decide(res); strings.Contains(d.Error, "T0KEN") || d.Outcome != activation.Retry {
			t.Errorf("decision %+v", d)
		}
	})
}
