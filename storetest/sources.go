package storetest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// checkSources compares sources as a set ordered by ID.
func checkSources(t *testing.T, got, want []kith.Source) {
	t.Helper()
	byID := func(a, b kith.Source) int { return cmp.Compare(a.ID, b.ID) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	if len(got) != len(want) {
		t.Fatalf("got %d sources %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Name != w.Name || g.Disabled != w.Disabled || !bytes.Equal(g.KeyHash, w.KeyHash) || !sameTime(g.CreatedAt, w.CreatedAt) {
			t.Errorf("source %d = %+v (KeyHash %x), want %+v (KeyHash %x), CreatedAt in UTC", i, g, g.KeyHash, w, w.KeyHash)
		}
	}
}

// checkToken compares two tokens field by field.
func checkToken(t *testing.T, got, want kith.Token) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || !slices.Equal(got.Scopes, want.Scopes) ||
		!bytes.Equal(got.Hash, want.Hash) || !sameTime(got.CreatedAt, want.CreatedAt) {
		t.Errorf("token = %+v (Hash %x), want %+v (Hash %x), CreatedAt in UTC", got, got.Hash, want, want.Hash)
	}
}

// testSources checks creating, listing, finding by key hash and disabling
// sources.
func testSources(t *testing.T, s kith.Store) {
	ctx := t.Context()
	got, err := s.Sources(ctx)
	noErr(t, err, "Sources")
	if len(got) != 0 {
		t.Fatalf("fresh store has sources %+v", got)
	}
	shop := kith.Source{ID: "src_shop", Name: "Webshop", CreatedAt: base, KeyHash: sha("write-key-1")}
	pos := kith.Source{ID: "src_pos", Name: "Kasse Köln", Disabled: true, CreatedAt: at(5).In(time.FixedZone("CET", 3600)), KeyHash: sha("write-key-2")}
	noErr(t, s.CreateSource(ctx, shop), "CreateSource")
	noErr(t, s.CreateSource(ctx, pos), "CreateSource")
	got, err = s.Sources(ctx)
	noErr(t, err, "Sources")
	checkSources(t, got, []kith.Source{shop, pos})

	// The collector finds a source by the hash of the presented write key.
	var found *kith.Source
	for i := range got {
		if bytes.Equal(got[i].KeyHash, sha("write-key-2")) {
			found = &got[i]
		}
	}
	if found == nil || found.ID != pos.ID {
		t.Errorf("no source with the KeyHash of write-key-2, want %s", pos.ID)
	}

	// An id is created once: a second create must not overwrite silently.
	dup := kith.Source{ID: shop.ID, Name: "Impostor", CreatedAt: at(9), KeyHash: sha("write-key-3")}
	if err := s.CreateSource(ctx, dup); err == nil {
		t.Errorf("CreateSource with an existing id succeeded")
	}

	noErr(t, s.SetSourceDisabled(ctx, shop.ID, true), "SetSourceDisabled")
	noErr(t, s.SetSourceDisabled(ctx, pos.ID, false), "SetSourceDisabled")
	noErr(t, s.SetSourceDisabled(ctx, pos.ID, false), "SetSourceDisabled again")
	shop.Disabled, pos.Disabled = true, false
	got, err = s.Sources(ctx)
	noErr(t, err, "Sources")
	checkSources(t, got, []kith.Source{shop, pos})

	wantCode(t, s.SetSourceDisabled(ctx, "src_nope", true), kith.ENOTFOUND, "SetSourceDisabled of an unknown source")
}

