package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// openDir opens an embedded store in a fresh directory, for tests that
// reopen or rebuild it.
func openDir(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// rebuild discards the derived state and re-derives it from the log.
func rebuild(t *testing.T, store *sqlite.DB, dir string) *sqlite.DB {
	t.Helper()
	return rebuildWith(t, store, dir, pipeline.Config{BatchSize: 2})
}

// rebuildWith is rebuild with an indexer configured as cfg.
func rebuildWith(t *testing.T, store *sqlite.DB, dir string, cfg pipeline.Config) *sqlite.DB {
	t.Helper()
	store.Close()
	for _, f := range []string{"state.db", "state.db-wal", "state.db-shm"} {
		os.Remove(filepath.Join(dir, f))
	}
	s, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := s.Secret(context.Background())
	stepAll(t, pipeline.New(s, secret, cfg))
	return s
}

func TestLinks(t *testing.T) {
	ctx := context.Background()
	store, dir := openDir(t)
	defer func() { store.Close() }()
	ix := newIndexer(t, store)
	appendAll(t, store, "pos",
		batch(`{"type":"identify","anonymousId":"card-1","traits":{"name":"Ann Smith","email":"ann@x.io"}}`),
		batch(`{"type":"identify","anonymousId":"crm-9","traits":{"name":"Anne Smith","phone":"+31612345678"}}`),
		batch(`{"type":"identify","userId":"u1"}`),
		batch(`{"type":"identify","userId":"u2"}`))
	stepAll(t, ix)
	a, b := profileOf(t, store, "anonymous_id:card-1"), profileOf(t, store, "anonymous_id:crm-9")
	if a == b {
		t.Fatal("fixture: already one profile")
	}

	m, err := ix.LinkNow(ctx, kith.Link{A: a, B: b, Kind: kith.LinkManual, By: "tok_support", Reason: "same customer, confirmed by phone"})
	if err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:crm-9") != profileOf(t, store, "anonymous_id:card-1") {
		t.Fatal("link did not merge")
	}
	if m.IdentType != kith.LinkManual || m.SourceID != "link" || m.Survivor != a || m.Absorbed != b {
		t.Errorf("merge = %+v", m)
	}
	ms, _ := store.Merges(ctx, a)
	if len(ms) != 1 || ms[0].MessageID == "" {
		t.Fatalf("merges = %+v", ms)
	}
	if _, err := ix.LinkNow(ctx, kith.Link{A: a, B: b, Kind: kith.LinkManual}); kith.ErrorCode(err) != kith.ECONFLICT {
		t.Errorf("linking one profile to itself = %v, want ECONFLICT", err)
	}
	// Two user ids: the default limit of one forbids it.
	if _, err := ix.LinkNow(ctx, kith.Link{A: profileOf(t, store, "user_id:u1"), B: profileOf(t, store, "user_id:u2"), Kind: kith.LinkManual}); kith.ErrorCode(err) != kith.ECONFLICT {
		t.Errorf("linking two user ids = %v, want ECONFLICT", err)
	}
	if _, err := ix.LinkNow(ctx, kith.Link{A: a, B: "p_nobody", Kind: kith.LinkManual}); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("linking an unknown profile = %v, want ENOTFOUND", err)
	}

	// Later events see one person; a rebuild from the log applies the link
	// again at the same point.
	appendAll(t, store, "pos", batch(`{"type":"track","anonymousId":"crm-9","event":"Called"}`))
	stepAll(t, ix)
	before := snap(t, store, "anonymous_id:card-1")
	store = rebuild(t, store, dir)
	after := snap(t, store, "anonymous_id:card-1")
	if before.ID != after.ID || len(after.Seqs) != 3 || len(after.Identities) != len(before.Identities) {
		t.Errorf("after rebuild %+v, want %+v", after, before)
	}

	// Undo the link: apart again, and a rebuild keeps them apart.
	ix = newIndexer(t, store)
	ms, _ = store.Merges(ctx, after.ID)
	if _, err := ix.UnmergeNow(ctx, pipeline.Unmerge{Profile: after.ID, MergeID: ms[0].ID, By: "tok_support", Reason: "two Smiths after all"}); err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:crm-9") == profileOf(t, store, "anonymous_id:card-1") {
		t.Fatal("unmerge of a link did not split")
	}
	crm := snap(t, store, "anonymous_id:crm-9")
	if len(crm.Seqs) != 2 {
		t.Errorf("crm-9 side after the split: %+v, want its 2 events", crm)
	}
	store = rebuild(t, store, dir)
	if profileOf(t, store, "anonymous_id:crm-9") == profileOf(t, store, "anonymous_id:card-1") {
		t.Error("a rebuild re-applied an undone link")
	}
}

