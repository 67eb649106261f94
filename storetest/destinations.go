package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// webhook returns a destination fixture with every setting filled in. Its
// config has the whitespace and key order of a hand-written document, so
// that a store that re-encodes it shows up.
func webhook(id, name string) kith.Destination {
	return kith.Destination{
		ID:         id,
		Name:       name,
		Type:       kith.DestinationWebhook,
		Config:     json.RawMessage(`{"url": "https://hooks.example.com/kith",  "secret":"whsec_c2VjcmV0", "headers": {"X-B":"2","X-A":"1"}}`),
		Events:     &kith.EventFilter{Types: []string{"track", "identify"}, Events: []string{"Order Completed"}, Sources: []string{"src_shop"}},
		Audiences:  []string{"vip", "churn_risk"},
		AudienceAs: kith.AudienceAsIdentify,
		Traits:     []string{"ltv", "churn_risk"},
		Consent:    []string{"Advertising", "Analytics"},
		Mapping: &kith.Mapping{Drop: []string{"context.ip"}, Rename: map[string]string{"userId": "customer_id"},
			Set: map[string]json.RawMessage{"meta.v": json.RawMessage(`{"n":12345678901234567890}`), "meta.big": json.RawMessage(`1e400`), "meta.nul": json.RawMessage(`"a\u0000b"`)}, Traits: map[string]string{"meta.plan": "plan"}},
		RateLimit: 12.5,
		CreatedAt: at(1).In(time.FixedZone("CET", 3600)),
	}
}

// checkDestination fails the test unless got is want, its config byte for
// byte and its CreatedAt the same instant in UTC.
func checkDestination(t *testing.T, got, want kith.Destination) {
	t.Helper()
	if !bytes.Equal(got.Config, want.Config) {
		t.Errorf("destination %q: Config = %q, want %q as given", want.Name, got.Config, want.Config)
	}
	checkTime(t, fmt.Sprintf("destination %q: CreatedAt", want.Name), got.CreatedAt, want.CreatedAt)
	g, w := got, want
	g.Config, w.Config, g.CreatedAt, w.CreatedAt = nil, nil, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("destination = %+v (events %+v), want %+v (events %+v)", g, g.Events, w, w.Events)
	}
}

// checkDestinations fails the test unless got lists want, in that order.
func checkDestinations(t *testing.T, got []kith.Destination, want ...kith.Destination) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Destinations = %d %+v, want %d", len(got), got, len(want))
	}
	for i := range got {
		checkDestination(t, got[i], want[i])
	}
}

// delivery returns a delivery fixture for destination dest.
func delivery(dest, id, key string, seq int64, dead bool) kith.Delivery {
	return kith.Delivery{
		ID:          id,
		Destination: dest,
		Key:         key,
		Seq:         seq,
		Kind:        "event",
		Body:        json.RawMessage(fmt.Sprintf(`{"type":"track","messageId":%q,"userId":%q}`, id, key)),
		Attempts:    1,
		FirstAt:     at(int(seq)),
		NextAt:      at(int(seq) + 1),
		LastStatus:  503,
		LastError:   "503 Service Unavailable",
		Dead:        dead,
	}
}

// deliveryDiff describes how got differs from want ("" when it does not):
// times the same instant in UTC, the body byte for byte.
func deliveryDiff(got, want kith.Delivery) string {
	if !sameTime(got.FirstAt, want.FirstAt) || !sameTime(got.NextAt, want.NextAt) {
		return fmt.Sprintf("times %v/%v, want %v/%v in UTC", got.FirstAt, got.NextAt, want.FirstAt, want.NextAt)
	}
	if !bytes.Equal(got.Body, want.Body) {
		return fmt.Sprintf("body %q, want %q", got.Body, want.Body)
	}
	g, w := got, want
	g.FirstAt, g.NextAt, g.Body, w.FirstAt, w.NextAt, w.Body = time.Time{}, time.Time{}, nil, time.Time{}, time.Time{}, nil
	if !reflect.DeepEqual(g, w) {
		return fmt.Sprintf("%s, want %s", fmtDelivery(g), fmtDelivery(w))
	}
	return ""
}

// fmtDelivery shows a delivery's fields other than its times and body,
// its text quoted.
func fmtDelivery(d kith.Delivery) string {
	return fmt.Sprintf("{ID:%q Destination:%q Key:%q Seq:%d Kind:%q Attempts:%d LastStatus:%d LastError:%q Dead:%v}",
		d.ID, d.Destination, d.Key, d.Seq, d.Kind, d.Attempts, d.LastStatus, d.LastError, d.Dead)
}

// checkDeliveries fails the test unless got is want, in order.
func checkDeliveries(t *testing.T, what string, got []kith.Delivery, want ...kith.Delivery) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d deliveries %v, want %d %v", what, len(got), deliveryIDs(got), len(want), deliveryIDs(want))
	}
	for i := range got {
		if d := deliveryDiff(got[i], want[i]); d != "" {
			t.Errorf("%s: delivery %d (%s): %s", what, i, want[i].ID, d)
		}
	}
}

