package activation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// A profile's messages keep their order across a restart whichever
// stream each came from: an event waiting for a retry, then an audience
// entry queued behind it (the change stream numbers its changes apart
// from the log), reach the receiver event first after the worker reads
// its retries back from the store.
func TestProfileOrderAcrossStreamsSurvivesRestart(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	var healed atomic.Bool
	rc := newReceiver(t, func(req request) int {
		var m struct{ Type string }
		_ = json.Unmarshal(req.Body, &m)
		if m.Type == "track" && !healed.Load() {
			var ev struct{ Event string }
			_ = json.Unmarshal(req.Body, &ev)
			if ev.Event == "Order Completed" {
				return http.StatusServiceUnavailable
			}
		}
		return http.StatusOK
	})
	// Eleven events first, so the order's log position (11) is above the
	// audience change's (1).
	r.addViews(10, 1)
	r.add(track("ada", "Order Completed", 10))
	ada := r.profileOf("user_id", "ada")
	d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config,
		Events: &kith.EventFilter{Events: []string{"Order Completed"}}, Audiences: []string{"buyers"}})
	e := r.engine(activation.Config{Policy: activation.Policy{Base: time.Hour, Cap: time.Hour}})
	waitFor(t, func() string { return fmtCounts(r.counts(d)) }, func() bool { return r.counts(d).Retrying == 1 })
	if err := r.store.ApplyAudienceBatch(ctx, kith.AudienceBatch{Changes: []kith.MembershipChange{
		{Audience: "buyers", ProfileID: ada, Entered: true, At: time.Now(), Cause: "event"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() string { return fmtCounts(r.counts(d)) }, func() bool { return r.counts(d).Retrying == 2 })
	e.Close()

	healed.Store(true)
	// The restarted engine's clock is past the stored retry's time.
	r.engine(activation.Config{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	r.waitDelivered(d, 2)
	var got []string
	for _, m := range messages(t, rc) {
		if m.Event == "Order Completed" && len(got) > 0 && got[len(got)-1] == "Order Completed" {
			continue // its failed first attempt, then the retry
		}
		got = append(got, m.Event)
	}
	if len(got) != 2 || got[0] != "Order Completed" || got[1] != "Audience Entered" {
		t.Errorf("ada's messages arrived as %q, want the order, then her entry", got)
	}
}
