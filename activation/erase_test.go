package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/privacy"
)

// deletion is a deletion message as a receiver gets it.
type deletion struct {
	ID          string // webhook-id
	Type        string `json:"type"`
	MessageID   string `json:"messageId"`
	UserID      string `json:"userId"`
	AnonymousID string `json:"anonymousId"`
	Context     struct {
		Traits map[string]any `json:"traits"`
	} `json:"context"`
}

// deletions returns the deletion messages a receiver got.
func deletions(t *testing.T, rc *receiver) []deletion {
	t.Helper()
	var out []deletion
	for _, r := range rc.requests() {
		var d deletion
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		if d.Type == "delete" {
			d.ID = r.Header.Get("webhook-id")
			out = append(out, d)
		}
	}
	return out
}

// An erasure sends a deletion to each destination that received the
// person's data, naming them by the userId and anonymousIds it was sent,
// and to no other: not to one whose event filter left them out, nor to
// one their consent kept them from. A destination that still held the
// person's messages for a retry drops them (counted as filtered
// "erased") and sends the deletion instead. The erasure's status lists
// each destination's deletion, pending until it goes through, then sent;
// and the workers go on delivering everyone else's events afterwards.
func TestErasureReachesEachDestinationThatHadThePerson(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	all := newReceiver(t, nil)
	purchases := newReceiver(t, nil)
	consented := newReceiver(t, nil)
	// Refuses ada's events (not her deletion) until the end of the test.
	stuck := newReceiver(t, func(req request) int {
		var m struct{ Type, UserID string }
		_ = json.Unmarshal(req.Body, &m)
		if m.UserID == "ada" && m.Type != "delete" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	dAll := r.hook("all", all.URL)
	dPurchases := r.create(kith.Destination{Name: "purchases", Type: kith.DestinationWebhook, Config: webhookTo(purchases.URL, "").Config,
		Events: &kith.EventFilter{Events: []string{"Order Completed"}}})
	dConsented := r.create(kith.Destination{Name: "consented", Type: kith.DestinationWebhook, Config: webhookTo(consented.URL, "").Config,
		Events: every, Consent: []string{"Marketing"}})
	dStuck := r.hook("stuck", stuck.URL)

	r.add(
		`{"type":"identify","userId":"ada","anonymousId":"anon-1","traits":{"email":"ada@example.com"},"messageId":"ada-0"}`,
		`{"type":"track","event":"Viewed","anonymousId":"anon-2","messageId":"ada-1"}`,
		`{"type":"alias","previousId":"anon-2","userId":"ada","messageId":"ada-2"}`,
		track("ada", "Viewed", 3),
		track("bob", "Viewed", 4),
		`{"type":"track","event":"Order Completed","userId":"bob","messageId":"bob-5","context":{"consent":{"categoryPreferences":{"Marketing":true}}}}`,
	)
	e := r.engine(activation.Config{})
	r.waitDelivered(dAll, 6)
	r.waitDelivered(dPurchases, 1)
	r.waitDelivered(dConsented, 2) // bob consented (consent is read as it is now)
	// bob's two events go through; ada's four wait for a retry.
	waitFor(t, func() string { return "stuck: " + fmtCounts(r.counts(dStuck)) }, func() bool {
		c := r.counts(dStuck)
		return c.Delivered == 2 && c.Retrying == 4
	})

	svc := &privacy.Service{Store: r.store, Indexer: r.ix, Destinations: e, Secret: r.secret,
		Rules: identity.NewCurrent(nil).Load}
	// From here the indexer runs, as in a server: erasure asks it to
	// erase between two batches.
	runCtx, stop := context.WithCancel(ctx)
	indexed := make(chan error, 1)
	go func() { indexed <- r.ix.Run(runCtx) }()
	defer func() { stop(); svc.Wait(); <-indexed }()
	if err := svc.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	req, err := svc.Request(ctx, "user_id:ada", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	var got kith.Erasure
	waitFor(t, func() string { return "erasure " + got.Status }, func() bool {
		got, err = svc.Erasure(ctx, req.ID)
		return err == nil && got.Status == kith.ErasureFinished
	})
	if got.Error != "" {
		t.Fatalf("erasure failed: %s", got.Error)
	}
	var names []string
	for _, ed := range got.Destinations {
		names = append(names, ed.Name)
	}
	if want := []string{"all", "stuck"}; !slices.Equal(names, want) {
		t.Fatalf("erasure destinations = %v, want %v (those that received ada's data)", names, want)
	}

	// Each of the two gets the same deletions: ada's userId with her
	// latest anonymousId, then her other anonymousId, her e-mail along.
	r.waitDelivered(dAll, 6+2)
	r.waitDelivered(dStuck, 2+2)
	for _, rc := range []*receiver{all, stuck} {
		dels := deletions(t, rc)
		if len(dels) != 2 {
			t.Fatalf("%d deletions %+v, want 2", len(dels), dels)
		}
		ids := []string{dels[0].UserID + "/" + dels[0].AnonymousID, dels[1].UserID + "/" + dels[1].AnonymousID}
		if want := []string{"ada/anon-2", "/anon-1"}; !slices.Equal(ids, want) {
			t.Errorf("deletions name %v, want %v (userId/anonymousId)", ids, want)
		}
		for _, d := range dels {
			if d.ID != d.MessageID || d.Context.Traits["email"] != "ada@example.com" {
				t.Errorf("deletion %+v: want its webhook-id as messageId and ada's e-mail in context.traits", d)
			}
		}
	}
	for name, rc := range map[string]*receiver{"purchases": purchases, "consented": consented} {
		if dels := deletions(t, rc); len(dels) != 0 {
			t.Errorf("%s never had ada's data but got deletions %+v", name, dels)
		}
	}
	// The stuck destination dropped ada's four retries.
	c := r.counts(dStuck)
	if c.Retrying != 0 || c.DeadLettered != 0 || c.Filtered[kith.DeliveriesErased] != 4 {
		t.Errorf("stuck after the erasure: %s, want nothing waiting and 4 filtered as erased", fmtCounts(c))
	}
	waitFor(t, func() string { return "deletion status" }, func() bool {
		got, err = svc.Erasure(ctx, req.ID)
		return err == nil && got.Destinations[0].Status == kith.DeletionSent && got.Destinations[1].Status == kith.DeletionSent
	})

	// Everyone else's events flow on.
	r.appendLog(track("bob", "Viewed", 6))
	r.ix.Notify(nil)
	r.waitDelivered(dAll, 6+2+1)
	r.waitDelivered(dStuck, 2+2+1)
}

// fmtCounts shows a destination's counts for failure messages.
func fmtCounts(c kith.DestinationCounts) string {
	b, _ := json.Marshal(c)
	return string(b)
}

// failingForget is the engine with its first Forget failing, as a store
// error would make it.
type failingForget struct {
	*activation.Engine
	calls int
}

func (f *failingForget) Forget(ctx context.Context, erasure, canonical string, profiles []string, person []kith.Identity) ([]kith.ErasureDestination, func(), error) {
	f.calls++
	if f.calls == 1 {
		return nil, func() {}, fmt.Errorf("the store refused")
	}
	return f.Engine.Forget(ctx, erasure, canonical, profiles, person)
}

// An erasure whose destinations step fails fails before the person is
// erased, so that asking again erases them in full: the destination that
// had them drops their retries and gets the deletion.
func TestErasureRetriedAfterDestinationsFailed(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	stuck := newReceiver(t, func(req request) int {
		var m struct{ Type string }
		_ = json.Unmarshal(req.Body, &m)
		if m.Type != "delete" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	d := r.hook("stuck", stuck.URL)
	r.add(track("ada", "Viewed", 1), track("ada", "Viewed", 2))
	e := r.engine(activation.Config{})
	waitFor(t, func() string { return fmtCounts(r.counts(d)) }, func() bool { return r.counts(d).Retrying == 2 })
	dest := &failingForget{Engine: e}
	svc := &privacy.Service{Store: r.store, Indexer: r.ix, Destinations: dest, Secret: r.secret, Rules: identity.NewCurrent(nil).Load}
	runCtx, stop := context.WithCancel(ctx)
	indexed := make(chan error, 1)
	go func() { indexed <- r.ix.Run(runCtx) }()
	defer func() { stop(); svc.Wait(); <-indexed }()
	if err := svc.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	erase := func() kith.Erasure {
		t.Helper()
		req, err := svc.Request(ctx, "user_id:ada", false, "test")
		if err != nil {
			t.Fatal(err)
		}
		var got kith.Erasure
		waitFor(t, func() string { return "erasure " + got.Status }, func() bool {
			got, err = svc.Erasure(ctx, req.ID)
			return err == nil && (got.Status == kith.ErasureFinished || got.Status == kith.ErasureFailed)
		})
		return got
	}
	if got := erase(); got.Status != kith.ErasureFailed || got.Counts["events"] != 0 {
		t.Fatalf("first erasure: %s with counts %v, want failed before anything was erased", got.Status, got.Counts)
	}
	got := erase()
	if got.Status != kith.ErasureFinished || got.Counts["events"] != 2 || len(got.Destinations) != 1 {
		t.Fatalf("second erasure: %s, counts %v, destinations %+v; want finished, 2 events, the stuck destination", got.Status, got.Counts, got.Destinations)
	}
	r.waitDelivered(d, 1) // the deletion
	if c := r.counts(d); c.Retrying != 0 || c.Filtered[kith.DeliveriesErased] != 2 {
		t.Errorf("after the erasure: %s, want ada's two retries dropped as erased", fmtCounts(c))
	}
}
