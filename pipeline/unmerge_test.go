package pipeline_test

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// snapshot is what a profile looks like from outside.
type snapshot struct {
	ID         string
	Identities []string
	Traits     map[string]string
	Seqs       []int64
}

func snap(t *testing.T, store kith.Store, ref string) snapshot {
	t.Helper()
	ctx := context.Background()
	id := profileOf(t, store, ref)
	if id == "" {
		t.Fatalf("%s has no profile", ref)
	}
	s := snapshot{ID: id, Traits: map[string]string{}}
	ids, err := store.Identities(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ids {
		s.Identities = append(s.Identities, x.Type+":"+x.Value)
	}
	sort.Strings(s.Identities)
	trs, err := store.Traits(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		s.Traits[tr.Key] = string(tr.Value)
	}
	tl, err := store.Timeline(ctx, id, kith.TimelineQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tl {
		s.Seqs = append(s.Seqs, e.Seq)
	}
	slices.Sort(s.Seqs)
	return s
}

func newIndexer(t *testing.T, store kith.Store) *pipeline.Indexer {
	secret, _ := store.Secret(context.Background())
	return pipeline.New(store, secret, pipeline.Config{BatchSize: 2})
}

func stepAll(t *testing.T, ix *pipeline.Indexer) {
	t.Helper()
	for {
		n, err := ix.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func TestMergeThenUnmergeRestoresBothProfiles(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","userId":"u1","traits":{"email":"ann@x.io","name":"Ann"},"timestamp":"2026-04-01T10:00:00Z"}`),              // seq 1
		batch(`{"type":"track","userId":"u1","event":"Viewed","timestamp":"2026-04-01T11:00:00Z"}`),                                           // 2
		batch(`{"type":"identify","anonymousId":"a2","traits":{"email":"bea@x.io","city":"Oslo"},"timestamp":"2026-04-02T10:00:00Z"}`),        // 3
		batch(`{"type":"track","anonymousId":"a2","event":"Order Completed","properties":{"revenue":12},"timestamp":"2026-04-02T11:00:00Z"}`)) // 4
	stepAll(t, ix)
	u1Before, a2Before := snap(t, store, "user_id:u1"), snap(t, store, "anonymous_id:a2")
	if u1Before.ID == a2Before.ID {
		t.Fatal("fixture: the two people start merged")
	}

	// The wrong link, then life goes on on the merged profile.
	appendAll(t, store, "web",
		batch(`{"type":"track","anonymousId":"a2","event":"Typo","context":{"traits":{"email":"ann@x.io"}},"timestamp":"2026-04-03T10:00:00Z"}`), // 5
		batch(`{"type":"track","anonymousId":"a2","event":"After","timestamp":"2026-04-04T10:00:00Z"}`),                                          // 6
		batch(`{"type":"identify","userId":"u1","traits":{"tier":"gold"},"timestamp":"2026-04-05T10:00:00Z"}`))                                   // 7
	stepAll(t, ix)
	merged := profileOf(t, store, "user_id:u1")
	if profileOf(t, store, "anonymous_id:a2") != merged {
		t.Fatal("fixture: the link did not merge")
	}
	ms, err := store.Merges(ctx, merged)
	if err != nil || len(ms) != 1 {
		t.Fatalf("merges = %+v, %v", ms, err)
	}
	// The evidence: the event, and the identifier that reached the
	// absorbed profile.
	if ms[0].MessageID == "" || ms[0].SourceID != "web" || ms[0].IdentType != "anonymous_id" || ms[0].Ident != "a2" {
		t.Errorf("merge evidence = %+v", ms[0])
	}

	res, err := ix.UnmergeNow(ctx, pipeline.Unmerge{Profile: merged, MergeID: ms[0].ID, By: "tok_admin", Reason: "shared e-mail typed by a cashier"})
	if err != nil {
		t.Fatal(err)
	}
	u1After, a2After := snap(t, store, "user_id:u1"), snap(t, store, "anonymous_id:a2")
	if res.Profiles != [2]string{u1After.ID, a2After.ID} && res.Profiles != [2]string{a2After.ID, u1After.ID} {
		t.Errorf("result profiles %v, want %s and %s", res.Profiles, u1After.ID, a2After.ID)
	}
	// Same ids, same identities, same traits as before the merge, plus what
	// each side did since. The linking event goes to one side: the one its
	// strongest identifier (the e-mail) belongs to, a2 dropped as a rule
	// violation drops it.
	if u1After.ID != u1Before.ID || a2After.ID != a2Before.ID {
		t.Errorf("ids after split %s/%s, want the originals %s/%s", u1After.ID, a2After.ID, u1Before.ID, a2Before.ID)
	}
	if !slices.Equal(u1After.Identities, u1Before.Identities) || !slices.Equal(a2After.Identities, a2Before.Identities) {
		t.Errorf("identities after split %v / %v, want %v / %v", u1After.Identities, a2After.Identities, u1Before.Identities, a2Before.Identities)
	}
	wantU1 := map[string]string{"name": `"Ann"`, "email": `"ann@x.io"`, "tier": `"gold"`}
	wantA2 := map[string]string{"city": `"Oslo"`, "email": `"bea@x.io"`}
	if !mapsEqual(u1After.Traits, wantU1) || !mapsEqual(a2After.Traits, wantA2) {
		t.Errorf("traits after split %v / %v, want %v / %v", u1After.Traits, a2After.Traits, wantU1, wantA2)
	}
	if !slices.Equal(u1After.Seqs, []int64{1, 2, 5, 7}) || !slices.Equal(a2After.Seqs, []int64{3, 4, 6}) {
		t.Errorf("timelines after split %v / %v, want [1 2 5 7] / [3 4 6]", u1After.Seqs, a2After.Seqs)
	}
	if ms, _ := store.Merges(ctx, u1After.ID); len(ms) != 0 {
		t.Errorf("merges left: %+v", ms)
	}
	orders := map[string]int{}
	store.ScanOrders(ctx, func(c kith.CustomerOrders) error { orders[c.ProfileID] = len(c.Orders); return nil })
	if orders[a2After.ID] != 1 || orders[u1After.ID] != 0 {
		t.Errorf("orders after split: %v", orders)
	}
	splits, err := store.Splits(ctx)
	if err != nil || len(splits) != 1 || splits[0].By != "tok_admin" || splits[0].Reason == "" || splits[0].Merge.ID != ms[0].ID || res.Split.ID != splits[0].ID {
		t.Errorf("splits = %+v, %v", splits, err)
	}

	// The split is a rule from now on, also for a new indexer (restart).
	appendAll(t, store, "web", batch(`{"type":"track","anonymousId":"a2","event":"Again","context":{"traits":{"email":"ann@x.io"}},"timestamp":"2026-04-06T10:00:00Z"}`)) // 8
	stepAll(t, newIndexer(t, store))
	if profileOf(t, store, "user_id:u1") == profileOf(t, store, "anonymous_id:a2") {
		t.Error("a later event re-merged the split profiles")
	}
	if s := snap(t, store, "user_id:u1"); !slices.Contains(s.Seqs, 8) {
		t.Errorf("event 8 not on the e-mail's side: %v", s.Seqs)
	}

	// Unknown merges are refused.
	if _, err := ix.UnmergeNow(ctx, pipeline.Unmerge{Profile: u1After.ID, MergeID: "m_999"}); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("unknown merge: %v, want ENOTFOUND", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// A rebuild of the derived state from the log (what happens after a power
// cut) applies recorded splits again: the result equals the state the
// unmerge left.
func TestRebuildAppliesSplits(t *testing.T) {
	ctx := context.Background()
	store, dir := openDir(t)
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","userId":"u1","traits":{"email":"ann@x.io"}}`),
		batch(`{"type":"identify","anonymousId":"a2","traits":{"email":"bea@x.io"}}`),
		batch(`{"type":"track","anonymousId":"a2","event":"Link","context":{"traits":{"email":"ann@x.io"}}}`),
		batch(`{"type":"track","anonymousId":"a2","event":"After"}`))
	stepAll(t, ix)
	merged := profileOf(t, store, "user_id:u1")
	ms, _ := store.Merges(ctx, merged)
	if len(ms) != 1 {
		t.Fatalf("fixture merges: %+v", ms)
	}
	if _, err := ix.UnmergeNow(ctx, pipeline.Unmerge{Profile: merged, MergeID: ms[0].ID, By: "tok", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	before := []snapshot{snap(t, store, "user_id:u1"), snap(t, store, "anonymous_id:a2")}
	store = rebuild(t, store, dir)
	defer store.Close()
	after := []snapshot{snap(t, store, "user_id:u1"), snap(t, store, "anonymous_id:a2")}
	for i := range before {
		b, _ := json.Marshal(before[i])
		a, _ := json.Marshal(after[i])
		if string(a) != string(b) {
			t.Errorf("after rebuild %s, want %s", a, b)
		}
	}
}

// Removing the one identifier that joined two people splits them; the
// identifier identifies no one afterwards, also after a rebuild.
func TestDetachIdentifier(t *testing.T) {
	ctx := context.Background()
	store, dir := openDir(t)
	defer func() { store.Close() }()
	ix := newIndexer(t, store)
	appendAll(t, store, "web",
		batch(`{"type":"identify","anonymousId":"dad","traits":{"email":"family@x.io","name":"Tom"}}`), // 1
		batch(`{"type":"identify","anonymousId":"kid","traits":{"email":"family@x.io","name":"Tim"}}`), // 2 joins them
		batch(`{"type":"track","anonymousId":"kid","event":"Game Bought"}`),                            // 3
		batch(`{"type":"identify","anonymousId":"dad","traits":{"email":"tom@x.io"}}`))                 // 4
	stepAll(t, ix)
	joined := profileOf(t, store, "anonymous_id:dad")
	if profileOf(t, store, "anonymous_id:kid") != joined {
		t.Fatal("fixture: the shared e-mail did not join them")
	}
	res, err := ix.DetachNow(ctx, pipeline.Detach{Profile: joined, Identifier: identityOf("email", "family@x.io"), By: "tok", Reason: "family address"})
	if err != nil {
		t.Fatal(err)
	}
	dad, kid := snap(t, store, "anonymous_id:dad"), snap(t, store, "anonymous_id:kid")
	if dad.ID == kid.ID || len(res.Profiles) != 2 {
		t.Fatalf("after detaching: dad %s kid %s, result %v", dad.ID, kid.ID, res.Profiles)
	}
	if profileOf(t, store, "email:family@x.io") != "" {
		t.Error("the detached e-mail still identifies someone")
	}
	if !slices.Equal(dad.Seqs, []int64{1, 4}) || !slices.Equal(kid.Seqs, []int64{2, 3}) {
		t.Errorf("timelines dad %v kid %v, want [1 4] / [2 3]", dad.Seqs, kid.Seqs)
	}
	if dad.Traits["name"] != `"Tom"` || kid.Traits["name"] != `"Tim"` {
		t.Errorf("names dad %v kid %v", dad.Traits, kid.Traits)
	}
	// Later events carrying it link nothing; a rebuild agrees.
	appendAll(t, store, "web", batch(`{"type":"identify","anonymousId":"mum","traits":{"email":"family@x.io"}}`))
	stepAll(t, newIndexer(t, store))
	if profileOf(t, store, "anonymous_id:mum") == dad.ID || profileOf(t, store, "anonymous_id:mum") == kid.ID {
		t.Error("the detached e-mail linked a later event")
	}
	store = rebuild(t, store, dir)
	if profileOf(t, store, "anonymous_id:dad") == profileOf(t, store, "anonymous_id:kid") {
		t.Error("a rebuild re-joined them")
	}
	if _, err := newIndexer(t, store).DetachNow(ctx, pipeline.Detach{Profile: profileOf(t, store, "anonymous_id:dad"), Identifier: identityOf("email", "nobody@x.io")}); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("detaching an identifier the profile lacks = %v, want ENOTFOUND", err)
	}
}

func identityOf(typ, value string) identity.Identifier { return identity.Normalise(typ, value) }
