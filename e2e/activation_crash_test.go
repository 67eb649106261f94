package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Sizes of the activation crash test's traffic: phase one is ingested
// before the kill, phase two after the restart; every event is a track
// of one of the users, round robin, so that each user's messages span the
// kill. Enough users that a few with a delivery waiting for its retry
// (their later messages queue behind it) leave the others flowing, so
// the worker's log position is still behind when the kill comes.
const (
	acUsers    = 400
	acPerBatch = 100
	acPhase1   = 3000
	acPhase2   = 1000
	acTotal    = acPhase1 + acPhase2
	// acKillAt is how many distinct messages the receiver has
	// acknowledged when the kill comes: a quarter of phase one.
	acKillAt = acPhase1 / 4
	// acRecoveryKill is how many acknowledgements after the restart the
	// second kill comes: while the step the first kill interrupted is
	// being sent again.
	acRecoveryKill = 100
	// acStep is how much one step of a destination's worker handles
	// before it records its progress (activation.Config.BatchSize, 500 by
	// default, which kith serve keeps): at most that many due retries and
	// that many events read from the log. What a step sent is sent again
	// after a crash, so a kill may duplicate at most acDupBound
	// messages: the ones acknowledged in the step it interrupted.
	acStep     = 500
	acDupBound = 2 * acStep
	// acDelay is how long the receiver takes per message it is sent, so
	// that the destination is well behind while phase one is delivered.
	acDelay = 2 * time.Millisecond
)

// acMessage is one event the test sends.
type acMessage struct {
	ID    string
	User  string
	Phase int
}

// acTraffic is the test's pre-built traffic.
type acTraffic struct {
	msgs   []acMessage
	byID   map[string]int // index in msgs
	bodies [2][][]byte    // per phase, the /v1/batch bodies
}

// newACTraffic builds both phases: track events with unique messageIds,
// user n mod acUsers for event n.
func newACTraffic(t *testing.T) acTraffic {
	run := randomHex(4)
	tr := acTraffic{byID: map[string]int{}}
	for phase, n := range []int{acPhase1, acPhase2} {
		var items []map[string]any
		for range n {
			i := len(tr.msgs)
			m := acMessage{
				ID:    fmt.Sprintf("act-%s-%d-%05d", run, phase+1, i),
				User:  fmt.Sprintf("act-%s-u%03d", run, i%acUsers),
				Phase: phase + 1,
			}
			tr.byID[m.ID] = i
			tr.msgs = append(tr.msgs, m)
			items = append(items, map[string]any{
				"type": "track", "messageId": m.ID, "event": "Tick", "userId": m.User,
				"properties": map[string]any{"n": i},
			})
			if len(items) == acPerBatch {
				tr.bodies[phase] = append(tr.bodies[phase], mustJSON(t, map[string]any{"batch": items}))
				items = nil
			}
		}
		if len(items) > 0 {
			tr.bodies[phase] = append(tr.bodies[phase], mustJSON(t, map[string]any{"batch": items}))
		}
	}
	return tr
}

// ingest sends a phase's batches one after another (so the log holds the
// events in the order they were built) and requires each to be
// acknowledged.
func (tr acTraffic) ingest(t *testing.T, s *server, writeKey string, phase int) {
	t.Helper()
	for i, b := range tr.bodies[phase-1] {
		if ok, why := postBatch(s, writeKey, b); !ok {
			t.Fatalf("phase %d batch %d: not acknowledged: %s", phase, i, why)
		}
	}
}

// killPoint is where the receiver holds a request for the test to kill
// kith: at the first acknowledgement numbered at or after at.
type killPoint struct {
	at      int
	fired   bool
	reached chan struct{} // closed when the held request is acknowledged
	release chan struct{} // closed by the test once kith is dead
	// acks is the number of the held request's last acknowledgement:
	// every acknowledgement kith got before the kill, and the held
	// request's, which it never got.
	acks int
}

// hookReceiver is a Standard Webhooks receiver that records every request
// it gets, verifies each signature, answers 503 to some first (and
// second) attempts, and at a kill point holds the request it is answering
// until the test has killed kith: that request's messages are processed
// by the receiver, but kith never learns it.
type hookReceiver struct {
	tr       acTraffic
	verifier *standardwebhooks.Webhook
	batched  bool
	done     chan struct{} // closed at the end of the test

	mu sync.Mutex
	// attempts counts the requests per webhook-id; bodies holds the
	// digest of the first body each webhook-id carried.
	attempts map[string]int
	bodies   map[string][32]byte
	// alone is the webhook-id of the requests that carried a message
	// alone, by messageId.
	alone map[string]string
	// acks lists, per messageId, the numbers of the acknowledgements
	// (2xx answers) that carried it; nAcks numbers them all.
	acks     map[string][]int
	nAcks    int
	requests int
	refused  int
	problems []string
	kill     *killPoint
}