// deliveryIDs lists the IDs of ds for failure messages.
func deliveryIDs(ds []kith.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// destinationState is everything the store holds for one destination
// beside its settings, as the interface shows it.
type destinationState struct {
	progress        kith.DestinationProgress
	retrying, dead  []kith.Delivery
	counts          kith.DestinationCounts
	countsPresent   bool
	pendingInKeySeq []kith.Delivery
}

// readDestinationState reads a destination's progress (if it exists),
// deliveries and counts.
func readDestinationState(t *testing.T, s kith.Store, id string) destinationState {
	t.Helper()
	ctx := t.Context()
	var st destinationState
	p, err := s.DestinationProgress(ctx, id)
	if kith.ErrorCode(err) != kith.ENOTFOUND {
		noErr(t, err, "DestinationProgress")
	}
	st.progress = p
	st.retrying, err = s.Deliveries(ctx, id, false, "", 1000)
	noErr(t, err, "Deliveries retrying")
	st.dead, err = s.Deliveries(ctx, id, true, "", 1000)
	noErr(t, err, "Deliveries dead")
	st.pendingInKeySeq, err = s.PendingDeliveries(ctx, id)
	noErr(t, err, "PendingDeliveries")
	all, err := s.DestinationCounts(ctx)
	noErr(t, err, "DestinationCounts")
	st.counts, st.countsPresent = all[id]
	return st
}

// checkDestinationState fails the test unless the store holds want for
// destination id: its progress, its retrying and dead deliveries (by ID,
// and the retrying ones by key and seq), and its counts, whose Retrying
// and DeadLettered must match the deliveries.
func checkDestinationState(t *testing.T, s kith.Store, id string, progress kith.DestinationProgress, retrying, dead []kith.Delivery, delivered int64, filtered map[string]int64) {
	t.Helper()
	st := readDestinationState(t, s, id)
	if st.progress != progress {
		t.Errorf("DestinationProgress(%s) = %+v, want %+v", id, st.progress, progress)
	}
	checkDeliveries(t, "retrying", st.retrying, byID(retrying)...)
	checkDeliveries(t, "dead", st.dead, byID(dead)...)
	checkDeliveries(t, "pending", st.pendingInKeySeq, inKeySeq(retrying)...)
	want := kith.DestinationCounts{Delivered: delivered, Retrying: int64(len(retrying)), DeadLettered: int64(len(dead)), Filtered: filtered}
	if !st.countsPresent || !reflect.DeepEqual(st.counts, want) {
		t.Errorf("DestinationCounts()[%s] = %+v (present %v), want %+v", id, st.counts, st.countsPresent, want)
	}
}

// byID returns ds ordered as Deliveries returns them.
func byID(ds []kith.Delivery) []kith.Delivery {
	return slices.SortedFunc(slices.Values(ds), func(a, b kith.Delivery) int { return strings.Compare(a.ID, b.ID) })
}

// inKeySeq returns ds ordered as PendingDeliveries returns them.
func inKeySeq(ds []kith.Delivery) []kith.Delivery {
	return slices.SortedFunc(slices.Values(ds), func(a, b kith.Delivery) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if a.Seq != b.Seq {
			return int(a.Seq - b.Seq)
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// checkDestinationGone fails the test unless the store holds nothing for
// destination id.
func checkDestinationGone(t *testing.T, s kith.Store, id string) {
	t.Helper()
	_, err := s.DestinationProgress(t.Context(), id)
	wantCode(t, err, kith.ENOTFOUND, "DestinationProgress of "+id)
	st := readDestinationState(t, s, id)
	if len(st.retrying)+len(st.dead)+len(st.pendingInKeySeq) != 0 || st.countsPresent {
		t.Errorf("destination %s: deliveries %v %v %v and counts %+v (present %v) remain, want none",
			id, deliveryIDs(st.retrying), deliveryIDs(st.dead), deliveryIDs(st.pendingInKeySeq), st.counts, st.countsPresent)
	}
}

// testDestinations checks creating, listing, finding, updating and deleting
// destinations, and what a store answers about one it does not have.
func testDestinations(t *testing.T, s kith.Store) {
	ctx := t.Context()
	list, err := s.Destinations(ctx)
	noErr(t, err, "Destinations")
	if len(list) != 0 {
		t.Fatalf("fresh store has destinations %+v", list)
	}
	counts, err := s.DestinationCounts(ctx)
	noErr(t, err, "DestinationCounts")
	if len(counts) != 0 {
		t.Fatalf("fresh store has destination counts %+v", counts)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"Destination", func() error { _, err := s.Destination(ctx, "nope"); return err }()},
		{"UpdateDestination", s.UpdateDestination(ctx, webhook("dst_nope", "nope"))},
		{"DeleteDestination", s.DeleteDestination(ctx, "dst_nope")},
		{"DestinationProgress", func() error { _, err := s.DestinationProgress(ctx, "dst_nope"); return err }()},
		{"AdvanceDestination", s.AdvanceDestination(ctx, "dst_nope", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 1}})},
	} {
		wantCode(t, c.err, kith.ENOTFOUND, c.name+" of an unknown destination")
	}

	crm := webhook("dst_crm", "crm")
	ads := kith.Destination{ID: "dst_ads", Name: "Ads (segment)", Type: kith.DestinationSegment, Config: json.RawMessage(`{"writeKey":"wk_1"}`), Paused: true, CreatedAt: at(2)}
	// A destination with no config and no subscriptions reads back so.
	bare := kith.Destination{ID: "dst_bare", Name: "bare", Type: kith.DestinationWebhook, CreatedAt: at(3)}
	noErr(t, s.CreateDestination(ctx, crm, kith.DestinationProgress{LogSeq: 41, ChangeSeq: 7}), "CreateDestination crm")
	noErr(t, s.CreateDestination(ctx, ads, kith.DestinationProgress{}), "CreateDestination ads")
	noErr(t, s.CreateDestination(ctx, bare, kith.DestinationProgress{}), "CreateDestination bare")
	list, err = s.Destinations(ctx)
	noErr(t, err, "Destinations")
	checkDestinations(t, list, ads, bare, crm) // by name, in byte order: "A" < "b" < "c"
	noErr(t, s.DeleteDestination(ctx, bare.ID), "DeleteDestination bare")
	got, err := s.Destination(ctx, "crm")
	noErr(t, err, "Destination")
	checkDestination(t, got, crm)
	checkDestinationState(t, s, crm.ID, kith.DestinationProgress{LogSeq: 41, ChangeSeq: 7}, nil, nil, 0, nil)
	checkDestinationState(t, s, ads.ID, kith.DestinationProgress{}, nil, nil, 0, nil)

	for _, c := range []struct {
		name string
		d    kith.Destination
	}{
		{"a taken name", webhook("dst_other", "crm")},
		{"a taken id", webhook("dst_crm", "another")},
	} {
		wantCode(t, s.CreateDestination(ctx, c.d, kith.DestinationProgress{}), kith.ECONFLICT, "CreateDestination with "+c.name)
	}
	list, err = s.Destinations(ctx)
	noErr(t, err, "Destinations")
	checkDestinations(t, list, ads, crm)

	// An update replaces the settings and may rename; it keeps CreatedAt
	// and the progress.
	upd := crm
	upd.Name, upd.Config, upd.Events, upd.Audiences, upd.AudienceAs, upd.Consent, upd.RateLimit, upd.Paused =
		"crm-eu", json.RawMessage(`{"url":"https://eu.example.com"}`), nil, []string{"vip"}, kith.AudienceAsTrack, nil, 0, true
	upd.CreatedAt = at(99)
	noErr(t, s.UpdateDestination(ctx, upd), "UpdateDestination")
	upd.CreatedAt = crm.CreatedAt
	got, err = s.Destination(ctx, "crm-eu")
	noErr(t, err, "Destination after a rename")
	checkDestination(t, got, upd)
	_, err = s.Destination(ctx, "crm")
	wantCode(t, err, kith.ENOTFOUND, "Destination by its old name")
	checkDestinationState(t, s, crm.ID, kith.DestinationProgress{LogSeq: 41, ChangeSeq: 7}, nil, nil, 0, nil)
	clash := upd
	clash.Name = ads.Name
	wantCode(t, s.UpdateDestination(ctx, clash), kith.ECONFLICT, "UpdateDestination to a taken name")
	got, err = s.Destination(ctx, "crm-eu")
	noErr(t, err, "Destination after a refused rename")
	checkDestination(t, got, upd)

	noErr(t, s.DeleteDestination(ctx, ads.ID), "DeleteDestination")
	wantCode(t, s.DeleteDestination(ctx, ads.ID), kith.ENOTFOUND, "DeleteDestination twice")
	_, err = s.Destination(ctx, ads.Name)
	wantCode(t, err, kith.ENOTFOUND, "Destination after its deletion")
	checkDestinationGone(t, s, ads.ID)
	list, err = s.Destinations(ctx)
	noErr(t, err, "Destinations")
	checkDestinations(t, list, upd)
	// The name and the id are free again.
	noErr(t, s.CreateDestination(ctx, ads, kith.DestinationProgress{}), "CreateDestination after a deletion")
}

// testDestinationAdvance runs a destination's worker through steps and
// checks after each what the store holds: puts add or change deliveries
// (keeping the message as first put), dones remove them, counters add up,
// and the progress moves or stays.
func testDestinationAdvance(t *testing.T, s kith.Store) {
	ctx := t.Context()
	const id = "dst_crm"
	noErr(t, s.CreateDestination(ctx, webhook(id, "crm"), kith.DestinationProgress{LogSeq: 3}), "CreateDestination")
	d1, d2, d3 := delivery(id, "dlv_1", "p_b", 5, false), delivery(id, "dlv_2", "p_a", 7, false), delivery(id, "dlv_3", "p_c", 8, true)
	d4 := delivery(id, "dlv_4", "p_a", 6, false)

	// d1 retried and failing again: what a later Put may change changes;
	// the message stays as first put.
	d1again := d1
	d1again.Attempts, d1again.NextAt, d1again.LastStatus, d1again.LastError = 2, at(30), 0, "dial tcp: connection refused"
	d1twisted := d1again
	d1twisted.Key, d1twisted.Seq, d1twisted.Kind, d1twisted.Body, d1twisted.FirstAt = "p_z", 99, "delete", json.RawMessage(`{}`), at(50)
	d1dead := d1again
	d1dead.Attempts, d1dead.Dead = 3, true

	steps := []struct {
		name      string
		u         kith.DestinationUpdate
		retrying  []kith.Delivery
		dead      []kith.Delivery
		delivered int64
		filtered  map[string]int64
	}{
		{
			name: "first failures and counters",
			u: kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 10, ChangeSeq: 2}, Put: []kith.Delivery{d1, d2, d3},
				Delivered: 5, Filtered: map[string]int64{"consent": 2, "event_filter": 1}},
			retrying: []kith.Delivery{d1, d2}, dead: []kith.Delivery{d3}, delivered: 5,
			filtered: map[string]int64{"consent": 2, "event_filter": 1},
		},
		{
			name: "a retry fails, one goes through, a new failure, an unknown done",
			u: kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 12, ChangeSeq: 2}, Put: []kith.Delivery{d1twisted, d4},
				Done: []string{"dlv_2", "dlv_unknown"}, Delivered: 3, Filtered: map[string]int64{"consent": 1, "paused": 0}},
			retrying: []kith.Delivery{d1again, d4}, dead: []kith.Delivery{d3}, delivered: 8,
			filtered: map[string]int64{"consent": 3, "event_filter": 1},
		},
		{
			name:     "retries only: the same progress",
			u:        kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 12, ChangeSeq: 2}, Put: []kith.Delivery{d1dead}},
			retrying: []kith.Delivery{d4}, dead: []kith.Delivery{d1dead, d3}, delivered: 8,
			filtered: map[string]int64{"consent": 3, "event_filter": 1},
		},
		{
			name: "put and done in one step: done wins; a replay drops a dead letter",
			u: kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 12, ChangeSeq: 9},
				Put: []kith.Delivery{delivery(id, "dlv_5", "p_d", 11, false)}, Done: []string{"dlv_5", "dlv_3"}, Delivered: 1},
			retrying: []kith.Delivery{d4}, dead: []kith.Delivery{d1dead}, delivered: 9,
			filtered: map[string]int64{"consent": 3, "event_filter": 1},
		},
		{
			name:     "nothing but the progress",
			u:        kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 20, ChangeSeq: 9}},
			retrying: []kith.Delivery{d4}, dead: []kith.Delivery{d1dead}, delivered: 9,
			filtered: map[string]int64{"consent": 3, "event_filter": 1},
		},
	}
	for _, st := range steps {
		noErr(t, s.AdvanceDestination(ctx, id, st.u), "AdvanceDestination: "+st.name)
		checkDestinationState(t, s, id, st.u.Progress, st.retrying, st.dead, st.delivered, st.filtered)
		if t.Failed() {
			t.Fatalf("after step %q", st.name)
		}
	}
}

