package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// Changes of the traits a destination subscribes to reach it as identify
// calls with the trait's new value (null when it is gone) and the
// profile's e-mail, about its user id; other traits are skipped
// uncounted; consent applies; the engine tells the audience engine which
// traits to track, paused destinations' included.
func TestTraitChangesSentAsIdentify(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	rc, gated := newReceiver(t, nil), newReceiver(t, nil)
	r.add(`{"type":"identify","userId":"ada","traits":{"email":"ada@example.com"}}`)
	ada := r.profileOf("user_id", "ada")
	d := r.create(kith.Destination{Name: "traits", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config, Traits: []string{"ltv", "churn_risk"}})
	g := r.create(kith.Destination{Name: "gated", Type: kith.DestinationWebhook, Config: webhookTo(gated.URL, "").Config, Traits: []string{"ltv"}, Consent: []string{"Advertising"}})
	r.create(kith.Destination{Name: "paused", Type: kith.DestinationWebhook, Config: webhookTo(gated.URL, "").Config, Traits: []string{"plan"}, Paused: true})
	at := time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC)
	if err := r.store.ApplyAudienceBatch(ctx, kith.AudienceBatch{TraitChanges: []kith.TraitChange{
		{ProfileID: ada, Key: "ltv", Value: json.RawMessage(`310.5`), Provenance: kith.ProvenanceComputed, At: at},
		{ProfileID: ada, Key: "orders", Value: json.RawMessage(`3`), Provenance: kith.ProvenanceComputed, At: at},
		{ProfileID: ada, Key: "churn_risk", Value: json.RawMessage(`null`), Provenance: kith.ProvenancePredicted, At: at.Add(time.Second)},
	}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var tracked []string
	r.engine(activation.Config{TrackTraits: func(keys []string) {
		mu.Lock()
		defer mu.Unlock()
		tracked = keys
	}})
	r.waitDelivered(d, 2)
	waitFor(t, func() string { return fmt.Sprintf("%+v", r.counts(g)) }, func() bool { return r.counts(g).Filtered[activation.FilteredConsent] == 1 })

	var got []string
	for _, req := range rc.requests() {
		var m struct {
			Type, MessageID, UserID string
			Traits                  map[string]any
		}
		if err := json.Unmarshal(req.Body, &m); err != nil {
			t.Fatal(err)
		}
		verify(t, req)
		got = append(got, fmt.Sprintf("%s %s %s %v", m.Type, m.UserID, m.MessageID, m.Traits))
	}
	want := []string{
		"identify ada dlv_" + d.ID + "_t1 map[email:ada@example.com ltv:310.5]",
		"identify ada dlv_" + d.ID + "_t3 map[churn_risk:<nil> email:ada@example.com]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent\n %q\nwant\n %q", got, want)
	}
	if c := r.counts(d); len(c.Filtered) != 0 {
		t.Errorf("the trait it does not subscribe to was counted: %+v", c)
	}
	p, err := r.store.DestinationProgress(ctx, d.ID)
	if err != nil || p.TraitSeq != 3 {
		t.Errorf("progress %+v %v, want trait changes at 3", p, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(tracked, []string{"churn_risk", "ltv", "plan"}) {
		t.Errorf("tracked traits %v, want every destination's, paused too", tracked)
	}
}
