package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// every subscribes to every accepted event.
var every = &kith.EventFilter{}

// Events reach a webhook in log order, one request each, every one signed
// and named by its delivery id dlv_<destination>_e<seq>; the events keep
// their messageIds.
func TestEventsDeliveredInOrder(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.addViews(30, 3)
	d := r.hook("hook", rc.URL)
	e := r.engine(activation.Config{})

	r.waitDelivered(d, 30)
	got := messages(t, rc)
	if len(got) != 30 {
		t.Fatalf("%d requests, want 30", len(got))
	}
	for i, m := range got {
		if want := fmt.Sprintf("dlv_%s_e%d", d.ID, i+1); m.ID != want {
			t.Errorf("request %d: webhook-id %q, want %q", i, m.ID, want)
		}
		if want := fmt.Sprintf("u%d-%d", i%3, i); m.MessageID != want {
			t.Errorf("request %d: messageId %q, want %q", i, m.MessageID, want)
		}
	}
	for _, req := range rc.requests() {
		verify(t, req)
	}
	c := r.counts(d)
	if c.Retrying != 0 || c.DeadLettered != 0 || len(c.Filtered) != 0 {
		t.Errorf("counts %+v", c)
	}
	waitFor(t, func() string { s, _ := e.State(d.ID); return fmt.Sprintf("state %+v", s) }, func() bool {
		s, ok := e.State(d.ID)
		return ok && s.Progress.LogSeq == 30 && len(s.Attempts) == 20 && s.Health.Failing == 0
	})
	if h := e.Health(); len(h) != 1 || h[0].Worker != "destination hook" {
		t.Errorf("health %+v", h)
	}
}

// One profile the receiver fails for delays only that profile: the other
// profiles' events are all delivered while its first failed event is
// retried (with the same id every time) and its later ones wait behind
// it unsent; once the receiver takes it, its events follow in order.
func TestFailingProfileDelaysOnlyItself(t *testing.T) {
	r := newRig(t)
	rc, heal := failingFor(t, "bad", http.StatusInternalServerError)
	var bodies []string
	for i := range 40 {
		user := fmt.Sprintf("u%d", i%4)
		if i%4 == 1 {
			user = "bad"
		}
		bodies = append(bodies, track(user, "Viewed", i))
	}
	r.add(bodies...)
	d := r.hook("hook", rc.URL)
	r.engine(activation.Config{})

	// The 30 events of the three good users go through while bad's
	// first event is retried.
	goodDelivered := func() int {
		n := 0
		for _, m := range messages(t, rc) {
			if m.UserID != "bad" {
				n++
			}
		}
		return n
	}
	badAttempts := func() int {
		n := 0
		for _, m := range messages(t, rc) {
			if m.UserID == "bad" {
				n++
			}
		}
		return n
	}
	waitFor(t, func() string {
		return fmt.Sprintf("%d good delivered, bad tried %d times", goodDelivered(), badAttempts())
	},
		func() bool { return goodDelivered() == 30 && badAttempts() >= 3 })
	firstBad := fmt.Sprintf("dlv_%s_e2", d.ID) // bad's first event is the log's second
	for _, m := range messages(t, rc) {
		if m.UserID == "bad" && m.ID != firstBad {
			t.Fatalf("bad's later message %s was sent while its first one waits", m.ID)
		}
	}
	if c := r.counts(d); c.Delivered != 30 || c.Retrying != 10 {
		t.Errorf("counts %+v, want 30 delivered and bad's 10 retrying (1 failed, 9 behind it)", c)
	}

	heal()
	r.waitDelivered(d, 40)
	var badSeqs []int64
	for _, m := range messages(t, rc) {
		if m.UserID == "bad" && m.ID != firstBad {
			badSeqs = append(badSeqs, seqOf(t, m.ID))
		}
	}
	if len(badSeqs) != 9 || !slices.IsSorted(badSeqs) {
		t.Errorf("bad's later messages came as %v, want 9 in log order", badSeqs)
	}
	if c := r.counts(d); c.Retrying != 0 || c.DeadLettered != 0 {
		t.Errorf("counts %+v", c)
	}
}