// testDestinationAdvanceRefused checks that a step the store refuses
// changes nothing at all: one whose progress moves backwards or whose
// counters decrease (EINVALID, kith.DestinationUpdate.Check), one on a
// deleted destination (ENOTFOUND), and one carrying a value a store
// cannot hold (EINVALID where the store refuses it, such as PostgreSQL a
// NUL character in text; a store that holds it must read it back).
func testDestinationAdvanceRefused(t *testing.T, s kith.Store) {
	ctx := t.Context()
	const id = "dst_crm"
	noErr(t, s.CreateDestination(ctx, webhook(id, "crm"), kith.DestinationProgress{}), "CreateDestination")
	kept := []kith.Delivery{delivery(id, "dlv_1", "p_a", 5, false), delivery(id, "dlv_2", "p_b", 6, true)}
	stored := kith.DestinationProgress{LogSeq: 10, ChangeSeq: 5}
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: stored, Put: kept, Delivered: 4, Filtered: map[string]int64{"consent": 1}}), "AdvanceDestination")
	full := func(p kith.DestinationProgress) kith.DestinationUpdate {
		return kith.DestinationUpdate{Progress: p, Put: []kith.Delivery{delivery(id, "dlv_3", "p_c", 11, false)},
			Done: []string{"dlv_1", "dlv_2"}, Delivered: 7, Filtered: map[string]int64{"consent": 2, "paused": 1}}
	}
	for _, c := range []struct {
		name string
		u    kith.DestinationUpdate
	}{
		{"log position backwards", full(kith.DestinationProgress{LogSeq: 9, ChangeSeq: 6})},
		{"change position backwards", full(kith.DestinationProgress{LogSeq: 11, ChangeSeq: 4})},
		{"both backwards", full(kith.DestinationProgress{})},
		{"delivered decreases", func() kith.DestinationUpdate { u := full(stored); u.Delivered = -1; return u }()},
		{"a filtered count decreases", func() kith.DestinationUpdate { u := full(stored); u.Filtered["consent"] = -1; return u }()},
	} {
		wantCode(t, s.AdvanceDestination(ctx, id, c.u), kith.EINVALID, "AdvanceDestination with "+c.name)
		checkDestinationState(t, s, id, stored, kept[:1], kept[1:], 4, map[string]int64{"consent": 1})
	}

	// A value the store cannot hold fails the step, not silently and not
	// in part.
	hostile := full(kith.DestinationProgress{LogSeq: 12, ChangeSeq: 5})
	bad := delivery(id, "dlv_bad", "p_\x00nul", 12, false)
	bad.Kind = "ev\xffent"
	hostile.Put = append(hostile.Put, bad)
	if err := s.AdvanceDestination(ctx, id, hostile); err != nil {
		t.Logf("the store refused a NUL character and invalid UTF-8 in a delivery: %v", err)
		wantCode(t, err, kith.EINVALID, "AdvanceDestination with a NUL character and invalid UTF-8 in a delivery")
		checkDestinationState(t, s, id, stored, kept[:1], kept[1:], 4, map[string]int64{"consent": 1})
	} else {
		checkDestinationState(t, s, id, hostile.Progress, hostile.Put, nil, 11, map[string]int64{"consent": 3, "paused": 1})
	}

	// A destination deleted while its worker ran: the step stores nothing,
	// and a destination created again under the same id starts empty.
	noErr(t, s.DeleteDestination(ctx, id), "DeleteDestination")
	wantCode(t, s.AdvanceDestination(ctx, id, full(kith.DestinationProgress{LogSeq: 50, ChangeSeq: 50})), kith.ENOTFOUND, "AdvanceDestination of a deleted destination")
	checkDestinationGone(t, s, id)
	noErr(t, s.CreateDestination(ctx, webhook(id, "crm"), kith.DestinationProgress{LogSeq: 1}), "CreateDestination again")
	checkDestinationState(t, s, id, kith.DestinationProgress{LogSeq: 1}, nil, nil, 0, nil)
}

