package storetest

import (
	"fmt"
	"sort"
	"testing"

	"github.com/kithcdp/kith"
)

func testPrivacy(t *testing.T, s kith.Store) {
	ctx := t.Context()
	e := kith.Erasure{ID: "era_1", Status: kith.ErasureAccepted, IdentType: "email", IdentKey: identKey("email", "a@example.com"), Suppress: true, CreatedAt: at(1)}
	noErr(t, s.SaveErasure(ctx, e), "SaveErasure")
	e.Status, e.Counts = kith.ErasureFinished, map[string]int64{"events": 2}
	noErr(t, s.SaveErasure(ctx, e), "SaveErasure update")
	noErr(t, s.SaveErasure(ctx, kith.Erasure{ID: "era_2", Status: kith.ErasureAccepted, IdentType: "user_id", CreatedAt: at(2)}), "SaveErasure")
	got, err := s.Erasure(ctx, "era_1")
	noErr(t, err, "Erasure")
	if got.Status != kith.ErasureFinished || got.IdentKey != e.IdentKey || got.Counts["events"] != 2 || !got.Suppress || !got.CreatedAt.Equal(at(1)) {
		t.Fatalf("Erasure = %+v", got)
	}
	_, err = s.Erasure(ctx, "era_x")
	wantCode(t, err, kith.ENOTFOUND, "Erasure of an unknown id")
	list, err := s.Erasures(ctx, 10)
	noErr(t, err, "Erasures")
	if len(list) != 2 || list[0].ID != "era_2" {
		t.Fatalf("Erasures = %+v, want newest first", list)
	}

	k1, k2 := identKey("email", "a@example.com"), identKey("phone", "+31600000000")
	noErr(t, s.AddSuppressions(ctx, []kith.IdentKey{k1, k2}, at(3)), "AddSuppressions")
	noErr(t, s.AddSuppressions(ctx, []kith.IdentKey{k1}, at(4)), "AddSuppressions again")
	keys, err := s.Suppressions(ctx)
	noErr(t, err, "Suppressions")
	if len(keys) != 2 {
		t.Fatalf("Suppressions = %d keys, want 2", len(keys))
	}

	// Erase one of two profiles: its events, derived rows and decisions go.
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "m1", at(1)), message("s1", "m2", at(2)), message("s1", "m3", at(3))}})
	logged, err := s.ReadLog(ctx, 0, 10)
	noErr(t, err, "ReadLog")
	var res struct{ Seqs []int64 }
	for _, m := range logged {
		res.Seqs = append(res.Seqs, m.Seq)
	}
	a := ident(kith.IdentEmail, "a@example.com", "pa", "s1", "m1", 1, 1)
	b := ident(kith.IdentEmail, "b@example.com", "pb", "s1", "m3", 1, 1)
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 3, Profiles: profiles("pa", "pb"), Identifiers: []kith.IdentifierUpsert{a, b},
		Traits:   []kith.TraitUpsert{trait("pa", "name", `"Ada"`, "s1", "m1", 1), trait("pb", "name", `"Bob"`, "s1", "m3", 1)},
		Timeline: []kith.TimelineEntry{entry("pa", 1, res.Seqs[0], "track", "x"), entry("pa", 2, res.Seqs[1], "track", "x"), entry("pb", 3, res.Seqs[2], "track", "x")}})
	noErr(t, s.SaveDMPAudiences(ctx, []kith.DMPAudience{{Key: a.Key, IDType: "email", Partner: "d", Audience: "x", ExpiresAt: at(1000), ImportedAt: at(1)}}), "SaveDMPAudiences")
	counts, err := s.ErasePeople(ctx, kith.Cluster{Members: []string{"pa"}, Keys: []kith.IdentKey{a.Key}, Seqs: res.Seqs[:2]})
	noErr(t, err, "ErasePeople")
	for k, want := range map[string]int64{"events": 2, "identifiers": 1, "traits": 1, "timeline": 2, "profiles": 1, "third_party_audiences": 1} {
		if counts[k] != want {
			t.Errorf("ErasePeople counts[%s] = %d, want %d (all: %v)", k, counts[k], want, counts)
		}
	}
	left, err := s.EventsBySeq(ctx, res.Seqs)
	noErr(t, err, "EventsBySeq")
	if len(left) != 1 || left[0].MessageID != "m3" {
		t.Fatalf("events left: %+v", left)
	}
	if _, err := s.Canonical(ctx, "pa"); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Fatalf("erased profile still resolves: %v", err)
	}
	if _, err := s.Profile(ctx, "pb"); err != nil {
		t.Fatalf("the other profile: %v", err)
	}
}

