package activation_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

func segmentTo(endpoint, writeKey, extra string) kith.Destination {
	cfg := `{"endpoint":"` + endpoint + `","writeKey":"` + writeKey + `"`
	if extra != "" {
		cfg += "," + extra
	}
	return kith.Destination{ID: "dst_seg", Name: "seg", Type: kith.DestinationSegment, Config: json.RawMessage(cfg + "}")}
}

// stored returns messages as Kith stores them (collect's normalised
// form), received at 13:00, so that a client clock that differs from
// the server's is corrected in the stored timestamp.
func stored(t *testing.T, bodies ...string) []activation.Message {
	t.Helper()
	received := time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC)
	var out []activation.Message
	for i, b := range bodies {
		p := collect.Parse([]byte(`{"batch":[`+b+`]}`), "batch", collect.Meta{ReceivedAt: received}, collect.DefaultLimits())
		if len(p.Rejected) > 0 || len(p.Messages) != 1 {
			t.Fatalf("fixture %s: %+v", b, p.Rejected)
		}
		out = append(out, activation.Message{ID: fmt.Sprintf("dlv_seg_e%d", i+1), Body: p.Messages[0].Raw})
	}
	return out
}

// Against a receiver that checks the Segment HTTP Tracking API request
// exactly: POST /v1/batch, Basic auth with the write key and an empty
// password, gzip, {"batch":[…]}; each message keeps its messageId and its
// corrected time (as originalTimestamp, without sentAt).
func TestSegmentRequest(t *testing.T) {
	rc := newReceiver(t, nil)
	msgs := stored(t,
		`{"type":"track","event":"Signed Up","userId":"u1","messageId":"m-1","timestamp":"2026-05-01T12:10:00Z","sentAt":"2026-05-01T12:10:00Z"}`,
		`{"type":"identify","anonymousId":"a2","messageId":"m-2","traits":{"plan":"pro"}}`,
	)
	s := sender(t, segmentTo(rc.URL+"/", "wk_123", ""), nil)
	if l := s.Limits(); l.Messages != 100 || l.Bytes > 500_000 {
		t.Errorf("limits %+v: default batch 100, under 500 KB", l)
	}
	if res := s.Send(context.Background(), "bat_x", msgs); res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/batch" {
		t.Errorf("%s %s", r.Method, r.Path)
	}
	hr, _ := http.NewRequest("GET", "/", nil)
	hr.Header = r.Header
	if user, pass, ok := hr.BasicAuth(); !ok || user != "wk_123" || pass != "" {
		t.Errorf("basic auth %q %q %v", user, pass, ok)
	}
	if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Batch []map[string]any `json:"batch"`
	}
	if err := json.Unmarshal(plain, &body); err != nil {
		t.Fatalf("%s: %v", plain, err)
	}
	if len(body.Batch) != 2 {
		t.Fatalf("batch %s", plain)
	}
	first := body.Batch[0]
	// The client sent it as it happened (sentAt = timestamp, 12:10 by its
	// clock) and Kith received it at 13:00: corrected, it happened at
	// 13:00, and that time is forwarded as it is.
	for k, want := range map[string]any{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m-1", "timestamp": "2026-05-01T13:00:00.000000Z", "originalTimestamp": "2026-05-01T13:00:00.000000Z"} {
		if first[k] != want {
			t.Errorf("%s: %v, want %v (%s)", k, first[k], want, plain)
		}
	}
	if _, ok := first["sentAt"]; ok {
		t.Errorf("sentAt forwarded: %s", plain)
	}
	if body.Batch[1]["anonymousId"] != "a2" || body.Batch[1]["messageId"] != "m-2" {
		t.Errorf("second message %v", body.Batch[1])
	}
}

// kithReceiver is a real Kith collection endpoint (the HTTP API on its own
// embedded store) and a write key of one of its sources.
func kithReceiver(t *testing.T) (url, writeKey string, store *sqlite.DB) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := store.Secret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 1000})
	com := collect.NewCommitter(store, 64, 5000, ix.Notify)
	api := httpapi.New(store, com, ix, httpapi.Config{Limits: collect.DefaultLimits()})
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		api.Close()
		com.Close()
		store.Close()
	})
	_, key, err := admin.CreateSource(ctx, store, "forwarded", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, key, store
}

// Kith itself receives what the segment sender forwards: every message
// stored once with its messageId, its type, ids and time as they were.
func TestSegmentIntoKith(t *testing.T) {
	url, key, store := kithReceiver(t)
	msgs := stored(t,
		`{"type":"track","event":"Order Completed","userId":"u1","messageId":"m-1","timestamp":"2026-05-01T12:10:00Z","sentAt":"2026-05-01T12:20:00Z","properties":{"revenue":30}}`,
		`{"type":"page","name":"Home","anonymousId":"a2","messageId":"m-2","timestamp":"2026-05-01T11:00:00Z"}`,
		`{"type":"identify","userId":"u1","messageId":"m-3","traits":{"email":"ada@example.com"}}`,
	)
	s := sender(t, segmentTo(url, key, `"batch":10`), nil)
	if res := s.Send(context.Background(), "bat_x", msgs); res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	// Sent again (a retry after a lost answer): deduplicated by messageId.
	if res := s.Send(context.Background(), "bat_x", msgs); res.Status != 200 {
		t.Fatalf("again: %+v", res)
	}
	got, err := store.ReadLog(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("the receiving Kith stored %d events, want 3", len(got))
	}
	want := []struct {
		id, typ, event, user, anon string
		at                         time.Time
	}{
		// 12:10 sent at 12:20 and received at 13:00: it happened at 12:50.
		{"m-1", "track", "Order Completed", "u1", "", time.Date(2026, 5, 1, 12, 50, 0, 0, time.UTC)},
		{"m-2", "page", "Home", "", "a2", time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)},
		{"m-3", "identify", "", "u1", "", time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC)},
	}
	for i, m := range got {
		w := want[i]
		if m.MessageID != w.id || m.Type != w.typ || m.Event != w.event || m.UserID != w.user || m.AnonymousID != w.anon || !m.Timestamp.Equal(w.at) {
			t.Errorf("event %d: %s %s %q %q %q %v, want %+v", i, m.MessageID, m.Type, m.Event, m.UserID, m.AnonymousID, m.Timestamp, w)
		}
	}
	// A wrong write key is refused, which the policy dead-letters.
	res := sender(t, segmentTo(url, "wk_wrong", ""), nil).Send(context.Background(), "x", msgs[:1])
	if d := (activation.Policy{}).Decide(res, 1, time.Now(), time.Now()); res.Status != http.StatusUnauthorized || d.Outcome != activation.Dead {
		t.Errorf("wrong key: %+v → %+v", res, d)
	}
}