// testDestinationDeliveriesPaging checks that Deliveries pages each list
// by ID, and that PendingDeliveries returns the retrying ones by key and
// seq, never another destination's.
func testDestinationDeliveriesPaging(t *testing.T, s kith.Store) {
	ctx := t.Context()
	const id, other = "dst_a", "dst_b"
	noErr(t, s.CreateDestination(ctx, webhook(id, "a"), kith.DestinationProgress{}), "CreateDestination")
	noErr(t, s.CreateDestination(ctx, webhook(other, "b"), kith.DestinationProgress{}), "CreateDestination")
	var retrying, dead, others []kith.Delivery
	for i := range 40 {
		// IDs out of order, keys shared by several deliveries with seqs
		// out of order, and ties in seq broken by ID.
		d := delivery(id, fmt.Sprintf("dlv_%02d", (i*17)%40), fmt.Sprintf("p_%d", i%6), int64(100-i%9), i%5 == 0)
		if d.Dead {
			dead = append(dead, d)
		} else {
			retrying = append(retrying, d)
		}
		others = append(others, delivery(other, d.ID, d.Key, d.Seq, d.Dead))
	}
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Put: retrying}), "AdvanceDestination")
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Put: dead}), "AdvanceDestination")
	noErr(t, s.AdvanceDestination(ctx, other, kith.DestinationUpdate{Put: others}), "AdvanceDestination other")

	for _, c := range []struct {
		name  string
		dead  bool
		limit int
		want  []kith.Delivery
	}{
		{"retrying by 7", false, 7, byID(retrying)},
		{"retrying by 1", false, 1, byID(retrying)},
		{"retrying in one page", false, 100, byID(retrying)},
		{"dead by 3", true, 3, byID(dead)},
		{"dead by an exact page", true, len(dead), byID(dead)},
	} {
		var got []kith.Delivery
		after, pages := "", 0
		for {
			page, err := s.Deliveries(ctx, id, c.dead, after, c.limit)
			noErr(t, err, "Deliveries")
			if len(page) > c.limit {
				t.Fatalf("%s: a page of %d, over the limit %d", c.name, len(page), c.limit)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].ID
			if pages++; pages > 100 {
				t.Fatalf("%s: paging does not end", c.name)
			}
		}
		checkDeliveries(t, c.name, got, c.want...)
	}
	pending, err := s.PendingDeliveries(ctx, id)
	noErr(t, err, "PendingDeliveries")
	checkDeliveries(t, "pending by key and seq", pending, inKeySeq(retrying)...)
	if page, err := s.Deliveries(ctx, id, false, "dlv_38", 10); err != nil || len(page) != 1 || page[0].ID != "dlv_39" {
		t.Errorf("Deliveries after dlv_38 = %v (%v), want dlv_39 alone", deliveryIDs(page), err)
	}
	if page, err := s.Deliveries(ctx, "dst_unknown", false, "", 10); err != nil || len(page) != 0 {
		t.Errorf("Deliveries of an unknown destination = %v (%v), want none", deliveryIDs(page), err)
	}
}