// A link taken after the cluster's last event holds when the cluster is
// re-derived (here for an unrelated detachment).
func TestLinkSurvivesReDerivation(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","anonymousId":"a1","traits":{"email":"x@x.io"}}`),
		batch(`{"type":"identify","anonymousId":"b1"}`),
		batch(`{"type":"identify","anonymousId":"zz"}`))
	stepAll(t, ix)
	a, b := profileOf(t, store, "anonymous_id:a1"), profileOf(t, store, "anonymous_id:b1")
	if _, err := ix.LinkNow(ctx, kith.Link{A: a, B: b, Kind: kith.LinkManual}); err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:a1") != profileOf(t, store, "anonymous_id:b1") {
		t.Fatal("not linked")
	}
	c := profileOf(t, store, "anonymous_id:a1")
	if _, err := ix.DetachNow(ctx, pipeline.Detach{Profile: c, Identifier: identityOf("email", "x@x.io")}); err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:a1") != profileOf(t, store, "anonymous_id:b1") {
		t.Error("the link was lost when the cluster was re-derived")
	}
}

// A rebuild that dropped its caches still applies a link that names a
// profile absorbed before it, through the store.
func TestRebuildResolvesLinksThroughTheStore(t *testing.T) {
	ctx := context.Background()
	store, dir := openDir(t)
	defer func() { store.Close() }()
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","anonymousId":"a1"}`),
		batch(`{"type":"identify","userId":"u2"}`),
		batch(`{"type":"identify","userId":"u2","anonymousId":"a1"}`),
		batch(`{"type":"identify","anonymousId":"q"}`),
		batch(`{"type":"identify","anonymousId":"d"}`),
		batch(`{"type":"track","anonymousId":"d","event":"x"}`))
	stepAll(t, ix)
	ms, _ := store.Merges(ctx, profileOf(t, store, "user_id:u2"))
	if len(ms) != 1 {
		t.Fatalf("fixture merges: %+v", ms)
	}
	p1 := ms[0].Absorbed
	d := profileOf(t, store, "anonymous_id:d")
	if _, err := ix.LinkNow(ctx, kith.Link{A: p1, B: d, Kind: kith.LinkManual}); err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:d") != profileOf(t, store, "user_id:u2") {
		t.Fatal("the link did not join d to u2's profile")
	}
	store = rebuildWith(t, store, dir, pipeline.Config{BatchSize: 2, MaxCache: 1}) // the cache is dropped after every batch
	if profileOf(t, store, "anonymous_id:d") != profileOf(t, store, "user_id:u2") {
		t.Errorf("rebuild diverges from live state: d -> %s, u2 -> %s", profileOf(t, store, "anonymous_id:d"), profileOf(t, store, "user_id:u2"))
	}
}

func TestDetachedIdentifierStaysDetachedThroughAlias(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","anonymousId":"shared","traits":{"email":"a@x.io"}}`),
		batch(`{"type":"identify","anonymousId":"other","traits":{"email":"a@x.io"}}`))
	stepAll(t, ix)
	p := profileOf(t, store, "anonymous_id:shared")
	if _, err := ix.DetachNow(ctx, pipeline.Detach{Profile: p, Identifier: identityOf("anonymous_id", "shared")}); err != nil {
		t.Fatal(err)
	}
	if profileOf(t, store, "anonymous_id:shared") != "" {
		t.Fatal("still identifies")
	}
	appendAll(t, store, "web", batch(`{"type":"alias","previousId":"shared","userId":"u9"}`))
	stepAll(t, ix)
	if o := profileOf(t, store, "anonymous_id:shared"); o != "" {
		t.Errorf("the detached anonymous id was re-attached by an alias to %s", o)
	}
}

// A detachment recorded without its effect (the process stopped between
// the two) is finished when the indexer next loads.
func TestRepairUnfinishedDetachment(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	appendAll(t, store, "web",
		batch(`{"type":"identify","anonymousId":"dad","traits":{"email":"family@x.io"}}`),
		batch(`{"type":"identify","anonymousId":"kid","traits":{"email":"family@x.io"}}`))
	stepAll(t, newIndexer(t, store))
	if profileOf(t, store, "anonymous_id:dad") != profileOf(t, store, "anonymous_id:kid") {
		t.Fatal("fixture: not joined")
	}
	secret, _ := store.Secret(ctx)
	key := identity.NewKeyer(secret).Key(identityOf("email", "family@x.io"))
	if err := store.SaveDetachment(ctx, kith.Detachment{ID: "d1", Key: key, Type: "email", Profile: profileOf(t, store, "anonymous_id:dad"), At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	stepAll(t, newIndexer(t, store)) // loads, finds the detachment unfinished, re-derives
	if profileOf(t, store, "email:family@x.io") != "" || profileOf(t, store, "anonymous_id:dad") == profileOf(t, store, "anonymous_id:kid") {
		t.Error("the unfinished detachment was not repaired")
	}
}
