package activation_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// A replay of the log sends again the events that arrived in a time
// range, those the destination selects, with delivery ids of the
// replay's own (the receiver, deduplicating by webhook-id, takes them)
// and their own messageId; one replay at a time, and a paused
// destination's replay waits for it to resume.
func TestReplayLogRange(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	rc := newReceiver(t, nil)
	d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config,
		Events: &kith.EventFilter{Events: []string{"Viewed"}}})
	// Arrivals one second apart from 09:00:00: u0-0 … u1-5, and a
	// "Bought" at 09:00:06 the filter leaves out.
	r.addViews(6, 2)
	r.add(track("u0", "Bought", 6))
	e := r.engine(activation.Config{})
	r.waitDelivered(d, 6)

	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	sp, err := e.ReplayLog(ctx, d.ID, t0.Add(2*time.Second), t0.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if sp.After != 2 || sp.Through != 7 {
		t.Errorf("span %+v, want after 2 through 7", sp)
	}
	r.waitDelivered(d, 6+4)
	got := messages(t, rc)[6:]
	var ids []string
	for _, m := range got {
		ids = append(ids, m.MessageID)
		if !strings.HasPrefix(m.ID, "dlv_"+d.ID+"_e") || !strings.Contains(m.ID, "_r") {
			t.Errorf("replayed with webhook-id %q, want dlv_<dst>_e<seq>_r<replay>", m.ID)
		}
	}
	if strings.Join(ids, " ") != "u0-2 u1-3 u0-4 u1-5" {
		t.Errorf("replayed %v, want the four Viewed events from 09:00:02", ids)
	}
	p, err := r.store.DestinationProgress(ctx, d.ID)
	if err != nil || p.Replaying() || p.ReplayID != 0 {
		t.Errorf("progress after the replay %+v (%v), want no replay left", p, err)
	}

	// Paused: the replay is stored, a second is refused, and it runs on
	// resumption.
	if _, err := e.SetPaused(ctx, d.Name, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ReplayLog(ctx, d.ID, t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = e.ReplayLog(ctx, d.ID, t0, t0.Add(time.Hour))
	if kith.ErrorCode(err) != kith.ECONFLICT {
		t.Errorf("a second replay: %v, want a conflict", err)
	}
	if _, err := e.ReplayLog(ctx, d.ID, t0, t0); kith.ErrorCode(err) != kith.EINVALID {
		t.Errorf("an empty range: %v, want invalid", err)
	}
	if sp, err := e.ReplayLog(ctx, d.ID, t0.Add(-time.Hour), t0); err != nil || sp.Through != 0 {
		t.Errorf("a range before the log: %+v %v, want nothing to replay", sp, err)
	}
	if _, err := e.SetPaused(ctx, d.Name, false); err != nil {
		t.Fatal(err)
	}
	r.waitDelivered(d, 6+4+1)
	if last := messages(t, rc)[10]; last.MessageID != "u0-0" {
		t.Errorf("after resuming, replayed %q, want u0-0", last.MessageID)
	}
}

// A replay of the log in progress survives a restart during which the
// indexer has not loaded its position yet (its cursor reads 0): it waits,
// and runs once the indexer is there.
func TestReplayWaitsForTheIndexer(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	rc := newReceiver(t, nil)
	r.addViews(6, 2)
	d := kith.Destination{ID: "dst_hook", Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config, Events: every, CreatedAt: time.Now()}
	if err := r.store.CreateDestination(ctx, d, kith.DestinationProgress{LogSeq: 6, ReplayAt: 2, ReplayTo: 6, ReplayID: 7}); err != nil {
		t.Fatal(err)
	}
	var loaded atomic.Bool
	e, err := activation.New(activation.Config{Store: r.store, Attribution: r.attr, Poll: 5 * time.Millisecond,
		Cursor: func() int64 {
			if !loaded.Load() {
				return 0
			}
			return r.ix.Cursor()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.ReplayLog(ctx, d.ID, time.Unix(0, 0), time.Now()); kith.ErrorCode(err) != kith.EUNAVAILABLE {
		t.Errorf("a replay asked before the indexer loaded: %v, want unavailable", err)
	}
	time.Sleep(100 * time.Millisecond) // twenty polls with the cursor at 0
	if p, err := r.store.DestinationProgress(ctx, d.ID); err != nil || !p.Replaying() {
		t.Fatalf("progress %+v (%v): the replay was dropped while the indexer was loading", p, err)
	}
	loaded.Store(true)
	r.waitDelivered(d, 4)
	if got := messages(t, rc); len(got) != 4 || got[0].MessageID != "u0-2" || got[0].ID != "dlv_dst_hook_e3_r7" {
		t.Errorf("replayed %+v, want u0-2 … u1-5 with the replay's ids", got)
	}
}