// testDestinationCounts checks the accounting of several destinations:
// every destination has an entry, counters add up per destination, and
// retrying and dead-lettered deliveries are counted where they are.
func testDestinationCounts(t *testing.T, s kith.Store) {
	ctx := t.Context()
	for _, name := range []string{"a", "b", "c"} {
		noErr(t, s.CreateDestination(ctx, webhook("dst_"+name, name), kith.DestinationProgress{}), "CreateDestination")
	}
	steps := []struct {
		id string
		u  kith.DestinationUpdate
	}{
		{"dst_a", kith.DestinationUpdate{Delivered: 10, Filtered: map[string]int64{"consent": 2},
			Put: []kith.Delivery{delivery("dst_a", "d1", "p1", 1, false), delivery("dst_a", "d2", "p1", 2, false), delivery("dst_a", "d3", "p2", 3, true)}}},
		{"dst_b", kith.DestinationUpdate{Delivered: 1, Put: []kith.Delivery{delivery("dst_b", "d1", "p1", 1, true)}}},
		{"dst_a", kith.DestinationUpdate{Delivered: 5, Filtered: map[string]int64{"consent": 1, "event_filter": 4}, Done: []string{"d1"}}},
		{"dst_b", kith.DestinationUpdate{Filtered: map[string]int64{"paused": 3}}},
	}
	for _, st := range steps {
		noErr(t, s.AdvanceDestination(ctx, st.id, st.u), "AdvanceDestination "+st.id)
	}
	got, err := s.DestinationCounts(ctx)
	noErr(t, err, "DestinationCounts")
	want := map[string]kith.DestinationCounts{
		"dst_a": {Delivered: 15, Retrying: 1, DeadLettered: 1, Filtered: map[string]int64{"consent": 3, "event_filter": 4}},
		"dst_b": {Delivered: 1, DeadLettered: 1, Filtered: map[string]int64{"paused": 3}},
		"dst_c": {},
	}
	if !maps.EqualFunc(got, want, func(a, b kith.DestinationCounts) bool { return reflect.DeepEqual(a, b) }) {
		t.Errorf("DestinationCounts = %+v, want %+v", got, want)
	}
}

