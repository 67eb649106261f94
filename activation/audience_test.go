package activation_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// Audience entries and exits reach the destinations subscribed to the
// audience: as "Audience Entered"/"Audience Exited" tracks with
// properties.audience_key by default, as an identify with the trait
// <audience_key>: true|false when asked; about the profile's user id (or
// anonymous id) and e-mail; with a message id of their own; consent
// applies to them as to events.
func TestAudienceChanges(t *testing.T) {
	r := newRig(t)
	tracks, identifies, gated := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	r.add(
		`{"type":"identify","userId":"ada","traits":{"email":"ada@example.com"}}`,
		`{"type":"page","name":"Home","anonymousId":"a-9"}`,
	)
	ada, anon := r.profileOf("user_id", "ada"), r.profileOf("anonymous_id", "a-9")
	at := time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC)
	changes := []kith.MembershipChange{
		{Audience: "buyers", ProfileID: ada, Entered: true, At: at, Cause: "event"},
		{Audience: "buyers", ProfileID: anon, Entered: true, At: at.Add(time.Second), Cause: "event"},
		{Audience: "vips", ProfileID: ada, Entered: true, At: at.Add(2 * time.Second), Cause: "event"},
		{Audience: "buyers", ProfileID: ada, Entered: false, At: at.Add(3 * time.Second), Cause: "expiry"},
	}
	if err := r.store.ApplyAudienceBatch(context.Background(), kith.AudienceBatch{Changes: changes}); err != nil {
		t.Fatal(err)
	}
	tr := r.create(kith.Destination{Name: "tracks", Type: kith.DestinationWebhook, Config: webhookTo(tracks.URL, "").Config, Audiences: []string{"buyers"}})
	id := r.create(kith.Destination{Name: "identifies", Type: kith.DestinationWebhook, Config: webhookTo(identifies.URL, "").Config, Audiences: []string{"buyers"}, AudienceAs: kith.AudienceAsIdentify})
	gt := r.create(kith.Destination{Name: "gated", Type: kith.DestinationWebhook, Config: webhookTo(gated.URL, "").Config, Audiences: []string{"buyers"}, Consent: []string{"Marketing"}})
	r.engine(activation.Config{})

	waitFor(t, func() string { return fmt.Sprintf("%+v %+v %+v", r.counts(tr), r.counts(id), r.counts(gt)) }, func() bool {
		return r.counts(tr).Delivered == 3 && r.counts(id).Delivered == 3 && r.counts(gt).Filtered["consent"] == 3
	})
	type message struct {
		Type        string         `json:"type"`
		MessageID   string         `json:"messageId"`
		Event       string         `json:"event"`
		UserID      string         `json:"userId"`
		AnonymousID string         `json:"anonymousId"`
		Properties  map[string]any `json:"properties"`
		Traits      map[string]any `json:"traits"`
		Context     map[string]any `json:"context"`
		Timestamp   string         `json:"timestamp"`
	}
	decode := func(rc *receiver) []message {
		var out []message
		for _, req := range rc.requests() {
			var m message
			if err := json.Unmarshal(req.Body, &m); err != nil {
				t.Fatal(err)
			}
			if req.Header.Get("webhook-id") != m.MessageID {
				t.Errorf("webhook-id %q, messageId %q", req.Header.Get("webhook-id"), m.MessageID)
			}
			verify(t, req)
			out = append(out, m)
		}
		return out
	}
	got := decode(tracks)
	if len(got) != 3 {
		t.Fatalf("tracks: %+v", got)
	}
	email := map[string]any{"traits": map[string]any{"email": "ada@example.com"}}
	wantTracks := []message{
		{Type: "track", MessageID: "dlv_" + tr.ID + "_c1", Event: "Audience Entered", UserID: "ada", Properties: map[string]any{"audience_key": "buyers"}, Context: email, Timestamp: "2026-04-02T10:00:00.000000Z"},
		{Type: "track", MessageID: "dlv_" + tr.ID + "_c2", Event: "Audience Entered", AnonymousID: "a-9", Properties: map[string]any{"audience_key": "buyers"}, Timestamp: "2026-04-02T10:00:01.000000Z"},
		{Type: "track", MessageID: "dlv_" + tr.ID + "_c4", Event: "Audience Exited", UserID: "ada", Properties: map[string]any{"audience_key": "buyers"}, Context: email, Timestamp: "2026-04-02T10:00:03.000000Z"},
	}
	for i, w := range wantTracks {
		if a, b := fmt.Sprintf("%+v", got[i]), fmt.Sprintf("%+v", w); a != b {
			t.Errorf("track %d:\n got %s\nwant %s", i, a, b)
		}
	}
	got = decode(identifies)
	wantTraits := []map[string]any{{"buyers": true, "email": "ada@example.com"}, {"buyers": true}, {"buyers": false, "email": "ada@example.com"}}
	for i, m := range got {
		if m.Type != "identify" || m.Event != "" || fmt.Sprint(m.Traits) != fmt.Sprint(wantTraits[i]) {
			t.Errorf("identify %d: %+v, want traits %v", i, m, wantTraits[i])
		}
	}
	if n := len(gated.requests()); n != 0 {
		t.Errorf("the consent-gated destination got %d requests", n)
	}
	for _, d := range []kith.Destination{tr, id, gt} {
		if c := r.counts(d); c.Filtered["subscription"] != 0 {
			t.Errorf("%s counted the unsubscribed audience: %+v", d.Name, c)
		}
		p, err := r.store.DestinationProgress(context.Background(), d.ID)
		if err != nil || p.ChangeSeq != 4 || p.LogSeq != 2 {
			t.Errorf("%s progress %+v %v", d.Name, p, err)
		}
	}
}

