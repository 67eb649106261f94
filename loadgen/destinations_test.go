package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestDeliveryIDs(t *testing.T) {
	d, err := NewDeliveryRun(DeliveryConfig{Target: "http://127.0.0.1:1", Events: 250, BatchSize: 100, Probes: true})
	noError(t, err)
	equal(t, "ids", d.IDs(), 253) // 250 events and a probe in each of 3 requests
	equal(t, "probes", d.Probes(), 3)
	for _, id := range []int{0, 1, 100, 252} {
		b := d.appendID(nil, id)
		equal(t, "id length", len(b), idLen)
		got, ok := d.parseID(b)
		equal(t, "parsed", ok, true)
		equal(t, "id", got, id)
	}
	other, err := NewDeliveryRun(DeliveryConfig{Target: "http://127.0.0.1:1", Events: 250, BatchSize: 100})
	noError(t, err)
	other.nonce = d.nonce + 1
	for _, b := range [][]byte{other.appendID(nil, 5), d.appendID(nil, 253), []byte("dlv_dst_x_c12"), []byte("0b3e7c9a-5e2f-4f7e-9d0c-1f2e3d4c5b6a")} {
		if _, ok := d.parseID(b); ok {
			t.Errorf("parseID(%s) took another run's or no id", b)
		}
	}
	req, ok := d.parseProbeUser(d.probeUser(2))
	equal(t, "probe user parsed", ok, true)
	equal(t, "probe request", req, 2)
	if _, ok := d.parseProbeUser(other.probeUser(2)); ok {
		t.Error("took another run's probe")
	}
}

func TestDeliveryBatchBody(t *testing.T) {
	d, err := NewDeliveryRun(DeliveryConfig{Target: "http://127.0.0.1:1", Events: 30, BatchSize: 20, Probes: true, Seed: 3})
	noError(t, err)
	g := NewGenerator(3, 100, time.Now())
	for i, n := range []int{20, 10} {
		body, err := d.appendBatch(nil, g, i, n)
		noError(t, err)
		var env struct {
			Batch []struct {
				MessageID string `json:"messageId"`
				Event     string `json:"event"`
				UserID    string `json:"userId"`
			} `json:"batch"`
		}
		noError(t, json.Unmarshal(body, &env))
		equal(t, "messages", len(env.Batch), n+1)
		for k, m := range env.Batch {
			id, ok := d.parseID([]byte(m.MessageID))
			equal(t, "run's id", ok, true)
			equal(t, "id", id, i*d.stride+k)
			equal(t, "request of the id", id/d.stride, i)
		}
		probe := env.Batch[n]
		equal(t, "probe event", probe.Event, ProbeEvent)
		equal(t, "probe user", probe.UserID, d.probeUser(i))
	}
}

// TestDeliveryRun ingests into a stand-in server that acknowledges and
// then delivers each request as a webhook batch to a receiver (and the
// probes' audience entries to another), and checks what the receivers
// report.
func TestDeliveryRun(t *testing.T) {
	ns := NewNullServer()
	var mu sync.Mutex
	var d *DeliveryRun
	var events, audience, failing *Receiver
	post := func(rc *Receiver, id string, body []byte) {
		wh, err := standardwebhooks.NewWebhook(rc.Secret)
		noError(t, err)
		now := time.Now()
		sig, err := wh.Sign(id, now, body)
		noError(t, err)
		req, _ := http.NewRequest("POST", rc.URL, bytes.NewReader(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		noError(t, err)
		resp.Body.Close()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/batch" {
			ns.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var env struct{ Batch []json.RawMessage }
		_ = json.Unmarshal(body, &env)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		go func() {
			mu.Lock()
			defer mu.Unlock()
			post(events, "bat_1", body)
			post(events, "bat_1", body) // a retry: duplicates
			post(failing, "bat_1", body)
			var probe struct{ UserID string }
			_ = json.Unmarshal(env.Batch[len(env.Batch)-1], &probe)
			entry, _ := json.Marshal(map[string]any{"type": "track", "messageId": "dlv_dst_c1", "event": "Audience Entered", "userId": probe.UserID})
			post(audience, "dlv_dst_c1", entry)
		}()
	}))
	defer srv.Close()
	var err error
	d, err = NewDeliveryRun(DeliveryConfig{Target: srv.URL, WriteKey: "wk", Events: 500, BatchSize: 50, Concurrency: 2, Rate: 5000, Probes: true, Timeout: 30 * time.Second})
	noError(t, err)
	defer d.Close()
	events, err = d.NewReceiver("events", ReceiverOK)
	noError(t, err)
	events.Events = true
	audience, err = d.NewReceiver("audience", ReceiverOK)
	noError(t, err)
	audience.Audience = true
	failing, err = d.NewReceiver("down", Receiver503)
	noError(t, err)
	failing.Events = true
	rep, err := d.Ingest(context.Background())
	noError(t, err)
	equal(t, "acked", rep.Acked, int64(510))
	noError(t, d.WaitDelivered(context.Background(), 10*time.Second))
	rs := d.Results(time.Time{})
	equal(t, "receivers", len(rs), 3)
	ev, au, down := rs[0], rs[1], rs[2]
	equal(t, "received", ev.Received, int64(510))
	equal(t, "wanted", ev.Wanted, int64(510))
	equal(t, "duplicates", ev.Duplicates, int64(510))
	equal(t, "requests", ev.Requests, int64(20))
	equal(t, "signature", ev.SignatureError, "")
	equal(t, "latencies", ev.Latency.Count, 510)
	equal(t, "audience entries", au.Entries, int64(10))
	equal(t, "audience wanted", au.WantedEntries, int64(10))
	equal(t, "entry latencies", au.EntryLatency.Count, 10)
	equal(t, "audience messages are not another run's", au.Other, int64(0))
	equal(t, "failing received nothing", down.Received, int64(0))
	equal(t, "failing wanted nothing", down.Wanted, int64(0))
	equal(t, "failing requests", down.Requests, int64(10))
	h := d.Healthy(rs)
	equal(t, "healthy receivers", h.Receivers, 2)
	equal(t, "complete", h.Complete, true)
	equal(t, "healthy latencies", h.Latency.Count, 510)
	if ev.PerSec <= 0 || ev.Latency.Max > 10*time.Second {
		t.Errorf("events receiver: %+v", ev)
	}
	out := DeliveryReport{Case: "test", Ingest: rep, Receivers: rs, Healthy: h}.String()
	for _, want := range []string{"== test ==", "events", "audience entries 10 of 10", "503", "healthy    2 receivers"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestReceiverModes(t *testing.T) {
	for _, s := range []string{"ok", "503", "hang"} {
		m, err := ParseReceiverMode(s)
		noError(t, err)
		equal(t, "mode", string(m), s)
	}
	if _, err := ParseReceiverMode("500"); err == nil {
		t.Error("took 500")
	}
	d, err := NewDeliveryRun(DeliveryConfig{Target: "http://127.0.0.1:1", Events: 1})
	noError(t, err)
	rc, err := d.NewReceiver("hang", ReceiverHang)
	noError(t, err)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	if resp, err := client.Post(rc.URL, "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatal("a hanging receiver answered")
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Error("the request did not wait for its timeout")
	}
	d.Close() // ends the hanging handler
	equal(t, "requests", rc.requests.Load(), int64(1))
}

func TestProcessRSS(t *testing.T) {
	rss, peak, err := ProcessRSS(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if rss <= 0 || peak < rss {
		t.Errorf("rss %d, peak %d", rss, peak)
	}
	s := SampleRSS(os.Getpid(), time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if s.Stop() <= 0 {
		t.Error("no sample")
	}
}
