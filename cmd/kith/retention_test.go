package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/privacy"
)

// TestRetentionSweep: page views are kept 13 months, orders 7 years,
// everything else by the default of 2 years, and a profile with no event
// for 3 years is erased; the sweeper's clock is moved forward to see each
// rule take effect, and what it removed is counted.
func TestRetentionSweep(t *testing.T) {
	s := startServer(t)
	now := time.Now().UTC()
	ago := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	const day = 24 * time.Hour
	var items []string
	for i, age := range []time.Duration{14 * 30 * day, 12 * 30 * day, 30 * day} {
		items = append(items, fmt.Sprintf(`{"type":"page","name":"Home","userId":"u1","timestamp":%q,"messageId":"pv%d"}`, ago(age), i))
	}
	items = append(items,
		fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u1","timestamp":%q,"properties":{"order_id":"o1","revenue":10}}`, ago(3*365*day)),
		fmt.Sprintf(`{"type":"track","event":"Signed Up","userId":"u1","timestamp":%q}`, ago(25*30*day)),
		fmt.Sprintf(`{"type":"identify","userId":"u2","traits":{"email":"dormant@example.com"},"timestamp":%q}`, ago(4*365*day)),
		// u3 was last active 14 months ago (a page view, which expires)
		// and ordered 4 years ago: active within 3 years, so kept, and
		// their consent decision outlives the event that carried it.
		fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u3","timestamp":%q,"properties":{"order_id":"o3","revenue":5}}`, ago(4*365*day)),
		fmt.Sprintf(`{"type":"page","name":"Home","userId":"u3","timestamp":%q,"context":{"consent":{"categoryPreferences":{"Advertising":false}}}}`, ago(14*30*day)))
	postBatch(t, s, "web", `{"batch":[`+strings.Join(items, ",")+`]}`)
	waitProcessed(t, s)

	policy := privacy.Policy{Default: privacy.Duration(2 * 365 * day), ProfileInactivity: privacy.Duration(3 * 365 * day),
		Events: map[string]privacy.Duration{"page": privacy.Duration(13 * 30 * day), "Order Completed": privacy.Duration(7 * 365 * day)}}
	clock := now
	sw := &privacy.Sweeper{Store: s.store, Service: s.privacy, Policy: policy, Now: func() time.Time { return clock }, Page: 1}
	events := func(ref string) []string {
		_, m := apiJSON(t, s, "GET", "/v1/profiles/"+ref+"/events?limit=100", "")
		var names []string
		for _, e := range m["data"].([]any) {
			ev := e.(map[string]any)
			n, _ := ev["event"].(string)
			if n == "" {
				n = ev["type"].(string)
			}
			names = append(names, n)
		}
		return names
	}
	rep, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The 14-month page view (13 months), the 25-month sign-up (the
	// 2-year default) and u2 (inactive 4 years) go; the rest stays.
	if rep.EventsDeleted != 4 || rep.EventsByRule["event:page"] != 2 || rep.EventsByRule["default"] != 1 || rep.ProfilesErased != 1 || rep.EventsByRule["profile_inactivity"] != 1 {
		t.Fatalf("first sweep %+v", rep)
	}
	if got := events("user_id:u3"); len(got) != 1 || got[0] != "Order Completed" {
		t.Fatalf("u3's events after the sweep: %v", got)
	}
	_, cv := apiJSON(t, s, "GET", "/v1/profiles/user_id:u3/consent", "")
	if adv, _ := cv["categories"].(map[string]any)["Advertising"].(map[string]any); adv == nil || adv["granted"] != false {
		t.Fatalf("u3's consent after its event expired: %v", cv)
	}
	if got := events("user_id:u1"); len(got) != 3 || strings.Count(strings.Join(got, ","), "page") != 2 || !strings.Contains(strings.Join(got, ","), "Order Completed") {
		t.Fatalf("u1's events after the sweep: %v", got)
	}
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/email:dormant@example.com", ""); code != 404 {
		t.Fatalf("the dormant profile is still there: %d", code)
	}
	// Nothing more is due on the same day.
	if rep, _ = sw.Sweep(context.Background()); rep.EventsDeleted != 0 || rep.ProfilesErased != 0 {
		t.Fatalf("second sweep the same day %+v", rep)
	}
	// Two months on, the 12-month page view has turned 14 months old.
	clock = now.Add(60 * day)
	if rep, _ = sw.Sweep(context.Background()); rep.EventsDeleted != 1 || rep.EventsByRule["event:page"] != 1 {
		t.Fatalf("sweep two months later %+v", rep)
	}
	// Four and a half years on, u1's last event (a month before now) is
	// over 3 years old: the whole profile goes by inactivity.
	clock = now.Add(4*365*day + 180*day)
	if rep, _ = sw.Sweep(context.Background()); rep.ProfilesErased != 2 {
		t.Fatalf("sweep years later %+v: want u1 and u3 erased for inactivity", rep)
	}
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/user_id:u1", ""); code != 404 {
		t.Fatalf("u1 is still there: %d", code)
	}
	_, totals := sw.Last()
	if totals.EventsDeleted != 4+1+2+1 || totals.ProfilesErased != 3 {
		t.Fatalf("totals %+v", totals)
	}
}
