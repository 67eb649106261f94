package audience_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// readerRig is an engine that does not follow the indexer: it reads the
// log itself (CatchUp), as after a restart or when it is behind. Both read
// one source of identity rules.
func readerRig(t *testing.T) (*rig, *identity.Current, *bytes.Buffer) {
	r := newRig(t)
	secret, err := r.store.Secret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rules := identity.NewCurrent(nil)
	var logs bytes.Buffer
	r.eng = audience.NewEngine(r.store, audience.Config{Secret: secret, Rules: rules.Load, Now: func() time.Time { return r.now }, FlushEvery: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r.ix = pipeline.New(r.store, secret, pipeline.Config{BatchSize: 3, Rules: rules.Load, Logger: slog.New(slog.DiscardHandler)})
	return r, rules, &logs
}

// raw makes a logged message of a Segment body.
func (r *rig) raw(body string) kith.Message {
	r.seq++
	var m struct {
		Type, Event, UserID, AnonymousID string
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		r.t.Fatal(err)
	}
	return kith.Message{SourceID: "src", MessageID: fmt.Sprintf("m%d", r.seq), Type: m.Type, Event: m.Event, UserID: m.UserID,
		AnonymousID: m.AnonymousID, Timestamp: r.now.Add(-time.Hour), ReceivedAt: r.now, Raw: []byte(body)}
}

// catchUp applies the log in the indexer, then in the engine from the log.
func (r *rig) catchUp() {
	r.t.Helper()
	r.settle() // the indexer applies the log; the engine, not told, does nothing
	if err := r.eng.CatchUp(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.settle()
}

// owner is the canonical profile holding an identifier.
func (r *rig) owner(ref string) string {
	r.t.Helper()
	ctx := context.Background()
	secret, _ := r.store.Secret(ctx)
	id, _ := identity.ParseRef(ref)
	k := identity.NewKeyer(secret).Key(id)
	o, err := r.store.LookupIdentifiers(ctx, []kith.IdentKey{k})
	if err != nil {
		r.t.Fatal(err)
	}
	return o[k].Canonical
}

// After a rule change, the engine attributes the events it reads from the
// log to the profiles the indexer applied them to: an e-mail blocked since
// is no longer read by either.
func TestEngineAttributesLogEventsAsTheIndexerAfterARuleChange(t *testing.T) {
	r, rules, _ := readerRig(t)
	r.put(kith.KindAudience, "joined", `count(event "Joined") >= 1`)
	r.settle()
	r.append([]kith.Message{r.raw(`{"type":"identify","userId":"u1","traits":{"email":"shared@example.com"}}`)})
	r.catchUp()

	next := identity.DefaultRules()
	next.Blocklist.Exact = append(next.Blocklist.Exact, "shared@example.com")
	raw, _ := json.Marshal(next)
	blocked, err := identity.ParseRules(raw)
	if err != nil {
		t.Fatal(err)
	}
	rules.Set(blocked)
	r.append([]kith.Message{r.raw(`{"type":"track","event":"Joined","anonymousId":"a7","context":{"traits":{"email":"shared@example.com"}}}`)})
	r.catchUp()

	a7, u1 := r.owner("anonymous_id:a7"), r.owner("user_id:u1")
	if a7 == "" || a7 == u1 {
		t.Fatalf("the indexer linked the blocked e-mail (%q, %q)", a7, u1)
	}
	if got := r.members("joined"); !slices.Equal(got, []string{a7}) {
		t.Fatalf("joined = %v: the engine attributed the event elsewhere than the indexer did (%s; u1's profile is %s)", got, a7, u1)
	}
}

// A message in the log whose identifiers cannot be read is logged and
// counted by the engine, not skipped in silence; the others are
// attributed.
func TestEngineCountsUndecodableLogEvents(t *testing.T) {
	r, _, logs := readerRig(t)
	r.put(kith.KindAudience, "joined", `count(event "Joined") >= 1`)
	r.settle()
	bad := r.raw(`{"type":"identify","userId":"u2"}`)
	bad.Raw = []byte(`["not","an","object"]`)
	r.append([]kith.Message{r.raw(`{"type":"track","event":"Joined","userId":"u1"}`), bad})
	r.catchUp()
	if got := r.members("joined"); !slices.Equal(got, []string{r.owner("user_id:u1")}) {
		t.Fatalf("joined = %v", got)
	}
	if n := r.eng.Undecodable(); n != 1 {
		t.Errorf("the engine counted %d undecodable events, want 1", n)
	}
	if h := r.eng.Health(); h.Skipped != 1 {
		t.Errorf("health %+v, want the undecodable event among the skipped (/metrics kith_worker_skipped_total)", h)
	}
	if !strings.Contains(logs.String(), "audience engine: message does not decode") || !strings.Contains(logs.String(), "seq=2") {
		t.Errorf("the engine did not warn about event 2: %q", logs.String())
	}
}
