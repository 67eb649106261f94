package audience

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
)

// A backfill whose definitions already backfilled do not compile fails
// loudly — the pending definition's backfill is failed with the error, in
// memory and in the store, and logged — instead of taking them for none
// and folding every event again into the aggregates the states hold.
// Nothing the API accepts makes such a set (the engine compiles every
// change whole), so the test puts one in the engine's definitions itself.
func TestBackfillFailsWhenTheBackfilledDefinitionsDoNotCompile(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logs bytes.Buffer
	e := NewEngine(db, Config{FlushEvery: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Put(ctx, kith.Definition{Kind: kith.KindAudience, Key: "a", Text: `count(event "X") >= 1`}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.defs = append(e.defs, kith.Definition{Kind: kith.KindComputedTrait, Key: "broken", Condition: json.RawMessage(`{"fn":"median","event":"X"}`),
		Backfill: kith.Backfill{State: kith.BackfillDone}})
	e.mu.Unlock()

	if _, err := e.Step(ctx); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("step: %v, want the compile error naming the definition", err)
	}
	d, err := e.Definition(kith.KindAudience, "a")
	if err != nil || d.Backfill.State != kith.BackfillFailed || !strings.Contains(d.Backfill.Error, `computed trait "broken"`) {
		t.Fatalf("backfill in memory %+v, %v", d.Backfill, err)
	}
	stored, err := db.Definitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stored {
		if s.Key == "a" && (s.Backfill.State != kith.BackfillFailed || s.Backfill.Error != d.Backfill.Error) {
			t.Fatalf("backfill stored %+v", s.Backfill)
		}
	}
	if !strings.Contains(logs.String(), "backfill failed") || !strings.Contains(logs.String(), "audience a") || !strings.Contains(logs.String(), "broken") {
		t.Fatalf("not logged: %q", logs.String())
	}
}
