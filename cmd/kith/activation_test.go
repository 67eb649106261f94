package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhookReceiver is a receiver on loopback that checks each request's
// Standard Webhooks signature as a receiver would, and records what it
// accepted.
type webhookReceiver struct {
	*httptest.Server
	key []byte

	mu   sync.Mutex
	msgs []map[string]any
	ids  map[string]int // webhook-id → requests accepted with it
	bad  []string       // why requests were refused
}

func newWebhookReceiver(t *testing.T, key []byte) *webhookReceiver {
	r := &webhookReceiver{key: key, ids: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *webhookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, r.key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == "" || !slices.Contains(strings.Fields(req.Header.Get("webhook-signature")), want) {
		r.bad = append(r.bad, "bad signature for "+id)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		r.bad = append(r.bad, "not one JSON message: "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.msgs = append(r.msgs, m)
	r.ids[id]++
	w.WriteHeader(http.StatusNoContent)
}

// waitFor waits until the receiver has accepted n messages.
func (r *webhookReceiver) waitFor(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		got := len(r.msgs)
		r.mu.Unlock()
		if got >= n {
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("the receiver accepted %d messages, want %d (refused: %v)", len(r.msgs), n, r.bad)
}

// sendTracks sends one track event per messageId to collection, as user
// u, with the source's write key.
func sendTracks(t *testing.T, s *Server, key, user string, messageIDs ...string) {
	t.Helper()
	var items []string
	for _, id := range messageIDs {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":%q,"messageId":%q,"properties":{"order_id":%q}}`, user, id, id))
	}
	if code, body := rawRequest(t, s, "POST", "/v1/batch", `{"batch":[`+strings.Join(items, ",")+`]}`, key); code != 200 {
		t.Fatalf("batch: %d %s", code, body)
	}
}

// A webhook destination created through the API of a running server
// receives every event sent to collection after it was created: once, in
// order, signed per Standard Webhooks, keeping its messageId; the API
// counts them delivered. After a restart the server sends nothing the
// receiver already acknowledged, and goes on with what comes next.
func TestWebhookDestinationOnARunningServer(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	recv := newWebhookReceiver(t, key)
	dir := t.TempDir()
	s := startServerIn(t, dir)
	out, err := cli(t, s, "source", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	writeKey := strings.Fields(out[strings.Index(out, "wk_"):])[0]
	sendTracks(t, s, writeKey, "u-before", "before-1") // before the destination: not sent

	body := fmt.Sprintf(`{"name":"hook","type":"webhook","config":{"url":%q,"secret":%q},"events":true}`,
		recv.URL, "whsec_"+base64.StdEncoding.EncodeToString(key))
	if code, m := apiJSON(t, s, "POST", "/v1/destinations", body); code != 201 {
		t.Fatalf("create destination: %d %v", code, m)
	}
	sendTracks(t, s, writeKey, "u1", "m1", "m2", "m3")
	sendTracks(t, s, writeKey, "u2", "m4", "m5")
	recv.waitFor(t, 5)

	recv.mu.Lock()
	var got []string
	for _, m := range recv.msgs {
		got = append(got, m["messageId"].(string))
		if m["type"] != "track" || m["event"] != "Order Completed" || (m["userId"] != "u1" && m["userId"] != "u2") {
			t.Errorf("message %v: not the event as collected", m)
		}
	}
	recv.mu.Unlock()
	// In order per profile (u1's three, u2's two).
	if u1 := slices.DeleteFunc(slices.Clone(got), func(id string) bool { return id > "m3" }); !slices.Equal(u1, []string{"m1", "m2", "m3"}) {
		t.Errorf("u1's events arrived as %v", got)
	}
	if slices.Contains(got, "before-1") || len(got) != 5 {
		t.Errorf("received %v, want m1 … m5 and nothing sent before the destination existed", got)
	}
	var counts map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, m := apiJSON(t, s, "GET", "/v1/destinations/hook", "")
		if counts = m; counts["delivered"] == 5.0 {
			break
		}
	}
	if counts == nil || counts["delivered"] != 5.0 || counts["dead_lettered"] != 0.0 || counts["retrying"] != 0.0 {
		t.Errorf("counts %v, want 5 delivered, none retrying or dead-lettered", counts)
	}

	// A restart sends only what comes next.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = startServerIn(t, dir)
	sendTracks(t, s, writeKey, "u1", "m6")
	recv.waitFor(t, 6)
	time.Sleep(300 * time.Millisecond) // a worker's poll: time for a wrong re-send to show
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.msgs) != 6 || recv.msgs[5]["messageId"] != "m6" {
		t.Errorf("after the restart the receiver has %d messages, the last %v; want m6 only", len(recv.msgs), recv.msgs[len(recv.msgs)-1]["messageId"])
	}
	for id, n := range recv.ids {
		if n != 1 {
			t.Errorf("delivery %s accepted %d times", id, n)
		}
	}
	if len(recv.bad) > 0 {
		t.Errorf("refused requests: %v", recv.bad)
	}
}

// Erasing a person on a running server sends every destination that
// received their data a deletion message, through the same signed
// webhook, and not the others; the erasure's status lists each such
// destination, sent once the receiver acknowledged it.
func TestErasureSendsDeletionOnARunningServer(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	had, never := newWebhookReceiver(t, key), newWebhookReceiver(t, key)
	s := startServerIn(t, t.TempDir())
	out, err := cli(t, s, "source", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	writeKey := strings.Fields(out[strings.Index(out, "wk_"):])[0]
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	for _, d := range []string{
		fmt.Sprintf(`{"name":"had","type":"webhook","config":{"url":%q,"secret":%q},"events":true}`, had.URL, secret),
		fmt.Sprintf(`{"name":"never","type":"webhook","config":{"url":%q,"secret":%q},"events":{"events":["Signed Up"]}}`, never.URL, secret),
	} {
		if code, m := apiJSON(t, s, "POST", "/v1/destinations", d); code != 201 {
			t.Fatalf("create destination: %d %v", code, m)
		}
	}
	sendTracks(t, s, writeKey, "u-erase", "e1", "e2")
	had.waitFor(t, 2)

	code, m := apiJSON(t, s, "POST", "/v1/privacy/erasures", `{"identifier":"user_id:u-erase"}`)
	if code != 202 {
		t.Fatalf("erasure: %d %v", code, m)
	}
	had.waitFor(t, 3)
	var status []any
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, e := apiJSON(t, s, "GET", "/v1/privacy/erasures/"+m["id"].(string), "")
		status, _ = e["destinations"].([]any)
		if e["status"] == "finished" && len(status) == 1 && status[0].(map[string]any)["status"] == "sent" {
			break
		}
	}
	if len(status) != 1 || status[0].(map[string]any)["name"] != "had" || status[0].(map[string]any)["status"] != "sent" {
		t.Errorf("erasure destinations %v, want had, sent", status)
	}
	had.mu.Lock()
	del := had.msgs[2]
	had.mu.Unlock()
	if del["type"] != "delete" || del["userId"] != "u-erase" {
		t.Errorf("third message %v, want a deletion of userId u-erase", del)
	}
	never.mu.Lock()
	defer never.mu.Unlock()
	if len(never.msgs) != 0 {
		t.Errorf("a destination that never had the person got %v", never.msgs)
	}
}

// On a running server, a destination subscribed to a computed trait and
// to an audience is sent the audience's current members first, then
// each change of the trait as an identify with its new value, computed
// by the audience engine as the events arrive.
func TestTraitAndAudienceSyncOnARunningServer(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	recv := newWebhookReceiver(t, key)
	s := startServerIn(t, t.TempDir())
	out, err := cli(t, s, "source", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	writeKey := strings.Fields(out[strings.Index(out, "wk_"):])[0]
	for path, body := range map[string]string{
		"/v1/computed-traits": `{"key":"orders","definition":"count(event \"Order Completed\")"}`,
		"/v1/audiences":       `{"key":"buyers","definition":"count(event \"Order Completed\") >= 1"}`,
	} {
		if code, m := apiJSON(t, s, "POST", path, body); code != 201 && code != 200 {
			t.Fatalf("%s: %d %v", path, code, m)
		}
	}
	sendTracks(t, s, writeKey, "early", "o1") // a buyer before the destination exists
	waitMembers := func(n float64) {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, m := apiJSON(t, s, "GET", "/v1/audiences/buyers", ""); m["size"] == n {
				return
			}
		}
		t.Fatalf("buyers never had %v members", n)
	}
	waitMembers(1)
	body := fmt.Sprintf(`{"name":"crm","type":"webhook","config":{"url":%q,"secret":%q},"audiences":["buyers"],"traits":["orders"]}`,
		recv.URL, "whsec_"+base64.StdEncoding.EncodeToString(key))
	if code, m := apiJSON(t, s, "POST", "/v1/destinations", body); code != 201 {
		t.Fatalf("create destination: %d %v", code, m)
	}
	recv.waitFor(t, 1) // early's entry, from the first sync
	sendTracks(t, s, writeKey, "late", "o2", "o3")
	// late enters buyers, and its orders go to 1 then 2 (or straight to
	// 2 when both events are folded in together).
	var got []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		recv.mu.Lock()
		got = got[:0]
		for _, m := range recv.msgs {
			switch m["type"] {
			case "track":
				got = append(got, fmt.Sprintf("%v %v %v", m["userId"], m["event"], m["properties"].(map[string]any)["audience_key"]))
			case "identify":
				got = append(got, fmt.Sprintf("%v orders=%v", m["userId"], m["traits"].(map[string]any)["orders"]))
			}
		}
		recv.mu.Unlock()
		if slices.Contains(got, "late orders=2") && slices.Contains(got, "late Audience Entered buyers") {
			break
		}
	}
	if len(got) < 3 || got[0] != "early Audience Entered buyers" || !slices.Contains(got, "late Audience Entered buyers") || got[len(got)-1] != "late orders=2" {
		t.Errorf("received %q: want early's entry first (the sync), late's entry, and late's orders ending at 2", got)
	}
	if slices.Contains(got, "early orders=1") {
		t.Errorf("a trait change from before the destination existed was sent: %q", got)
	}
}