// A destination that answers 503 and one that hangs do not delay a
// healthy one: the healthy one has delivered everything while the others
// are still retrying, have stopped taking new events from the log, and
// report themselves failing.
func TestDeadDestinationsDoNotDelayHealthy(t *testing.T) {
	r := newRig(t)
	healthy := newReceiver(t, nil)
	down := newReceiver(t, func(request) int { return http.StatusServiceUnavailable })
	hang := make(chan struct{})
	hanging := newReceiver(t, func(request) int { <-hang; return http.StatusOK })
	t.Cleanup(func() { close(hang) }) // before the receivers close
	r.addViews(200, 20)
	ok := r.hook("healthy", healthy.URL)
	dead := r.hook("down", down.URL)
	hung := r.create(kith.Destination{Name: "hanging", Type: kith.DestinationWebhook, Config: webhookTo(hanging.URL, `"timeout":"300ms"`).Config, Events: every})
	e := r.engine(activation.Config{BatchSize: 50})

	waitFor(t, func() string { return fmt.Sprintf("healthy %+v", r.counts(ok)) }, func() bool { return r.counts(ok).Delivered == 200 })
	for _, d := range []kith.Destination{dead, hung} {
		if c := r.counts(d); c.Delivered != 0 {
			t.Errorf("%s: counts %+v", d.Name, c)
		}
	}
	// The healthy one finished while the others still retry (the hanging
	// one's first attempts may still be running: they take their timeout).
	for _, d := range []kith.Destination{dead, hung} {
		waitFor(t, func() string { s, _ := e.State(d.ID); return fmt.Sprintf("%s: %+v, %+v", d.Name, r.counts(d), s) }, func() bool {
			s, _ := e.State(d.ID)
			return r.counts(d).Retrying > 0 && s.Waiting
		})
		// It stopped reading: the rest waits in the log, not in
		// deliveries.
		s, _ := e.State(d.ID)
		if c := r.counts(d); c.Delivered != 0 || s.Progress.LogSeq >= 200 || c.Retrying > 50 {
			t.Errorf("%s: state %+v, counts %+v: it should have stopped taking events after a few failures", d.Name, s, c)
		}
	}
	if c := r.counts(ok); c.Retrying != 0 || c.DeadLettered != 0 {
		t.Errorf("healthy: %+v", c)
	}
	waitFor(t, func() string { return fmt.Sprintf("health %+v", e.Health()) }, func() bool {
		stuck := map[string]bool{}
		for _, h := range e.Health() {
			stuck[h.Worker] = h.Stuck() && h.LastError != ""
		}
		return stuck["destination down"] && stuck["destination hanging"] && !stuck["destination healthy"]
	})
	for _, h := range e.Health() {
		if h.Worker == "destination down" && !strings.Contains(h.LastError, "503") {
			t.Errorf("down's last error %q", h.LastError)
		}
		if h.Worker == "destination hanging" && !strings.Contains(h.LastError, "timed out") {
			t.Errorf("hanging's last error %q", h.LastError)
		}
	}
}