// testTokens checks admin tokens: lookup by hash, scopes in order, and
// ENOTFOUND for an unknown hash.
func testTokens(t *testing.T, s kith.Store) {
	ctx := t.Context()
	_, err := s.TokenByHash(ctx, sha("nothing yet"))
	wantCode(t, err, kith.ENOTFOUND, "TokenByHash on a fresh store")

	tokens := []kith.Token{
		{ID: "tok_admin", Name: "admin", Scopes: []string{kith.ScopeAll}, CreatedAt: base, Hash: sha("secret-1")},
		{ID: "tok_read", Name: "dashboards", Scopes: []string{kith.ScopeStatsRead, kith.ScopeSourcesRead, kith.ScopeProfilesRead}, CreatedAt: at(1).In(time.FixedZone("X", -3600)), Hash: sha("secret-2")},
		{ID: "tok_none", Name: "no scopes", CreatedAt: at(2), Hash: sha("secret-3")},
	}
	for _, tok := range tokens {
		noErr(t, s.CreateToken(ctx, tok), "CreateToken")
	}
	for i, tok := range tokens {
		got, err := s.TokenByHash(ctx, sha(fmt.Sprintf("secret-%d", i+1)))
		noErr(t, err, "TokenByHash")
		if len(tok.Scopes) == 0 && len(got.Scopes) == 0 {
			got.Scopes = nil // nil and empty are the same grant
		}
		checkToken(t, got, tok)
	}
	got, err := s.TokenByHash(ctx, sha("secret-2"))
	noErr(t, err, "TokenByHash")
	if !got.HasScope(kith.ScopeProfilesRead) || got.HasScope(kith.ScopeSourcesWrite) {
		t.Errorf("scopes %v did not survive as granted", got.Scopes)
	}
	_, err = s.TokenByHash(ctx, sha("secret-4"))
	wantCode(t, err, kith.ENOTFOUND, "TokenByHash of an unknown hash")

	list, err := s.Tokens(ctx)
	noErr(t, err, "Tokens")
	if len(list) != 3 || list[0].ID != "tok_admin" || list[1].ID != "tok_read" || list[2].ID != "tok_none" {
		t.Fatalf("Tokens = %+v, want the three, oldest first", list)
	}
	noErr(t, s.RevokeToken(ctx, "tok_read"), "RevokeToken")
	_, err = s.TokenByHash(ctx, sha("secret-2"))
	wantCode(t, err, kith.ENOTFOUND, "TokenByHash of a revoked token")
	wantCode(t, s.RevokeToken(ctx, "tok_read"), kith.ENOTFOUND, "RevokeToken twice")
	if list, _ := s.Tokens(ctx); len(list) != 2 {
		t.Fatalf("after revoking: %+v", list)
	}
}

// testSecret checks that the installation secret is created once, even by
// concurrent first callers, and is long enough to key a hash.
func testSecret(t *testing.T, s kith.Store) {
	const callers = 8
	secrets := make([][]byte, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { secrets[i], errs[i] = s.Secret(t.Context()) })
	}
	wg.Wait()
	for i := range callers {
		noErr(t, errs[i], "Secret")
		if !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("concurrent first calls of Secret returned different secrets")
		}
	}
	if len(secrets[0]) < 16 {
		t.Fatalf("Secret is %d bytes, want at least 16", len(secrets[0]))
	}
	if bytes.Equal(secrets[0], make([]byte, len(secrets[0]))) {
		t.Fatalf("Secret is all zero bytes")
	}
	again, err := s.Secret(t.Context())
	noErr(t, err, "Secret")
	if !bytes.Equal(again, secrets[0]) {
		t.Errorf("Secret changed between calls")
	}
}

