package storetest

import (
	"encoding/json"
	"testing"

	"github.com/kithcdp/kith"
)

func testDecisions(t *testing.T, s kith.Store) {
	ctx := t.Context()
	links, err := s.Links(ctx)
	noErr(t, err, "Links")
	if len(links) != 0 {
		t.Errorf("links in an empty store: %+v", links)
	}
	l2 := kith.Link{ID: "link-2", A: "p3", B: "p4", Kind: kith.LinkManual, By: "tok", Reason: "same customer", AtSeq: 20, At: at(2)}
	l1 := kith.Link{ID: "link-1", A: "p1", B: "p2", Kind: kith.LinkProbabilistic, Weight: 21.5, Evidence: json.RawMessage(`{"surname":{"level":"exact","weight":9.1}}`), By: "match", Reason: "auto", AtSeq: 10, At: at(1)}
	noErr(t, s.SaveLink(ctx, l2), "SaveLink")
	noErr(t, s.SaveLink(ctx, l1), "SaveLink")
	noErr(t, s.SaveLink(ctx, l1), "SaveLink again") // idempotent
	links, err = s.Links(ctx)
	noErr(t, err, "Links")
	if len(links) != 2 || links[0].ID != "link-1" || links[1].ID != "link-2" { // AtSeq order
		t.Fatalf("links = %+v", links)
	}
	noErr(t, s.SaveLink(ctx, kith.Link{ID: "link-x", A: "p9", B: "p10", Kind: kith.LinkManual, AtSeq: 30, At: at(3)}), "SaveLink")
	noErr(t, s.DeleteLink(ctx, "link-x"), "DeleteLink")
	if ls, _ := s.Links(ctx); len(ls) != 2 {
		t.Errorf("after DeleteLink: %d links, want 2", len(ls))
	}
	g := links[0]
	if g.A != "p1" || g.B != "p2" || g.Kind != kith.LinkProbabilistic || g.Weight != 21.5 || !jsonEqual(g.Evidence, l1.Evidence) || g.AtSeq != 10 || !sameTime(g.At, at(1)) {
		t.Errorf("link = %+v", g)
	}

	items := []kith.ReviewItem{
		{ID: "r1", A: "p5", B: "p6", Probability: 0.9, Weight: 8, Evidence: json.RawMessage(`{"given_name":{"level":"jw>0.9"}}`), RunID: "m1", CreatedAt: at(3)},
		{ID: "r2", A: "p7", B: "p8", Probability: 0.8, Weight: 6, RunID: "m1", CreatedAt: at(4)},
	}
	n, err := s.AddReviewItems(ctx, items)
	noErr(t, err, "AddReviewItems")
	if n != 2 {
		t.Errorf("added %d, want 2", n)
	}
	// The same pair, in either order, is not queued twice.
	n, err = s.AddReviewItems(ctx, []kith.ReviewItem{{ID: "r3", A: "p6", B: "p5", Probability: 0.95, RunID: "m2", CreatedAt: at(5)}})
	noErr(t, err, "AddReviewItems")
	if n != 0 {
		t.Errorf("a queued pair was queued again")
	}
	list, err := s.ReviewItems(ctx, kith.ReviewPending, 10)
	noErr(t, err, "ReviewItems")
	if len(list) != 2 || list[0].ID != "r2" || list[1].ID != "r1" || list[1].Status != kith.ReviewPending || !jsonEqual(list[1].Evidence, items[0].Evidence) {
		t.Fatalf("pending = %+v", list)
	}
	noErr(t, s.DecideReview(ctx, "r1", kith.ReviewRejected, "tok", "different people", at(6)), "DecideReview")
	if err := s.DecideReview(ctx, "r1", kith.ReviewAccepted, "tok", "", at(7)); kith.ErrorCode(err) != kith.ECONFLICT {
		t.Errorf("deciding twice = %v, want ECONFLICT", err)
	}
	if err := s.DecideReview(ctx, "nope", kith.ReviewAccepted, "tok", "", at(7)); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("deciding an unknown item = %v, want ENOTFOUND", err)
	}
	it, err := s.ReviewItem(ctx, "r1")
	noErr(t, err, "ReviewItem")
	if it.Status != kith.ReviewRejected || it.DecidedBy != "tok" || it.Reason != "different people" || !sameTime(it.DecidedAt, at(6)) {
		t.Errorf("decided item = %+v", it)
	}
	list, err = s.ReviewItems(ctx, kith.ReviewPending, 10)
	noErr(t, err, "ReviewItems")
	if len(list) != 1 || list[0].ID != "r2" {
		t.Errorf("pending after a decision = %+v", list)
	}
	all, err := s.ReviewItems(ctx, "", 1)
	noErr(t, err, "ReviewItems")
	if len(all) != 1 {
		t.Errorf("limit 1 gave %d", len(all))
	}

	r, err := s.IdentityRules(ctx)
	noErr(t, err, "IdentityRules")
	if r != nil {
		t.Errorf("rules in an empty store: %s", r)
	}
	noErr(t, s.SetIdentityRules(ctx, []byte(`{"types":[1]}`)), "SetIdentityRules")
	noErr(t, s.SetIdentityRules(ctx, []byte(`{"types":[2]}`)), "SetIdentityRules again")
	r, err = s.IdentityRules(ctx)
	noErr(t, err, "IdentityRules")
	if string(r) != `{"types":[2]}` {
		t.Errorf("rules = %s", r)
	}

	d := kith.Detachment{ID: "det-1", Key: identKey("email", "family@x.io"), Type: "email", Profile: "p1", By: "tok", Reason: "shared", At: at(8)}
	noErr(t, s.SaveDetachment(ctx, d), "SaveDetachment")
	noErr(t, s.SaveDetachment(ctx, d), "SaveDetachment again")
	ds, err := s.Detachments(ctx)
	noErr(t, err, "Detachments")
	if len(ds) != 1 || ds[0].Key != d.Key || ds[0].Type != "email" || ds[0].Profile != "p1" || ds[0].By != "tok" || !sameTime(ds[0].At, at(8)) {
		t.Errorf("Detachments = %+v", ds)
	}
}