// testDestinationDelete checks that deleting a destination removes its
// progress, deliveries and counters and leaves the others alone, also
// while its worker and another's advance concurrently.
func testDestinationDelete(t *testing.T, s kith.Store) {
	ctx := t.Context()
	for _, name := range []string{"gone", "kept"} {
		noErr(t, s.CreateDestination(ctx, webhook("dst_"+name, name), kith.DestinationProgress{}), "CreateDestination")
	}
	const steps = 20
	var wg sync.WaitGroup
	errs := map[string][]error{}
	var mu sync.Mutex
	for _, id := range []string{"dst_gone", "dst_kept"} {
		wg.Go(func() {
			for i := range steps {
				err := s.AdvanceDestination(ctx, id, kith.DestinationUpdate{
					Progress:  kith.DestinationProgress{LogSeq: int64(i + 1)},
					Put:       []kith.Delivery{delivery(id, fmt.Sprintf("d%02d", i), "p1", int64(i), i%3 == 0)},
					Delivered: 1, Filtered: map[string]int64{"consent": 1},
				})
				mu.Lock()
				errs[id] = append(errs[id], err)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		time.Sleep(time.Millisecond)
		if err := s.DeleteDestination(ctx, "dst_gone"); err != nil {
			t.Errorf("DeleteDestination: %v", err)
		}
	})
	wg.Wait()
	gone := false
	ok := 0
	for i, err := range errs["dst_gone"] {
		if err == nil {
			ok++
		}
		switch {
		case err == nil && gone:
			t.Errorf("step %d of the deleted destination succeeded after one failed", i)
		case err != nil:
			wantCode(t, err, kith.ENOTFOUND, "AdvanceDestination while being deleted")
			gone = true
		}
	}
	t.Logf("%d of %d steps of the deleted destination's worker went through before the deletion", ok, steps)
	for _, err := range errs["dst_kept"] {
		noErr(t, err, "AdvanceDestination of the other destination")
	}
	checkDestinationGone(t, s, "dst_gone")
	var retrying, dead []kith.Delivery
	for i := range steps {
		d := delivery("dst_kept", fmt.Sprintf("d%02d", i), "p1", int64(i), i%3 == 0)
		if d.Dead {
			dead = append(dead, d)
		} else {
			retrying = append(retrying, d)
		}
	}
	checkDestinationState(t, s, "dst_kept", kith.DestinationProgress{LogSeq: steps}, retrying, dead, steps, map[string]int64{"consent": steps})
	list, err := s.Destinations(ctx)
	noErr(t, err, "Destinations")
	if len(list) != 1 || list[0].ID != "dst_kept" {
		t.Errorf("Destinations = %+v, want dst_kept alone", list)
	}
}

// testDestinationHostileText checks that what comes from outside and is
// not looked up is stored safely: an error string from a remote server
// with NUL characters and invalid UTF-8 reads back as kith.SafeText made
// it, in a first Put and in a replacing one, and a delivery body (bytes
// the worker sends) reads back byte for byte whatever it holds.
func testDestinationHostileText(t *testing.T, s kith.Store) {
	ctx := t.Context()
	const id = "dst_x"
	noErr(t, s.CreateDestination(ctx, webhook(id, "x"), kith.DestinationProgress{}), "CreateDestination")
	errs := []string{
		"500 \x00oops\x00",
		"bad gateway: \xff\xfe<html>",
		"\xed\xa0\x80 lone surrogate",
		"",
		strings.Repeat("\x00", 10),
	}
	bodies := []json.RawMessage{
		json.RawMessage(`{"name":"a\u0000b"}`),
		json.RawMessage("{\"name\":\"\xff\xfe\"}"),
		json.RawMessage("raw \x00 bytes"),
		nil,
		json.RawMessage(`{}`),
	}
	var put, want []kith.Delivery
	for i, e := range errs {
		d := delivery(id, fmt.Sprintf("d%d", i), "p1", int64(i), false)
		d.LastError, d.Body = e, bodies[i]
		put = append(put, d)
		d.LastError = kith.SafeText(e)
		want = append(want, d)
	}
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Put: put}), "AdvanceDestination with hostile error strings")
	for i := range want {
		if p := kith.TextProblem(want[i].LastError); p != "" {
			t.Fatalf("kith.SafeText(%q) = %q, which %s", errs[i], want[i].LastError, p)
		}
	}
	checkDestinationState(t, s, id, kith.DestinationProgress{}, want, nil, 0, nil)

	// A replacing Put with another hostile error.
	put[0].LastError, put[0].Attempts = "again\x00\xc3", 2
	want[0].LastError, want[0].Attempts = kith.SafeText(put[0].LastError), 2
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Put: put[:1]}), "AdvanceDestination replacing")
	checkDestinationState(t, s, id, kith.DestinationProgress{}, want, nil, 0, nil)

	// A name no store can look up is refused where the store refuses it,
	// and otherwise finds its destination again.
	odd := webhook("dst_odd", "na\x00me\xff")
	if err := s.CreateDestination(ctx, odd, kith.DestinationProgress{}); err != nil {
		t.Logf("the store refused a NUL character and invalid UTF-8 in a name: %v", err)
		wantCode(t, err, kith.EINVALID, "CreateDestination with a NUL character and invalid UTF-8 in the name")
		list, err := s.Destinations(ctx)
		noErr(t, err, "Destinations")
		if len(list) != 1 {
			t.Errorf("a refused destination was stored: %+v", list)
		}
	} else {
		got, err := s.Destination(ctx, odd.Name)
		noErr(t, err, "Destination with a NUL character in the name")
		checkDestination(t, got, odd)
	}
}