// A destination that subscribes to audiences is first sent every member
// they have (as entries, in pages, each audience in turn), then only
// their changes from the moment it subscribed: Segment's first audience
// sync. A change waits until the members were sent, so it is never
// overtaken by the first sync.
func TestFirstSyncSendsCurrentMembers(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	rc := newReceiver(t, nil)
	r.add(
		`{"type":"identify","userId":"ada"}`,
		`{"type":"identify","userId":"bob"}`,
		`{"type":"page","name":"Home","anonymousId":"a-9"}`,
	)
	ada, bob, anon := r.profileOf("user_id", "ada"), r.profileOf("user_id", "bob"), r.profileOf("anonymous_id", "a-9")
	at := time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC)
	apply := func(chs ...kith.MembershipChange) {
		t.Helper()
		if err := r.store.ApplyAudienceBatch(ctx, kith.AudienceBatch{Changes: chs}); err != nil {
			t.Fatal(err)
		}
	}
	apply(
		kith.MembershipChange{Audience: "buyers", ProfileID: ada, Entered: true, At: at, Cause: "event"},
		kith.MembershipChange{Audience: "buyers", ProfileID: bob, Entered: true, At: at, Cause: "event"},
		kith.MembershipChange{Audience: "buyers", ProfileID: anon, Entered: true, At: at, Cause: "event"},
		kith.MembershipChange{Audience: "buyers", ProfileID: bob, Entered: false, At: at, Cause: "event"},
		kith.MembershipChange{Audience: "vips", ProfileID: bob, Entered: true, At: at, Cause: "event"},
		kith.MembershipChange{Audience: "others", ProfileID: ada, Entered: true, At: at, Cause: "event"},
	)
	d := kith.Destination{ID: "dst_sync", Name: "sync", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config,
		Audiences: []string{"buyers", "vips", "nobody"}, CreatedAt: at}
	if err := activation.Validate(d); err != nil {
		t.Fatal(err)
	}
	// Subscribed after the six changes, as the API would: at the stream's
	// end, with the first sync to do.
	if err := r.store.CreateDestination(ctx, d, kith.DestinationProgress{LogSeq: 3, ChangeSeq: 6, Sync: 1}); err != nil {
		t.Fatal(err)
	}
	// bob enters buyers again after the subscription and before the
	// first sync reads buyers: he is among its members, and his change is
	// sent after them (twice announced: at least once, never overtaken).
	apply(kith.MembershipChange{Audience: "buyers", ProfileID: bob, Entered: true, At: at.Add(time.Minute), Cause: "event"})
	r.engine(activation.Config{BatchSize: 1}) // a page per member

	waitFor(t, func() string { return fmt.Sprintf("%+v", r.counts(d)) }, func() bool { return r.counts(d).Delivered == 5 })
	var got []string
	for _, req := range rc.requests() {
		var m struct {
			MessageID, UserID, AnonymousID, Event string
			Properties                            struct {
				AudienceKey string `json:"audience_key"`
			}
		}
		if err := json.Unmarshal(req.Body, &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s%s %s %s", m.Properties.AudienceKey, m.UserID, m.AnonymousID, m.Event, m.MessageID))
	}
	want := []string{
		"buyers ada Audience Entered dlv_dst_sync_s1_" + digest(ada),
		"buyers bob Audience Entered dlv_dst_sync_s1_" + digest(bob),
		"buyers a-9 Audience Entered dlv_dst_sync_s1_" + digest(anon),
		"vips bob Audience Entered dlv_dst_sync_s2_" + digest(bob),
		"buyers bob Audience Entered dlv_dst_sync_c7",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent\n %q\nwant\n %q", got, want)
	}
	p, err := r.store.DestinationProgress(ctx, d.ID)
	if err != nil || p != (kith.DestinationProgress{LogSeq: 3, ChangeSeq: 7}) {
		t.Errorf("progress after the first sync = %+v (%v), want changes at 7 and no sync left", p, err)
	}
}

// digest is how delivery ids name a profile: the first 6 bytes of its
// id's SHA-256, in hex.
func digest(profile string) string {
	h := sha256.Sum256([]byte(profile))
	return hex.EncodeToString(h[:6])
}

// A first sync whose position names a member the member list no longer
// has (gone from every audience, or erased) starts that audience again
// rather than failing for ever.
func TestFirstSyncPositionGone(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	rc := newReceiver(t, nil)
	r.add(`{"type":"identify","userId":"ada"}`)
	ada := r.profileOf("user_id", "ada")
	if err := r.store.ApplyAudienceBatch(ctx, kith.AudienceBatch{Changes: []kith.MembershipChange{
		{Audience: "buyers", ProfileID: ada, Entered: true, At: time.Now(), Cause: "event"}}}); err != nil {
		t.Fatal(err)
	}
	d := kith.Destination{ID: "dst_s", Name: "s", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config,
		Audiences: []string{"buyers"}, CreatedAt: time.Now()}
	if err := r.store.CreateDestination(ctx, d, kith.DestinationProgress{LogSeq: 1, ChangeSeq: 1, Sync: 1, SyncAfter: "p_gone"}); err != nil {
		t.Fatal(err)
	}
	r.engine(activation.Config{})
	r.waitDelivered(d, 1)
	if p, err := r.store.DestinationProgress(ctx, d.ID); err != nil || p.Sync != 0 {
		t.Errorf("progress %+v %v, want the sync done", p, err)
	}
}