// A 4xx goes to the dead-letter list at once with its status and the
// receiver's error; it does not hold up the profile's later events.
func TestClientErrorDeadLetters(t *testing.T) {
	r := newRig(t)
	rc := httpReceiver(t, func(w http.ResponseWriter, req request) {
		var m sent
		_ = json.Unmarshal(req.Body, &m)
		if m.Event == "Broken" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":"properties.sku is required"}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r.add(track("u1", "Viewed", 1), track("u1", "Broken", 2), track("u1", "Viewed", 3))
	d := r.hook("hook", rc.URL)
	e := r.engine(activation.Config{})

	waitFor(t, func() string { return fmt.Sprintf("counts %+v", r.counts(d)) }, func() bool {
		c := r.counts(d)
		return c.Delivered == 2 && c.DeadLettered == 1
	})
	if n := len(rc.requests()); n != 3 {
		t.Errorf("%d requests: a dead letter is not retried", n)
	}
	dl, err := r.store.Deliveries(context.Background(), d.ID, true, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 {
		t.Fatalf("dead letters %+v", dl)
	}
	x := dl[0]
	if x.ID != "dlv_"+d.ID+"_e2" || x.LastStatus != 422 || !strings.Contains(x.LastError, "properties.sku is required") || x.Attempts != 1 || !x.Dead || x.Kind != "event" {
		t.Errorf("dead letter %+v", x)
	}
	var body sent
	if err := json.Unmarshal(x.Body, &body); err != nil || body.MessageID != "u1-2" {
		t.Errorf("dead letter body %s", x.Body)
	}
	if h := e.Health(); h[0].Skipped != 1 || h[0].Failing != 0 {
		t.Errorf("health %+v: a dead letter is set aside, not a failing worker", h)
	}

	// Fixed on the receiver's side, the dead letter is replayed, with its
	// id; so is one dead-lettered while the destination is paused.
	rc.setHandle(func(w http.ResponseWriter, req request) { w.WriteHeader(http.StatusOK) })
	ctx := context.Background()
	if n, err := e.Replay(ctx, d.ID, []string{x.ID}); n != 1 || err != nil {
		t.Fatalf("replay: %d %v", n, err)
	}
	r.waitDelivered(d, 3)
	if c := r.counts(d); c.DeadLettered != 0 || c.Retrying != 0 {
		t.Errorf("after the replay: %+v", c)
	}
	if last := messages(t, rc); last[len(last)-1].ID != x.ID {
		t.Errorf("replayed as %s, want %s", last[len(last)-1].ID, x.ID)
	}
	if n, err := e.Replay(ctx, d.ID, nil); n != 0 || err != nil {
		t.Errorf("nothing left to replay: %d %v", n, err)
	}
	dead := kith.Delivery{ID: "dlv_" + d.ID + "_e9", Key: "k", Seq: 9, Kind: "event", Body: []byte(`{"type":"track","event":"Late","userId":"u1","messageId":"late"}`), Attempts: 1, Dead: true, LastStatus: 400}
	p, _ := r.store.DestinationProgress(ctx, d.ID)
	if _, err := e.SetPaused(ctx, "hook", true); err != nil {
		t.Fatal(err)
	}
	if err := r.store.AdvanceDestination(ctx, d.ID, kith.DestinationUpdate{Progress: p, Put: []kith.Delivery{dead}}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Replay(ctx, d.ID, nil); n != 1 || err != nil {
		t.Fatalf("replay while paused: %d %v", n, err)
	}
	if c := r.counts(d); c.DeadLettered != 0 || c.Retrying != 1 {
		t.Errorf("replayed while paused: %+v", c)
	}
	if _, err := e.SetPaused(ctx, "hook", false); err != nil {
		t.Fatal(err)
	}
	r.waitDelivered(d, 4)
}

// The consent check and the event filter: a profile's events reach the
// destination only if it granted every category the destination lists;
// the rest are counted by reason, and every event is in exactly one
// bucket.
func TestFilteredCounted(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	consent := func(user string, granted bool) string {
		return fmt.Sprintf(`{"type":"track","event":"Segment Consent Preference Updated","userId":%q,"context":{"consent":{"categoryPreferences":{"Marketing":%v,"Analytics":true}}}}`, user, granted)
	}
	r.add(
		consent("yes", true), consent("no", false), // (tracks: filtered by name)
		track("yes", "Order Completed", 1), track("no", "Order Completed", 2), track("nobody-asked", "Order Completed", 3),
		`{"type":"identify","userId":"yes","traits":{"plan":"pro"}}`,
		track("yes", "Order Completed", 4),
	)
	filter := &kith.EventFilter{Types: []string{"track"}, Events: []string{"Order Completed"}}
	d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config, Events: filter, Consent: []string{"Marketing"}})
	open := r.create(kith.Destination{Name: "open", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config, Events: filter})
	none := r.create(kith.Destination{Name: "audiences-only", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config})
	e := r.engine(activation.Config{})

	waitFor(t, func() string { return fmt.Sprintf("counts %+v %+v", r.counts(d), r.counts(open)) }, func() bool {
		return r.counts(d).Delivered+r.counts(d).Filtered["consent"] == 4 && r.counts(open).Delivered == 4
	})
	c := r.counts(d)
	if c.Delivered != 2 || c.Filtered["consent"] != 2 || c.Filtered["subscription"] != 3 {
		t.Errorf("counts %+v: want 2 delivered (yes), 2 filtered for consent (no, nobody-asked), 3 for subscription", c)
	}
	if c := r.counts(open); c.Delivered != 4 || c.Filtered["consent"] != 0 || c.Filtered["subscription"] != 3 {
		t.Errorf("without consent categories: %+v", c)
	}
	for _, m := range messages(t, rc) {
		if m.UserID != "yes" && strings.HasPrefix(m.ID, "dlv_"+d.ID+"_") {
			t.Errorf("%s reached the consent-gated destination", m.MessageID)
		}
	}
	// A destination without an event subscription moves past the log and
	// counts nothing: it never asked for those events.
	waitFor(t, func() string { s, _ := e.State(none.ID); return fmt.Sprintf("%+v", s) }, func() bool {
		s, _ := e.State(none.ID)
		return s.Progress.LogSeq == 7
	})
	if c := r.counts(none); c.Delivered != 0 || len(c.Filtered) != 0 {
		t.Errorf("audiences-only: %+v", c)
	}
}

// A paused destination's worker stops and keeps its place: events that
// arrive meanwhile wait in the log and go out when it is resumed. A
// changed destination gets a worker with its new settings.
func TestPauseResumeAndChange(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.add(track("u1", "A", 1))
	d := r.hook("hook", rc.URL)
	e := r.engine(activation.Config{})
	r.waitDelivered(d, 1)

	ctx := context.Background()
	if _, err := e.SetPaused(ctx, "hook", true); err != nil {
		t.Fatal(err)
	}
	if _, running := e.State(d.ID); running || len(e.Health()) != 0 {
		t.Fatalf("a paused destination's worker runs: %+v", e.Health())
	}
	r.add(track("u1", "B", 2), track("u2", "C", 3))
	e.Notify()
	time.Sleep(100 * time.Millisecond) // ten polls of a running worker
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d requests while paused", n)
	}
	if _, err := e.SetPaused(ctx, "hook", false); err != nil {
		t.Fatal(err)
	}
	r.waitDelivered(d, 3)

	// Only "C" events from now on, to another receiver.
	other := newReceiver(t, nil)
	d.Config = webhookTo(other.URL, "").Config
	d.Events = &kith.EventFilter{Events: []string{"C"}}
	if err := r.store.UpdateDestination(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := e.Changed(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	// A destination created while the engine runs starts at its start.
	later := r.hook("later", other.URL)
	if err := e.Changed(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	r.add(track("u1", "B", 4), track("u2", "C", 5))
	r.waitDelivered(d, 4)
	r.waitDelivered(later, 5)
	if got := messages(t, other); len(got) != 6 || len(rc.requests()) != 3 {
		t.Errorf("after the change: %+v, old receiver %d requests", got, len(rc.requests()))
	}
	var changed []string
	for _, m := range messages(t, other) {
		if strings.HasPrefix(m.ID, "dlv_"+d.ID+"_") {
			changed = append(changed, m.MessageID)
		}
	}
	if !slices.Equal(changed, []string{"u2-5"}) {
		t.Errorf("the changed destination sent %v, want only the C event after the change", changed)
	}
	if c := r.counts(d); c.Filtered["subscription"] != 1 {
		t.Errorf("counts %+v", c)
	}
}

// The rate limit spaces deliveries: 40 messages at 20/s take at least a
// second after the first second's burst of 20.
func TestRateLimit(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	var bodies []string
	for i := range 40 {
		bodies = append(bodies, track("u1", "A", i))
	}
	r.add(bodies...)
	start := time.Now()
	d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config, Events: every, RateLimit: 20})
	r.engine(activation.Config{})
	r.waitDelivered(d, 40)
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("40 messages at 20/s took %v", took)
	}
}

// With batching, messages go {"batch":[…]} named by a digest of their
// ids; a failed batch makes each of its messages a delivery retried on
// its own, and each profile's messages still arrive in order.
func TestBatchedDelivery(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	calls := 0
	rc := newReceiver(t, func(request) int {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var bodies []string
	for i := range 45 {
		bodies = append(bodies, track(fmt.Sprintf("u%d", i%3), "A", i))
	}
	r.add(bodies...)
	d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, `"batch":10`).Config, Events: every})
	r.engine(activation.Config{})
	r.waitDelivered(d, 45)

	last := map[string]int{} // per user, the last n delivered
	delivered := map[string]bool{}
	for i, req := range rc.requests() {
		verify(t, req)
		var batch struct {
			Batch []struct {
				MessageID  string         `json:"messageId"`
				UserID     string         `json:"userId"`
				Properties map[string]int `json:"properties"`
			} `json:"batch"`
		}
		if err := json.Unmarshal(req.Body, &batch); err != nil || len(batch.Batch) == 0 || len(batch.Batch) > 10 {
			t.Fatalf("request %d: %s", i, req.Body)
		}
		if id := req.Header.Get("webhook-id"); len(batch.Batch) > 1 && !strings.HasPrefix(id, "bat_") {
			t.Errorf("request %d of %d messages: webhook-id %q", i, len(batch.Batch), id)
		}
		if i == 1 {
			continue // answered 503: its messages come again
		}
		for _, m := range batch.Batch {
			n := m.Properties["n"]
			if prev, ok := last[m.UserID]; ok && n < prev {
				t.Errorf("%s: message %d after %d", m.UserID, n, prev)
			}
			last[m.UserID] = n
			if delivered[m.MessageID] {
				t.Errorf("%s delivered twice", m.MessageID)
			}
			delivered[m.MessageID] = true
		}
	}
	if len(delivered) != 45 {
		t.Errorf("%d distinct messages delivered", len(delivered))
	}
}

// A destination whose stored config no longer validates does not start
// quietly: its worker reports itself failing with the reason, and the
// others run.
func TestBrokenConfigReported(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.addViews(3, 1)
	bad := kith.Destination{ID: "dst_bad", Name: "bad", Type: kith.DestinationWebhook, Config: []byte(`{"url":"gopher://x","secret":"` + secret + `"}`), Events: every}
	if err := r.store.CreateDestination(context.Background(), bad, kith.DestinationProgress{}); err != nil {
		t.Fatal(err)
	}
	good := r.hook("good", rc.URL)
	e := r.engine(activation.Config{})
	r.waitDelivered(good, 3)
	waitFor(t, func() string { return fmt.Sprintf("%+v", e.Health()) }, func() bool {
		h := e.Health()
		return len(h) == 2 && h[0].Worker == "destination bad" && h[0].Stuck() && strings.Contains(h[0].LastError, "config.url: must be http or https")
	})
}