func testConsents(t *testing.T, s kith.Store) {
	ctx := t.Context()
	c := func(p, cat string, g bool, m int, seq int64) kith.Consent {
		return kith.Consent{ProfileID: p, Category: cat, Granted: g, At: at(m), SourceID: "s1", MessageID: fmt.Sprintf("m%d", seq), Seq: seq}
	}
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 3, Profiles: profiles("pa", "pb"),
		Consents: []kith.Consent{c("pa", "Advertising", true, 1, 1), c("pa", "Analytics", true, 1, 1), c("pb", "Advertising", false, 2, 2)}})
	got, err := s.Consents(ctx, "pa")
	noErr(t, err, "Consents")
	if len(got) != 2 || got[0].Category != "Advertising" || !got[0].Granted || !got[0].At.Equal(at(1)) || got[0].MessageID != "m1" || got[0].Seq != 1 {
		t.Fatalf("Consents(pa) = %+v", got)
	}
	// After a merge the profile's history holds both members' decisions,
	// oldest first.
	mustApply(t, s, 3, kith.IndexBatch{Cursor: 4, Merges: []kith.Merge{merge("pa", "pb", 4)}})
	got, _ = s.Consents(ctx, "pa")
	if len(got) != 3 || got[2].ProfileID != "pb" || got[2].Granted {
		t.Fatalf("Consents after merge = %+v", got)
	}
	_, err = s.Consents(ctx, "nobody")
	wantCode(t, err, kith.ENOTFOUND, "Consents of an unknown profile")
}

func testFindByName(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("pa", "pb", "pc"), Traits: []kith.TraitUpsert{
		trait("pa", "lastName", `"Mulder"`, "s1", "m1", 1), trait("pa", "firstName", `"Anna"`, "s1", "m1", 1),
		trait("pb", "lastName", `"Muller"`, "s1", "m2", 1), trait("pc", "email", `"mulder@example.com"`, "s1", "m3", 1),
	}})
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: []kith.Merge{merge("pb", "pa", 2)}})
	got, err := s.FindByName(ctx, "Mul", 10)
	noErr(t, err, "FindByName")
	if len(got) != 1 || got[0] != "pb" {
		t.Fatalf("FindByName(Mul) = %v, want the merged profile pb once (an e-mail is not a name)", got)
	}
	if got, _ := s.FindByName(ctx, "Ann", 10); len(got) != 1 || got[0] != "pb" {
		t.Fatalf("FindByName(Ann) = %v", got)
	}
	if got, _ := s.FindByName(ctx, "Mulders", 10); len(got) != 0 {
		t.Fatalf("FindByName(Mulders) = %v", got)
	}
	if got, _ := s.FindByName(ctx, "mul", 10); len(got) != 0 {
		t.Fatalf("FindByName is byte for byte: %v", got)
	}
	// Names are compared decoded: characters HTML-minded encoders escape
	// (Go's encoding/json writes < > & as \u003c \u003e \u0026) match
	// either way, and a value with an escaped NUL is passed over without
	// failing the search.
	mustApply(t, s, 2, kith.IndexBatch{Cursor: 3, Profiles: profiles("pd", "pe", "pf", "pg"), Traits: []kith.TraitUpsert{
		trait("pd", "name", `"<Ann & Co>"`, "s1", "m4", 3), trait("pe", "lastName", `"\u003cAnn \u0026 Sons"`, "s1", "m5", 3),
		trait("pf", "firstName", `"<Ann\u0000"`, "s1", "m6", 3), trait("pg", "firstName", `"Zoë"`, "s1", "m7", 3),
	}})
	got, err = s.FindByName(ctx, "<Ann &", 10)
	noErr(t, err, "FindByName(<Ann &)")
	sort.Strings(got)
	if len(got) != 2 || got[0] != "pd" || got[1] != "pe" {
		t.Fatalf("FindByName(<Ann &) = %v, want pd and pe", got)
	}
	if got, err := s.FindByName(ctx, `Zo\u00eb`, 10); err != nil || len(got) != 0 {
		t.Fatalf("FindByName matched the escape itself: %v %v", got, err)
	}
	if got, err := s.FindByName(ctx, "Zoë", 10); err != nil || len(got) != 1 || got[0] != "pg" {
		t.Fatalf("FindByName(Zoë) = %v %v", got, err)
	}
	if got, err := s.FindByName(ctx, "a\x00", 10); err != nil || len(got) != 0 {
		t.Fatalf("FindByName with a NUL = %v %v, want nothing", got, err)
	}
}
