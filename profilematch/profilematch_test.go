package profilematch

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/match"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// stepLinker links through an indexer driven by Step.
type stepLinker struct{ ix *pipeline.Indexer }

func (l stepLinker) Link(ctx context.Context, k kith.Link) (kith.Merge, error) {
	return l.ix.LinkNow(ctx, k)
}

// TestMatchingRunLinksDuplicateProfiles loads Febrl-style synthetic
// people — each record a CRM or POS contact with its own anonymous id, so
// no identifier links the duplicates — runs matching, and scores the
// resulting profiles against the truth.
func TestMatchingRunLinksDuplicateProfiles(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	recs := match.GenerateSynthetic(match.SyntheticConfig{Records: 3000, HouseholdShare: -1, Seed: 7})
	schema := match.SyntheticSchema()
	col := func(name string) int { return schema.FieldIndex(name) }
	var msgs []kith.Message
	for _, r := range recs {
		f := func(n string) string { return r.Fields[col(n)] }
		traits := map[string]any{"first_name": f("given_name"), "last_name": f("surname"), "birthday": f("date_of_birth"),
			"address": map[string]string{"street": f("street_number") + " " + f("address_1"), "city": f("suburb"), "postal_code": f("postcode")}}
		body, _ := json.Marshal(map[string]any{"type": "identify", "anonymousId": r.ID, "traits": traits})
		p := collect.Parse([]byte(`{"batch":[`+string(body)+`]}`), "batch", collect.Meta{ReceivedAt: time.Now()}, collect.DefaultLimits())
		if len(p.Messages) != 1 {
			t.Fatalf("rejected: %v", p.Rejected)
		}
		m := p.Messages[0]
		m.SourceID = "crm"
		msgs = append(msgs, m)
	}
	if _, err := store.Append(ctx, kith.AppendBatch{Events: msgs}); err != nil {
		t.Fatal(err)
	}
	secret, _ := store.Secret(ctx)
	ix := pipeline.New(store, secret, pipeline.Config{})
	for {
		n, err := ix.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}

	job := &Job{Store: store, Linker: stepLinker{ix}, Config: DefaultConfig()}
	run, err := job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	json.Unmarshal(run.Report, &rep)
	t.Logf("run: %+v", rep)
	if run.Status != kith.RunFinished || rep.Profiles != len(recs) || rep.Linked == 0 {
		t.Fatalf("run %+v", run)
	}

	// Score: record pairs sharing a profile against record pairs sharing
	// an entity.
	keyer := identity.NewKeyer(secret)
	profileOf := map[string]string{}
	for _, r := range recs {
		k := keyer.Key(identity.Normalise(kith.IdentAnonymousID, r.ID))
		o, err := store.LookupIdentifiers(ctx, []kith.IdentKey{k})
		if err != nil {
			t.Fatal(err)
		}
		profileOf[r.ID] = o[k].Canonical
	}
	entity := func(id string) string { return strings.SplitN(strings.TrimPrefix(id, "rec-"), "-", 2)[0] }
	var tp, fp, fn int
	for i, a := range recs {
		for _, b := range recs[i+1:] {
			same, linked := entity(a.ID) == entity(b.ID), profileOf[a.ID] == profileOf[b.ID]
			switch {
			case same && linked:
				tp++
			case linked:
				fp++
			case same:
				fn++
			}
		}
	}
	precision, recall := float64(tp)/float64(tp+fp), float64(tp)/float64(tp+fn)
	t.Logf("profiles: precision %.4f recall %.4f (tp %d fp %d fn %d)", precision, recall, tp, fp, fn)
	if precision < 0.98 || recall < 0.8 {
		t.Errorf("precision %.4f recall %.4f, want ≥ 0.98 and ≥ 0.8", precision, recall)
	}

	// Every link is an explainable, reversible merge: its evidence is the
	// weight breakdown.
	links, _ := store.Links(ctx)
	if len(links) != rep.Linked || len(links[0].Evidence) == 0 || links[0].Kind != kith.LinkProbabilistic {
		t.Errorf("%d links for %d linked: %+v", len(links), rep.Linked, links[0])
	}
	// A second run re-estimates on the merged profiles: it may find a few
	// more, but queues no pair twice.
	run2, err := job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rep2 Report
	json.Unmarshal(run2.Report, &rep2)
	if rep2.Queued != 0 || rep2.Linked > rep.Linked/50 {
		t.Errorf("second run linked %d and queued %d: %+v", rep2.Linked, rep2.Queued, rep2)
	}

	// A new contact for a known person, with a typo and no identifier in
	// common, is linked by the next incremental pass.
	orig := recs[0]
	f := func(n string) string { return orig.Fields[col(n)] }
	typo := f("surname")
	if len(typo) > 3 {
		typo = typo[:2] + typo[3:] // a dropped letter
	}
	body, _ := json.Marshal(map[string]any{"type": "identify", "anonymousId": "new-contact", "traits": map[string]any{
		"first_name": f("given_name"), "last_name": typo, "birthday": f("date_of_birth"),
		"address": map[string]string{"street": f("street_number") + " " + f("address_1"), "city": f("suburb"), "postal_code": f("postcode")}}})
	p := collect.Parse([]byte(`{"batch":[`+string(body)+`]}`), "batch", collect.Meta{ReceivedAt: time.Now()}, collect.DefaultLimits())
	m := p.Messages[0]
	m.SourceID = "pos"
	if _, err := store.Append(ctx, kith.AppendBatch{Events: []kith.Message{m}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Step(ctx); err != nil {
		t.Fatal(err)
	}
	inc, err := job.Incremental(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental: %+v", inc)
	k := keyer.Key(identity.Normalise(kith.IdentAnonymousID, "new-contact"))
	o, _ := store.LookupIdentifiers(ctx, []kith.IdentKey{k})
	k0 := keyer.Key(identity.Normalise(kith.IdentAnonymousID, orig.ID))
	o0, _ := store.LookupIdentifiers(ctx, []kith.IdentKey{k0})
	if inc.Profiles != 1 || (o[k].Canonical != o0[k0].Canonical && inc.Queued == 0) {
		t.Errorf("the new contact was neither linked nor queued: %+v", inc)
	}
	// A second pass has nothing new.
	if again, _ := job.Incremental(ctx); again.Profiles != 0 {
		t.Errorf("second incremental pass saw %d new profiles", again.Profiles)
	}
}