func newHookReceiver(tr acTraffic, secret string, batched bool) (*hookReceiver, error) {
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	return &hookReceiver{
		tr: tr, verifier: v, batched: batched,
		done:     make(chan struct{}),
		attempts: map[string]int{}, bodies: map[string][32]byte{}, alone: map[string]string{}, acks: map[string][]int{},
	}, nil
}

// problem records something the receiver got that it should not have.
func (h *hookReceiver) problem(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.problems) < 50 {
		h.problems = append(h.problems, fmt.Sprintf(format, args...))
	}
}

// refuse reports whether the receiver answers 503 to the attempt-th
// request with this webhook-id: the first attempt of one id in 8 and the
// second of one in 64, decided by the id, so a retry of the same request
// meets the same fate whichever process sends it.
func refuse(id string, attempt int) bool {
	f := fnv.New32a()
	f.Write([]byte(id))
	h := f.Sum32()
	return attempt == 1 && h%8 == 0 || attempt == 2 && h%64 == 0
}

// ServeHTTP handles one webhook request.
func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.problem("reading a request body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	if err := h.verifier.Verify(body, r.Header); err != nil || id == "" {
		h.problem("request with webhook-id %q: the signature does not verify: %v", id, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ids, ok := h.messages(id, body)
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		return
	}

	h.mu.Lock()
	h.requests++
	sum := sha256.Sum256(body)
	if prev, seen := h.bodies[id]; !seen {
		h.bodies[id] = sum
	} else if prev != sum {
		h.problems = append(h.problems, fmt.Sprintf("webhook-id %s came with two different bodies (now %v)", id, ids))
	}
	if len(ids) == 1 {
		if prev, seen := h.alone[ids[0]]; !seen {
			h.alone[ids[0]] = id
		} else if prev != id {
			h.problems = append(h.problems, fmt.Sprintf("message %s came with webhook-id %s, earlier with %s", ids[0], id, prev))
		}
	}
	h.attempts[id]++
	if refuse(id, h.attempts[id]) {
		h.refused++
		h.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	for _, m := range ids {
		h.nAcks++
		h.acks[m] = append(h.acks[m], h.nAcks)
	}
	var hold *killPoint
	if kp := h.kill; kp != nil && !kp.fired && h.nAcks >= kp.at {
		kp.fired, kp.acks, hold = true, h.nAcks, kp
	}
	h.mu.Unlock()

	time.Sleep(time.Duration(len(ids)) * acDelay)
	if hold != nil {
		close(hold.reached)
		select {
		case <-hold.release:
		case <-h.done:
		}
	}
	w.WriteHeader(http.StatusOK)
}

// messages reads the messageIds of a request body, checking its shape
// (the message itself unbatched, {"batch":[…]} batched) and that each
// message is one the test sent, about its user.
func (h *hookReceiver) messages(id string, body []byte) ([]string, bool) {
	var env struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		h.problem("webhook-id %s: body is not JSON: %v", id, err)
		return nil, false
	}
	raws := []json.RawMessage{body}
	switch {
	case h.batched && env.Batch == nil:
		h.problem("webhook-id %s: want a {\"batch\":[…]} body, got %.200s", id, body)
		return nil, false
	case h.batched:
		raws = env.Batch
	case env.Batch != nil:
		h.problem("webhook-id %s: want one message per request, got a batch", id)
		return nil, false
	}
	ids := make([]string, 0, len(raws))
	for _, raw := range raws {
		var m struct {
			MessageID string `json:"messageId"`
			UserID    string `json:"userId"`
			Type      string `json:"type"`
			Event     string `json:"event"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			h.problem("webhook-id %s: a message is not a JSON object: %v", id, err)
			return nil, false
		}
		i, known := h.tr.byID[m.MessageID]
		if !known || m.UserID != h.tr.msgs[i].User || m.Type != "track" || m.Event != "Tick" {
			h.problem("webhook-id %s: a message the test did not send: %.300s", id, raw)
			return nil, false
		}
		ids = append(ids, m.MessageID)
	}
	return ids, true
}

// arm sets a kill point at the first acknowledgement numbered at or
// after at.
func (h *hookReceiver) arm(at int) *killPoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kill = &killPoint{at: at, reached: make(chan struct{}), release: make(chan struct{})}
	return h.kill
}

// summary describes what the receiver got so far.
func (h *hookReceiver) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%d requests (%d answered 503, %d webhook-ids), %d messages acknowledged, %d distinct",
		h.requests, h.refused, len(h.attempts), h.nAcks, len(h.acks))
}

// destinationView is what the test reads of GET /v1/destinations/{name}.
type destinationView struct {
	Name         string           `json:"name"`
	Delivered    int64            `json:"delivered"`
	Pending      int64            `json:"pending"`
	Retrying     int64            `json:"retrying"`
	DeadLettered int64            `json:"dead_lettered"`
	Filtered     int64            `json:"filtered"`
	FilteredBy   map[string]int64 `json:"filteredBy"`
	Progress     struct {
		LogSeq int64 `json:"logSeq"`
	} `json:"progress"`
	Worker *struct {
		Running   bool   `json:"running"`
		Waiting   bool   `json:"waiting"`
		LastError string `json:"lastError"`
	} `json:"worker"`
}

// String describes the counts for logs and failures.
func (v destinationView) String() string {
	s := fmt.Sprintf("delivered %d, pending %d, retrying %d, dead-lettered %d, filtered %d %v, log position %d",
		v.Delivered, v.Pending, v.Retrying, v.DeadLettered, v.Filtered, v.FilteredBy, v.Progress.LogSeq)
	if v.Worker != nil {
		s += fmt.Sprintf(", worker running %v waiting %v last error %q", v.Worker.Running, v.Worker.Waiting, v.Worker.LastError)
	}
	return s
}

// destination reads a destination's accounting.
func (s *server) destination(t testing.TB, name string) destinationView {
	t.Helper()
	var v destinationView
	s.adminJSON(t, http.MethodGet, "/v1/destinations/"+name, nil, http.StatusOK, &v)
	return v
}

// TestActivationCrash kills kith with SIGKILL while a webhook destination
// is behind (deliveries retrying, events waiting in the log, one request
// held by the receiver until kith is dead), restarts it on the same data
// directory, kills it again while it sends the interrupted step again,
// restarts it, sends more events, and proves that every event the
// destination subscribes to is delivered at least once; that a request's
// webhook-id always comes with the same body and a message sent alone
// always with the same webhook-id; that each profile's first deliveries
// are in order; and that a message is sent again exactly when kith had
// not recorded its acknowledgement: the duplicates are the messages of
// the step each kill interrupted, at most one step's worth per kill. It
// runs unbatched (one message per request) and with batches of 25.
func TestActivationCrash(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 25} {
		name := "unbatched"
		if batch > 0 {
			name = fmt.Sprintf("batch%d", batch)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testActivationCrash(t, batch)
		})
	}
}

// acKill is what the test knew at one kill.
type acKill struct {
	// acks is the receiver's acknowledgement count, the held request's
	// included.
	acks int
	// before is the destination as the API showed it with the request
	// held: its delivered count is every acknowledgement kith recorded.
	before destinationView
}

func testActivationCrash(t *testing.T, batch int) {
	start := time.Now()
	s := startServer(t, serverOptions{})
	src := s.createSource(t, "activation")
	tr := newACTraffic(t)

	key := make([]byte, 32)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	rc, err := newHookReceiver(tr, secret, batch > 0)
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(rc.done) }) // runs first: releases a held request

	config := map[string]any{"url": hs.URL + "/", "secret": secret}
	if batch > 0 {
		config["batch"] = batch
	}
	s.adminJSON(t, http.MethodPost, "/v1/destinations",
		map[string]any{"name": "hook", "type": "webhook", "config": config, "events": true}, http.StatusCreated, nil)

	var kills []acKill
	killAt := func(kp *killPoint, when string) {
		t.Helper()
		select {
		case <-kp.reached:
		case <-time.After(120 * time.Second):
			t.Fatalf("kill %s: the receiver did not reach acknowledgement %d within 120s: %s; destination %v",
				when, kp.at, rc.summary(), s.destination(t, "hook"))
		}
		v := s.destination(t, "hook")
		s.kill()
		close(kp.release)
		kills = append(kills, acKill{acks: kp.acks, before: v})
		t.Logf("killed kith %s, at acknowledgement %d, the receiver holding a request: %s; destination before the kill: %v",
			when, kp.acks, rc.summary(), v)
	}

	// Phase one; the first kill once the receiver has acknowledged a
	// quarter of it; the second soon after the restart.
	tr.ingest(t, s, src.WriteKey, 1)
	killAt(rc.arm(acKillAt), "while phase one is delivered")
	if k := kills[0]; k.before.Pending+k.before.Retrying == 0 || k.acks >= acPhase1 {
		t.Errorf("first kill: want the destination behind (pending or retrying) and less than %d messages received, got %d received and %v",
			acPhase1, k.acks, k.before)
	}
	kp := rc.arm(kills[0].acks + acRecoveryKill)
	s.restart()
	killAt(kp, "while the interrupted step is sent again")

	// Restart, send phase two, and wait until the destination's counts
	// say everything was delivered.
	s.restart()
	tr.ingest(t, s, src.WriteKey, 2)
	deadline := time.Now().Add(180 * time.Second)
	var after destinationView
	for {
		after = s.destination(t, "hook")
		if after.Delivered == acTotal && after.Pending == 0 && after.Retrying == 0 {
			break
		}
		if after.Delivered > acTotal || after.DeadLettered > 0 || after.Filtered > 0 {
			t.Fatalf("destination: want %d delivered and nothing dead-lettered or filtered, got %v; receiver: %s",
				acTotal, after, rc.summary())
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination not caught up within 180s: want delivered %d, pending 0, retrying 0; got %v; receiver: %s",
				acTotal, after, rc.summary())
		}
		time.Sleep(100 * time.Millisecond)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.problems {
		t.Errorf("receiver: %s", p)
	}
	if batch == 0 && len(rc.attempts) != acTotal {
		t.Errorf("unbatched: %d distinct webhook-ids for %d messages, want one each", len(rc.attempts), acTotal)
	}

	// What kith had not recorded at each kill: the acknowledgements of
	// that run after the ones its delivered count covers.
	type window struct{ from, to int } // acknowledgements from+1 … to
	var unrecorded []window
	prevAcks, prevDelivered, dupBound := 0, int64(0), 0
	for i, k := range kills {
		recorded := int(k.before.Delivered - prevDelivered)
		w := window{prevAcks + recorded, k.acks}
		if recorded < 0 || w.to-w.from < 1 || w.to-w.from > acDupBound {
			t.Errorf("kill %d: %d acknowledgements in that run, %d of them recorded: want 1 to %d unrecorded (one step)",
				i+1, k.acks-prevAcks, recorded, acDupBound)
		}
		unrecorded = append(unrecorded, w)
		dupBound += w.to - w.from
		prevAcks, prevDelivered = k.acks, k.before.Delivered
	}
	windowOf := func(ack int) int {
		for i, w := range unrecorded {
			if ack > w.from && ack <= w.to {
				return i
			}
		}
		return -1
	}

	// Every event was received at least once, and again exactly when its
	// acknowledgement was not recorded, after the kill that lost it.
	for _, m := range tr.msgs {
		acks := rc.acks[m.ID]
		if len(acks) == 0 {
			t.Errorf("message %s (phase %d): never received", m.ID, m.Phase)
			continue
		}
		for i, a := range acks {
			w := windowOf(a)
			switch {
			case i == len(acks)-1 && w >= 0:
				t.Errorf("message %s: acknowledgement %d was not recorded before kill %d, but the message was not sent again (acknowledgements %v)",
					m.ID, a, w+1, acks)
			case i < len(acks)-1 && w < 0:
				t.Errorf("message %s: sent again although kith had recorded acknowledgement %d (acknowledgements %v, unrecorded at the kills %v)",
					m.ID, a, acks, unrecorded)
			case i < len(acks)-1 && acks[i+1] <= unrecorded[w].to:
				t.Errorf("message %s: acknowledged twice before kill %d (acknowledgements %v)", m.ID, w+1, acks)
			}
		}
	}
	if len(rc.acks) != acTotal {
		t.Errorf("receiver: %d distinct messages, want %d", len(rc.acks), acTotal)
	}
	dups := rc.nAcks - len(rc.acks)
	if dups != dupBound {
		t.Errorf("%d messages received again, want %d (what kith had not recorded at the kills)", dups, dupBound)
	}

	// Each user's messages were first received in the order they were
	// sent.
	last := map[string]int{}
	for _, m := range tr.msgs {
		acks := rc.acks[m.ID]
		if len(acks) == 0 {
			continue
		}
		if prev := last[m.User]; acks[0] < prev {
			t.Errorf("user %s: message %s first received (acknowledgement %d) before an earlier message of the same user (%d)",
				m.User, m.ID, acks[0], prev)
		}
		last[m.User] = acks[0]
	}

	maxAttempts := 0
	for _, n := range rc.attempts {
		maxAttempts = max(maxAttempts, n)
	}
	t.Logf("batch %d: %d requests, %d answered 503, %d webhook-ids (at most %d attempts each), %d messages sent alone; "+
		"%d acknowledgements for %d messages: %d received again, unrecorded at the kills %v (bound %d each); destination at the end: %v; %v in all",
		batch, rc.requests, rc.refused, len(rc.attempts), maxAttempts, len(rc.alone),
		rc.nAcks, len(rc.acks), dups, unrecorded, acDupBound, after, time.Since(start).Round(time.Millisecond))
}