// testDestinationReopen checks that destinations, their progress,
// deliveries and counters survive a restart, and that the progress still
// refuses to move backwards afterwards.
func testDestinationReopen(t *testing.T, open func(t *testing.T) (kith.Store, func() kith.Store)) {
	s, reopen := open(t)
	closer := &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	ctx := t.Context()
	const id = "dst_crm"
	dst := webhook(id, "crm")
	noErr(t, s.CreateDestination(ctx, dst, kith.DestinationProgress{LogSeq: 2}), "CreateDestination")
	retrying, dead := delivery(id, "d1", "p1", 3, false), delivery(id, "d2", "p2", 4, true)
	progress := kith.DestinationProgress{LogSeq: 40, ChangeSeq: 6}
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: progress, Put: []kith.Delivery{retrying, dead},
		Delivered: 30, Filtered: map[string]int64{"consent": 7}}), "AdvanceDestination")
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	got, err := s.Destination(ctx, "crm")
	noErr(t, err, "Destination after reopen")
	checkDestination(t, got, dst)
	checkDestinationState(t, s, id, progress, []kith.Delivery{retrying}, []kith.Delivery{dead}, 30, map[string]int64{"consent": 7})
	wantCode(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 2}}), kith.EINVALID,
		"AdvanceDestination backwards after reopen")
	progress.LogSeq = 41
	noErr(t, s.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: progress, Done: []string{"d1"}, Delivered: 1}), "AdvanceDestination after reopen")
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	checkDestinationState(t, s, id, progress, nil, []kith.Delivery{dead}, 31, map[string]int64{"consent": 7})
}

// testDestinationRecipients checks what erasure relies on: recipients
// recorded by a step are found by ReceivedBy from any of their profiles,
// once per destination however often recorded; Forget removes the
// profiles' deliveries (retrying and dead) with their record, counts
// them as filtered "erased", and leaves other profiles' deliveries and a
// deletion put in the same step; Delivery finds one delivery by ID;
// deleting a destination removes its record.
func testDestinationRecipients(t *testing.T, s kith.Store) {
	ctx := t.Context()
	for _, name := range []string{"a", "b", "c"} {
		noErr(t, s.CreateDestination(ctx, webhook("dst_"+name, name), kith.DestinationProgress{}), "CreateDestination")
	}
	got, err := s.ReceivedBy(ctx, []string{"p1", "p2"})
	noErr(t, err, "ReceivedBy before any step")
	if len(got) != 0 {
		t.Errorf("ReceivedBy before any step = %v, want none", got)
	}
	p1a, p1b, p2 := delivery("dst_a", "a1", "p1", 1, false), delivery("dst_a", "a2", "p1", 2, true), delivery("dst_a", "a3", "p2", 3, false)
	steps := []struct {
		id string
		u  kith.DestinationUpdate
	}{
		{"dst_a", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 3}, Put: []kith.Delivery{p1a, p1b, p2},
			Recipients: []string{"p1", "p2"}}},
		{"dst_a", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 4}, Recipients: []string{"p1"}, Delivered: 1}},
		{"dst_b", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 4}, Recipients: []string{"p2", "p3"}, Delivered: 2}},
		{"dst_c", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 4}, Recipients: []string{"p3"}, Delivered: 1}},
	}
	for _, st := range steps {
		noErr(t, s.AdvanceDestination(ctx, st.id, st.u), "AdvanceDestination with recipients")
	}
	for _, c := range []struct {
		profiles []string
		want     []string
	}{
		{[]string{"p1"}, []string{"dst_a"}},
		{[]string{"p2"}, []string{"dst_a", "dst_b"}},
		{[]string{"p1", "p3"}, []string{"dst_a", "dst_b", "dst_c"}},
		{[]string{"p9"}, nil},
		{[]string{"p9\x00", "\xff"}, nil},
	} {
		got, err := s.ReceivedBy(ctx, c.profiles)
		noErr(t, err, "ReceivedBy")
		if !slices.Equal(got, c.want) {
			t.Errorf("ReceivedBy(%q) = %v, want %v", c.profiles, got, c.want)
		}
	}
	d, err := s.Delivery(ctx, "dst_a", "a2")
	noErr(t, err, "Delivery")
	if diff := deliveryDiff(d, p1b); diff != "" {
		t.Errorf("Delivery(dst_a, a2): %s", diff)
	}
	_, err = s.Delivery(ctx, "dst_b", "a2")
	wantCode(t, err, kith.ENOTFOUND, "Delivery of another destination's id")
	_, err = s.Delivery(ctx, "dst_a", "nope")
	wantCode(t, err, kith.ENOTFOUND, "Delivery of an unknown id")

	// p1 is erased: dst_a forgets it and gets a deletion in the same step.
	del := delivery("dst_a", "x1", "erasure:era_1", 0, false)
	del.Kind, del.Attempts, del.LastStatus, del.LastError = "delete", 0, 0, ""
	noErr(t, s.AdvanceDestination(ctx, "dst_a", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 4},
		Forget: []string{"p1", "p0"}, Put: []kith.Delivery{del}}), "AdvanceDestination with Forget")
	checkDestinationState(t, s, "dst_a", kith.DestinationProgress{LogSeq: 4}, []kith.Delivery{p2, del}, nil, 1,
		map[string]int64{kith.DeliveriesErased: 2})
	for _, c := range []struct {
		profiles []string
		want     []string
	}{
		{[]string{"p1"}, nil},
		{[]string{"p2"}, []string{"dst_a", "dst_b"}},
	} {
		got, err := s.ReceivedBy(ctx, c.profiles)
		noErr(t, err, "ReceivedBy after Forget")
		if !slices.Equal(got, c.want) {
			t.Errorf("ReceivedBy(%q) after dst_a forgot p1 = %v, want %v", c.profiles, got, c.want)
		}
	}
	// Forgetting again changes nothing and counts nothing.
	noErr(t, s.AdvanceDestination(ctx, "dst_a", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 4},
		Forget: []string{"p1"}}), "AdvanceDestination forgetting again")
	checkDestinationState(t, s, "dst_a", kith.DestinationProgress{LogSeq: 4}, []kith.Delivery{p2, del}, nil, 1,
		map[string]int64{kith.DeliveriesErased: 2})

	noErr(t, s.DeleteDestination(ctx, "dst_b"), "DeleteDestination")
	got, err = s.ReceivedBy(ctx, []string{"p2", "p3"})
	noErr(t, err, "ReceivedBy after a deletion")
	if want := []string{"dst_a", "dst_c"}; !slices.Equal(got, want) {
		t.Errorf("ReceivedBy after dst_b was deleted = %v, want %v", got, want)
	}
}

