package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// blocking returns the default rules with value blocked as junk.
func blocking(value string) *identity.Rules {
	r := identity.DefaultRules()
	r.Blocklist.Exact = append(r.Blocklist.Exact, value)
	raw, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	if r, err = identity.ParseRules(raw); err != nil {
		panic(err)
	}
	return r
}

// waitApplied waits until the running indexer has applied the log.
func waitApplied(t *testing.T, store kith.Store, ix *pipeline.Indexer) {
	t.Helper()
	head, err := store.LogHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ix.Notify(nil)
	for deadline := time.Now().Add(10 * time.Second); ix.Cursor() < head; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the indexer is at %d, the log at %d", ix.Cursor(), head)
		}
	}
}

// Rules replaced in the source the running indexer reads apply to the
// events still to come; the events already applied keep what the old
// rules decided.
func TestRuleChangeAppliesToTheEventsStillToCome(t *testing.T) {
	store := openStore(t)
	secret, _ := store.Secret(context.Background())
	rules := identity.NewCurrent(nil)
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 100, Rules: rules.Load})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ix.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	appendAll(t, store, "web", batch(
		`{"type":"identify","anonymousId":"a1","traits":{"email":"shared@x.io"}}`,
		`{"type":"identify","anonymousId":"a2","traits":{"email":"shared@x.io"}}`))
	waitApplied(t, store, ix)
	rules.Set(blocking("shared@x.io"))
	appendAll(t, store, "web", batch(`{"type":"identify","anonymousId":"a3","traits":{"email":"shared@x.io"}}`))
	waitApplied(t, store, ix)

	a1 := profileOf(t, store, "anonymous_id:a1")
	if a1 == "" || profileOf(t, store, "anonymous_id:a2") != a1 || profileOf(t, store, "email:shared@x.io") != a1 {
		t.Fatal("before the change the shared e-mail linked a1 and a2")
	}
	if a3 := profileOf(t, store, "anonymous_id:a3"); a3 == "" || a3 == a1 {
		t.Fatalf("after the change the blocked e-mail still linked a3 to a1's profile (%q, %q)", a3, a1)
	}
}

// The attribution the audience engine uses for the events it reads from
// the log finds the profile the indexer applied each event to, when both
// read one source of rules and the rules changed in between; an
// attribution that kept the old rules would not.
func TestAttributionAgreesWithTheIndexerAfterARuleChange(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	secret, _ := store.Secret(ctx)
	rules := identity.NewCurrent(nil)
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 2, Rules: rules.Load})
	step := func() {
		for {
			n, err := ix.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	appendAll(t, store, "web", batch(`{"type":"identify","userId":"u1","traits":{"email":"shared@x.io"}}`))
	step()
	rules.Set(blocking("shared@x.io"))
	appendAll(t, store, "web", batch(
		`{"type":"track","event":"Joined","anonymousId":"a7","context":{"traits":{"email":"shared@x.io"}}}`,
		`{"type":"track","event":"Joined","anonymousId":"a8","userId":"u1"}`,
		`{"type":"track","event":"Joined","anonymousId":"a9","context":{"traits":{"email":"SHARED@x.io"}}}`))
	step()
	msgs, err := store.ReadLog(ctx, 1, 100)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("log: %d events, %v", len(msgs), err)
	}
	want := []string{profileOf(t, store, "anonymous_id:a7"), profileOf(t, store, "user_id:u1"), profileOf(t, store, "anonymous_id:a9")}
	if want[0] == want[1] || want[2] == want[1] {
		t.Fatalf("the indexer linked the blocked e-mail: %v", want)
	}
	got, err := pipeline.NewAttribution(rules.Load, identity.NewKeyer(secret), nil, "test").Owners(ctx, store, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d attributed to %q; the indexer applied it to %q", msgs[i].Seq, got[i], want[i])
		}
	}
	stale, err := pipeline.NewAttribution(identity.NewCurrent(nil).Load, identity.NewKeyer(secret), nil, "test").Owners(ctx, store, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if stale[0] != want[1] {
		t.Fatalf("with the old rules the first event goes to u1's profile %q, not %q: the test shows nothing", want[1], stale[0])
	}
}

// A message whose identifiers cannot be read is warned about and counted,
// once however often it is read, by the indexer and by any other reader.
func TestUndecodableMessageIsWarnedAboutAndCountedOnce(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	secret, _ := store.Secret(ctx)
	appendAll(t, store, "web", batch(`{"type":"identify","userId":"u1"}`))
	bad := kith.Message{SourceID: "web", MessageID: "bad", Type: "identify", UserID: "u2", Timestamp: t0, ReceivedAt: t0, Raw: []byte(`["not","an","object"]`)}
	if _, err := store.Append(ctx, kith.AppendBatch{Events: []kith.Message{bad}}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ix := pipeline.New(store, secret, pipeline.Config{Logger: log})
	if n, err := ix.Step(ctx); n != 2 || err != nil {
		t.Fatalf("step: %d, %v", n, err)
	}
	if ix.Undecodable() != 1 || !strings.Contains(logs.String(), "indexer: message does not decode") || !strings.Contains(logs.String(), "seq=2") {
		t.Fatalf("indexer: %d undecodable, log %q", ix.Undecodable(), logs.String())
	}
	if h := ix.Health(); h.Skipped != 1 {
		t.Errorf("health %+v, want the undecodable event among the skipped (/metrics kith_worker_skipped_total)", h)
	}
	msgs, err := store.ReadLog(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	a := pipeline.NewAttribution(nil, identity.NewKeyer(secret), log, "reader")
	for range 2 {
		owners, err := a.Owners(ctx, store, msgs)
		if err != nil {
			t.Fatal(err)
		}
		if owners[0] != profileOf(t, store, "user_id:u1") || owners[1] != "" {
			t.Fatalf("owners %v", owners)
		}
	}
	if a.Undecodable() != 1 || strings.Count(logs.String(), "reader: message does not decode") != 1 {
		t.Fatalf("read twice: %d undecodable, log %q", a.Undecodable(), logs.String())
	}
}