// testClosedStore checks that a closed store fails loudly rather than
// panicking, hanging, or claiming success.
func testClosedStore(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "before", at(0))}})
	noErr(t, s.Close(), "Close")
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Append", func() error {
			_, err := s.Append(ctx, kith.AppendBatch{Events: []kith.Message{message("s1", "after", at(1))}})
			return err
		}},
		{"ReadLog", func() error { _, err := s.ReadLog(ctx, 0, 10); return err }},
		{"LogHead", func() error { _, err := s.LogHead(ctx); return err }},
		{"Counts", func() error { _, err := s.Counts(ctx); return err }},
		{"ApplyIndexBatch", func() error {
			return s.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("p1")})
		}},
		{"Sources", func() error { _, err := s.Sources(ctx); return err }},
	}
	for _, c := range calls {
		err := callWithin(func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%w: %v", errPanicked, r)
				}
			}()
			return c.fn()
		})
		switch {
		case err == nil:
			t.Errorf("%s after Close returned no error", c.name)
		case err == errClosedCheck, isPanic(err):
			t.Errorf("%s after Close: %v", c.name, err)
		}
	}
}

// testReopen writes every kind of state, closes the store, opens it again
// and checks that all of it survived, including the dedup window.
func testReopen(t *testing.T, open func(t *testing.T) (kith.Store, func() kith.Store)) {
	s, reopen := open(t)
	closer := &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	ctx := t.Context()

	mustAppend(t, s, kith.AppendBatch{
		Events:   []kith.Message{message("s1", "m1", at(0)), message("s1", "m2", at(1)), message("s2", "m1", at(2))},
		Rejected: map[string]map[string]int64{"s1": {kith.ReasonInvalidJSON: 2}},
	})
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "m2", at(3))}})
	source := kith.Source{ID: "src_1", Name: "Webshop", CreatedAt: base, KeyHash: sha("wk")}
	noErr(t, s.CreateSource(ctx, source), "CreateSource")
	noErr(t, s.SetSourceDisabled(ctx, source.ID, true), "SetSourceDisabled")
	source.Disabled = true
	token := kith.Token{ID: "tok_1", Name: "admin", Scopes: []string{kith.ScopeSourcesRead, kith.ScopeStatsRead}, CreatedAt: at(1), Hash: sha("tok")}
	noErr(t, s.CreateToken(ctx, token), "CreateToken")
	secret, err := s.Secret(ctx)
	noErr(t, err, "Secret")
	head, err := s.LogHead(ctx)
	noErr(t, err, "LogHead")
	idA := ident(kith.IdentEmail, "a@example.com", "pa", "s1", "m1", 0, 0)
	idB := ident(kith.IdentUserID, "b", "pb", "s1", "m2", 1, 1)
	color := trait("pa", "color", `"red"`, "s1", "m1", 0)
	timeline := []kith.TimelineEntry{entry("pb", 1, 2, "track", "Viewed m2"), entry("pa", 0, 1, "track", "Viewed m1")}
	mg := merge("pa", "pb", 1)
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:      head,
		Profiles:    profiles("pa", "pb"),
		Identifiers: []kith.IdentifierUpsert{idA, idB},
		Merges:      []kith.Merge{mg},
		Traits:      []kith.TraitUpsert{color},
		Timeline:    timeline,
		Processed:   map[string]int64{"s1": 2, "s2": 1},
	})
	log := readAll(t, s)
	counts := mustCounts(t, s)
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)

	got := readAll(t, s)
	checkMessages(t, got, log)
	for i := range min(len(got), len(log)) {
		if got[i].Seq != log[i].Seq {
			t.Errorf("event %d has Seq %d after reopen, was %d", i, got[i].Seq, log[i].Seq)
		}
	}
	h, err := s.LogHead(ctx)
	noErr(t, err, "LogHead")
	if h != head {
		t.Errorf("LogHead after reopen = %d, want %d", h, head)
	}
	checkCounts(t, mustCounts(t, s), counts)
	checkCounts(t, counts, map[string]kith.Counts{
		"s1": {Received: 5, Accepted: 2, Duplicate: 1, Rejected: map[string]int64{kith.ReasonInvalidJSON: 2}, Processed: 2},
		"s2": {Received: 1, Accepted: 1, Processed: 1},
	})
	sources, err := s.Sources(ctx)
	noErr(t, err, "Sources")
	checkSources(t, sources, []kith.Source{source})
	tok, err := s.TokenByHash(ctx, sha("tok"))
	noErr(t, err, "TokenByHash")
	checkToken(t, tok, token)
	again, err := s.Secret(ctx)
	noErr(t, err, "Secret")
	if !bytes.Equal(again, secret) {
		t.Errorf("Secret changed across reopen")
	}
	cur, err := s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != head {
		t.Errorf("IndexCursor after reopen = %d, want %d", cur, head)
	}
	checkCanonical(t, s, map[string]string{"pa": "pa", "pb": "pa"})
	owners, err := s.LookupIdentifiers(ctx, []kith.IdentKey{idA.Key, idB.Key})
	noErr(t, err, "LookupIdentifiers")
	if owners[idB.Key] != (kith.IdentOwner{ProfileID: "pb", Canonical: "pa"}) || owners[idA.Key] != (kith.IdentOwner{ProfileID: "pa", Canonical: "pa"}) {
		t.Errorf("owners after reopen = %+v", owners)
	}
	traits, err := s.Traits(ctx, "pa")
	noErr(t, err, "Traits")
	checkTraits(t, traits, []kith.TraitUpsert{color})
	merges, err := s.Merges(ctx, "pa")
	noErr(t, err, "Merges")
	checkMerges(t, merges, []kith.Merge{mg})
	tl, err := s.Timeline(ctx, "pa", kith.TimelineQuery{Limit: 10})
	noErr(t, err, "Timeline")
	checkTimeline(t, tl, timeline)

	// Dedup survived; new events continue above the old head.
	res := mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "m1", at(5)), message("s2", "m1", at(5)), message("s1", "m4", at(5))}})
	if !slices.Equal(res.Duplicate, []bool{true, true, false}) {
		t.Errorf("Duplicate after reopen = %v, want [true true false]", res.Duplicate)
	}
	after, err := s.ReadLog(ctx, head, 10)
	noErr(t, err, "ReadLog")
	if len(after) != 1 || after[0].MessageID != "m4" || after[0].Seq <= head {
		t.Errorf("events after the old head = %v, want m4 with Seq > %d", ids(after), head)
	}
	closer.close()

	// Counters written after a reopen persist too.
	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 7, Accepted: 3, Duplicate: 2, Rejected: map[string]int64{kith.ReasonInvalidJSON: 2}, Processed: 2},
		"s2": {Received: 2, Accepted: 1, Duplicate: 1, Processed: 1},
	})
	again, err = s.Secret(ctx)
	noErr(t, err, "Secret")
	if !bytes.Equal(again, secret) {
		t.Errorf("Secret changed across a second reopen")
	}
}

// testPruneDedupReopen checks that the dedup window is pruned durably and
// that pruning works on a reopened store.
func testPruneDedupReopen(t *testing.T, open func(t *testing.T) (kith.Store, func() kith.Store)) {
	s, reopen := open(t)
	closer := &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := message("s1", "old", now.Add(-48*time.Hour))
	old.ReceivedAt = now.Add(-48 * time.Hour)
	recent := message("s1", "recent", now.Add(-time.Hour))
	recent.ReceivedAt = now.Add(-time.Hour)
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{old, recent}})
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	noErr(t, s.PruneDedup(t.Context(), now.Add(-24*time.Hour)), "PruneDedup")
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	res := mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "old", now), message("s1", "recent", now)}})
	if !slices.Equal(res.Duplicate, []bool{false, true}) {
		t.Errorf("Duplicate after pruning and reopening = %v, want [false true]", res.Duplicate)
	}
}

// storeCloser closes a store once, from the test body or from a cleanup.
type storeCloser struct {
	t      *testing.T
	s      kith.Store
	closed bool
}

func (c *storeCloser) close() {
	if c.closed {
		return
	}
	c.closed = true
	if err := c.s.Close(); err != nil {
		c.t.Errorf("Close: %v", err)
	}
}