// testDestinationSync checks a destination's positions beyond the log and
// the audience changes (the trait changes, the first sync, a replay):
// stored at creation, moved by steps (alone, or with a stream position),
// gone once they are 0, never moved back, and not shared between
// destinations.
func testDestinationSync(t *testing.T, s kith.Store) {
	ctx := t.Context()
	noErr(t, s.CreateDestination(ctx, webhook("dst_s", "s"), kith.DestinationProgress{LogSeq: 7, ChangeSeq: 3, Sync: 1}), "CreateDestination syncing")
	noErr(t, s.CreateDestination(ctx, webhook("dst_t", "t"), kith.DestinationProgress{LogSeq: 7}), "CreateDestination")
	check := func(id string, want kith.DestinationProgress) {
		t.Helper()
		got, err := s.DestinationProgress(ctx, id)
		noErr(t, err, "DestinationProgress")
		if got != want {
			t.Errorf("DestinationProgress(%s) = %+v, want %+v", id, got, want)
		}
	}
	check("dst_s", kith.DestinationProgress{LogSeq: 7, ChangeSeq: 3, Sync: 1})
	check("dst_t", kith.DestinationProgress{LogSeq: 7})
	for _, p := range []kith.DestinationProgress{
		{LogSeq: 7, ChangeSeq: 3, Sync: 1, SyncAfter: "prf_b"},
		{LogSeq: 9, ChangeSeq: 3, Sync: 1, SyncAfter: "prf_b"},
		{LogSeq: 9, ChangeSeq: 3, Sync: 2},
		{LogSeq: 9, ChangeSeq: 3, Sync: 2, SyncAfter: "prf_a", ReplayAt: 2, ReplayTo: 8, ReplayID: 1765100000000},
		{LogSeq: 9, ChangeSeq: 3, ReplayAt: 5, ReplayTo: 8, ReplayID: 1765100000000, TraitSeq: 4},
		{LogSeq: 9, ChangeSeq: 3, TraitSeq: 4},
		{LogSeq: 9, ChangeSeq: 3, TraitSeq: 6},
		{LogSeq: 9, ChangeSeq: 5, TraitSeq: 6},
	} {
		noErr(t, s.AdvanceDestination(ctx, "dst_s", kith.DestinationUpdate{Progress: p, Delivered: 1}), "AdvanceDestination")
		check("dst_s", p)
		check("dst_t", kith.DestinationProgress{LogSeq: 7})
	}
	// A refused step leaves the sync position as it was.
	noErr(t, s.AdvanceDestination(ctx, "dst_t", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 7, Sync: 3, SyncAfter: "x"}}), "AdvanceDestination")
	err := s.AdvanceDestination(ctx, "dst_t", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 6, Sync: 4}})
	wantCode(t, err, kith.EINVALID, "AdvanceDestination moving back")
	err = s.AdvanceDestination(ctx, "dst_s", kith.DestinationUpdate{Progress: kith.DestinationProgress{LogSeq: 9, ChangeSeq: 5, TraitSeq: 5}})
	wantCode(t, err, kith.EINVALID, "AdvanceDestination moving back in the trait changes")
	check("dst_s", kith.DestinationProgress{LogSeq: 9, ChangeSeq: 5, TraitSeq: 6})
	check("dst_t", kith.DestinationProgress{LogSeq: 7, Sync: 3, SyncAfter: "x"})
	noErr(t, s.DeleteDestination(ctx, "dst_t"), "DeleteDestination")
	noErr(t, s.CreateDestination(ctx, webhook("dst_t", "t"), kith.DestinationProgress{}), "CreateDestination again")
	check("dst_t", kith.DestinationProgress{})
}
