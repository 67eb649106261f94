package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"testing"
	"time"
)

// TestCrossChannelMerge follows one customer through three channels, each
// its own source: a web visitor in two browsers and on a tablet (anonymous
// ids), a mobile app user (user id and device id, who also joins a company
// group), and a CRM record (e-mail and an external crm_id). Shared
// identifiers link them: the CRM identify, a later web identify and the
// tablet's late-arriving events merge four profiles into one that every
// identifier resolves to, with the three merges recorded and every trait and
// identifier carrying the source and message it came from.
func TestCrossChannelMerge(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	web := s.createSource(t, "web")
	app := s.createSource(t, "ios-app")
	crm := s.createSource(t, "crm")

	run := randomHex(4)
	var (
		anon1    = "web-anon-1-" + run
		anon2    = "web-anon-2-" + run
		anon3    = "web-anon-3-" + run
		groupID  = "acme-" + run
		company  = "info@acme-" + run + ".example"
		userID   = "cust-" + run
		device   = "device-" + run
		crmID    = "CRM-" + run
		email    = "ada.lovelace+" + run + "@example.com"
		rawEmail = "  Ada.Lovelace+" + run + "@Example.COM"
		phone    = "+1415555" + randomDigits(4)
	)
	// Event times are explicit and a minute apart, so "the latest event
	// time wins" has one answer.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	at := func(i int) string { return base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339) }
	msgID := func(i int) string { return fmt.Sprintf("xc-%s-%02d", run, i) }
	var sent []sentMessage
	record := func(i int, typ, ev string) {
		sent = append(sent, sentMessage{MessageID: msgID(i), Type: typ, Event: ev})
	}

	// 1. The web visitor browses anonymously.
	s.mustSend(t, web.WriteKey, "/v1/page", map[string]any{
		"messageId": msgID(1), "timestamp": at(1), "anonymousId": anon1, "name": "Pricing",
		"properties": map[string]any{"path": "/pricing"},
	})
	record(1, "page", "")
	// 2. They subscribe to the newsletter with their e-mail, still anonymous.
	s.mustSend(t, web.WriteKey, "/v1/identify", map[string]any{
		"messageId": msgID(2), "timestamp": at(2), "anonymousId": anon1,
		"traits": map[string]any{"email": rawEmail, "newsletter": "weekly"},
	})
	record(2, "identify", "")
	// 3. The app user, known by user id and device, sends a gzipped batch.
	appCtx := map[string]any{"device": map[string]any{"id": device, "type": "ios"}}
	res, err := s.send(app.WriteKey, "/v1/batch", map[string]any{
		"context": appCtx,
		"batch": []map[string]any{
			{"type": "identify", "messageId": msgID(3), "timestamp": at(3), "userId": userID,
				"traits": map[string]any{"first_name": "Ada", "phone": phone}},
			{"type": "screen", "messageId": msgID(4), "timestamp": at(4), "userId": userID, "name": "Home"},
		},
	}, true)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("app batch: %v %v", err, res)
	}
	record(3, "identify", "")
	record(4, "screen", "")
	// 4. The CRM knows the user id, the e-mail and its own id; it sends the
	// write key in the body instead of Basic auth. This merges the web and
	// app profiles.
	crmRes, err := s.request(http.MethodPost, "/v1/identify", http.Header{"Content-Type": {"application/json"}}, mustJSON(t, map[string]any{
		"writeKey": crm.WriteKey, "messageId": msgID(5), "timestamp": at(5), "userId": userID,
		"traits": map[string]any{"email": email, "crm_tier": "gold", "last_name": "Lovelace"},
		"context": map[string]any{"externalIds": []map[string]any{
			{"id": crmID, "type": "crm_id", "collection": "users", "encoding": "none"},
		}},
	}))
	if err != nil || crmRes.Status != http.StatusOK {
		t.Fatalf("CRM identify with the write key in the body: %v %v", err, crmRes)
	}
	record(5, "identify", "")
	// 5. A second browser, anonymous again.
	s.mustSend(t, web.WriteKey, "/v1/track", map[string]any{
		"messageId": msgID(6), "timestamp": at(6), "anonymousId": anon2, "event": "Product Viewed",
		"properties": map[string]any{"product_id": "p-9"},
	})
	record(6, "track", "Product Viewed")
	// 6. Logging in there with the e-mail merges the second browser in.
	s.mustSend(t, web.WriteKey, "/v1/identify", map[string]any{
		"messageId": msgID(7), "timestamp": at(7), "anonymousId": anon2,
		"traits": map[string]any{"email": email, "favorite_color": "green"},
	})
	record(7, "identify", "")
	// 7. The app user's company: group traits describe the company, so its
	// e-mail and name must not become the person's.
	s.mustSend(t, app.WriteKey, "/v1/group", map[string]any{
		"messageId": msgID(8), "timestamp": at(8), "userId": userID, "groupId": groupID,
		"traits": map[string]any{"name": "Acme Inc", "email": company},
	})
	record(8, "group", "")
	// 8. A tablet's events arrive late, dated before everything else: an
	// anonymous page view, then a track whose context.traits carry the
	// e-mail in odd case, which merges the tablet in. Being older, its
	// e-mail does not replace the latest one.
	s.mustSend(t, web.WriteKey, "/v1/page", map[string]any{
		"messageId": msgID(9), "timestamp": base.Add(10 * time.Second).Format(time.RFC3339), "anonymousId": anon3, "name": "Home",
	})
	record(9, "page", "")
	s.mustSend(t, web.WriteKey, "/v1/track", map[string]any{
		"messageId": msgID(10), "timestamp": base.Add(20 * time.Second).Format(time.RFC3339), "anonymousId": anon3, "event": "Signed In",
		"context": map[string]any{"traits": map[string]any{"email": " ADA.Lovelace+" + run + "@EXAMPLE.com"}},
	})
	record(10, "track", "Signed In")

	// The CRM also sends a batch with one good and one bad item: the good
	// one is kept, the bad one is named and counted.
	res, err = s.send(crm.WriteKey, "/v1/batch", map[string]any{"batch": []map[string]any{
		{"type": "identify", "messageId": "xc-" + run + "-other", "userId": "other-" + run, "traits": map[string]any{"crm_tier": "silver"}},
		{"type": "identify", "messageId": "xc-" + run + "-noid", "traits": map[string]any{"crm_tier": "none"}},
	}}, false)
	var cr collectResponse
	if err != nil || res.Status != http.StatusOK || json.Unmarshal(res.Body, &cr) != nil ||
		len(cr.Rejected) != 1 || cr.Rejected[0].Index != 1 || cr.Rejected[0].Reason != "missing_user_or_anonymous_id" {
		t.Errorf("batch with an item lacking ids: want 200 with rejected [{index 1, missing_user_or_anonymous_id}], got %v %v", err, res)
	}

	// A client retrying the second browser's identify (same messageId)
	// is counted as a duplicate and stored once.
	s.mustSend(t, web.WriteKey, "/v1/identify", map[string]any{
		"messageId": msgID(7), "timestamp": at(7), "anonymousId": anon2,
		"traits": map[string]any{"email": email, "favorite_color": "green"},
	})

	st := s.waitProcessed(t, 11, 30*time.Second)
	checkCountsAddUp(t, st)
	for _, c := range []struct {
		src                  source
		accepted, dups, rejs int64
	}{{web, 6, 1, 0}, {app, 3, 0, 0}, {crm, 2, 0, 1}} {
		got := st.source(t, c.src.ID)
		if got.Accepted != c.accepted || got.Duplicate != c.dups || got.RejectedTotal() != c.rejs {
			t.Errorf("stats for %s: want accepted %d, duplicate %d, rejected %d; got %+v", c.src.Name, c.accepted, c.dups, c.rejs, got)
		}
	}
	if got := st.source(t, crm.ID).Rejected["missing_user_or_anonymous_id"]; got != 1 {
		t.Errorf("stats for crm: want rejected[missing_user_or_anonymous_id] 1, got %v", st.source(t, crm.ID).Rejected)
	}

	// One profile, whatever identifier is asked.
	p := s.getProfile(t, "user_id:"+userID)
	for _, ref := range []string{"email:" + email, "anonymous_id:" + anon1, "anonymous_id:" + anon2, "anonymous_id:" + anon3, "crm_id:" + crmID, "phone:" + phone} {
		if got := s.getProfile(t, ref); got.ID != p.ID {
			t.Errorf("GET %s: want profile %s, got %s", refPath(ref), p.ID, got.ID)
		}
	}
	if other := s.getProfile(t, "user_id:other-"+run); other.ID == p.ID {
		t.Errorf("user_id:other-%s resolves to the merged profile %s", run, p.ID)
	}
	checkNotFound(t, s, refPath("email:"+company))

	// Identities: each with the source and first message that carried it,
	// and the profile it was first attached to.
	ids := map[string]identity{}
	for _, id := range s.identities(t, p.ID) {
		ids[id.Type+":"+id.Value] = id
		if id.Type == "device_id" || id.Type == "device" {
			t.Logf("device identifier: %+v", id)
		}
	}
	wantIDs := []struct {
		key, source, message string
	}{
		{"anonymous_id:" + anon1, web.ID, msgID(1)},
		{"email:" + email, web.ID, msgID(2)},
		{"user_id:" + userID, app.ID, msgID(3)},
		{"phone:" + phone, app.ID, msgID(3)},
		{"crm_id:" + crmID, crm.ID, msgID(5)},
		{"anonymous_id:" + anon2, web.ID, msgID(6)},
		{"anonymous_id:" + anon3, web.ID, msgID(9)},
	}
	for _, w := range wantIDs {
		id, ok := ids[w.key]
		if !ok {
			t.Errorf("identities: %s missing from %v", w.key, keys(ids))
			continue
		}
		if id.SourceID != w.source || id.MessageID != w.message {
			t.Errorf("identity %s: want source %s and message %s, got %+v", w.key, w.source, w.message, id)
		}
	}
	if e := ids["email:"+email]; !e.LastSeen.After(e.FirstSeen) {
		t.Errorf("identity email (seen in three messages): want lastSeen after firstSeen, got %+v", e)
	}
	webProfile := ids["anonymous_id:"+anon1].ProfileID
	appProfile := ids["user_id:"+userID].ProfileID
	browser2 := ids["anonymous_id:"+anon2].ProfileID
	tablet := ids["anonymous_id:"+anon3].ProfileID
	if ids["email:"+email].ProfileID != webProfile {
		t.Errorf("identity email: want first attached to the web profile %s, got %+v", webProfile, ids["email:"+email])
	}
	if _, ok := ids["email:"+company]; ok {
		t.Errorf("identities: the group's e-mail %s became an identifier of the person", company)
	}
	distinct := map[string]bool{webProfile: true, appProfile: true, browser2: true, tablet: true}
	if len(distinct) != 4 || distinct[""] {
		t.Errorf("identities: want four distinct original profiles (web %q, app %q, second browser %q, tablet %q)",
			webProfile, appProfile, browser2, tablet)
	}
	for id := range distinct {
		if !slices.Contains(p.Members, id) {
			t.Errorf("profile %s: members %v lack original profile %s", p.ID, p.Members, id)
		}
	}
	if !distinct[p.ID] {
		t.Errorf("profile id %s is none of the merged profiles %v", p.ID, keys(distinct))
	}

	// Merges: the CRM identify joined web and app, the second browser's
	// identify joined that browser, and the tablet's track joined the
	// tablet by its context.traits e-mail. The unified profile was never
	// the absorbed one.
	ms := s.merges(t, p.ID)
	if len(ms) != 3 {
		t.Fatalf("merges: want 3, got %+v", ms)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].MessageID < ms[j].MessageID })
	pair := func(m merge) map[string]bool { return map[string]bool{m.Survivor: true, m.Absorbed: true} }
	for _, m := range ms {
		if m.Absorbed == p.ID || m.Survivor == m.Absorbed || m.At.IsZero() ||
			!slices.Contains(p.Members, m.Survivor) || !slices.Contains(p.Members, m.Absorbed) {
			t.Errorf("merge %+v: want two different members of %v, the unified %s not absorbed, and a time", m, p.Members, p.ID)
		}
	}
	if m := ms[0]; m.MessageID != msgID(5) || m.SourceID != crm.ID || !mapsEqual(pair(m), map[string]bool{webProfile: true, appProfile: true}) ||
		!identifierOf(m, map[string]string{"user_id": userID, "email": email}) {
		t.Errorf("merge by the CRM identify: want message %s from %s joining %s and %s via its user id or e-mail; got %+v",
			msgID(5), crm.ID, webProfile, appProfile, m)
	}
	if m := ms[1]; m.MessageID != msgID(7) || m.SourceID != web.ID || !pair(m)[browser2] ||
		!identifierOf(m, map[string]string{"anonymous_id": anon2, "email": email}) {
		t.Errorf("merge by the second browser's identify: want message %s from %s joining %s via its anonymous id or e-mail; got %+v",
			msgID(7), web.ID, browser2, m)
	}
	if m := ms[2]; m.MessageID != msgID(10) || m.SourceID != web.ID || !pair(m)[tablet] ||
		!identifierOf(m, map[string]string{"anonymous_id": anon3, "email": email}) {
		t.Errorf("merge by the tablet's track: want message %s from %s joining %s via its anonymous id or e-mail; got %+v",
			msgID(10), web.ID, tablet, m)
	}

	// Traits: each from the source and message that set it; e-mail from the
	// latest event.
	vt := s.verboseTraits(t, "crm_id:"+crmID)
	wantTraits := []struct {
		key, value, source, message, profile string
	}{
		{"newsletter", "weekly", web.ID, msgID(2), webProfile},
		{"first_name", "Ada", app.ID, msgID(3), appProfile},
		{"crm_tier", "gold", crm.ID, msgID(5), ""},
		{"last_name", "Lovelace", crm.ID, msgID(5), ""},
		{"favorite_color", "green", web.ID, msgID(7), ""},
		{"email", email, web.ID, msgID(7), ""},
	}
	for _, w := range wantTraits {
		got, ok := vt[w.key]
		if !ok {
			t.Errorf("verbose traits: %q missing from %v", w.key, keys(vt))
			continue
		}
		var value string
		json.Unmarshal(got.Value, &value)
		if value != w.value || got.SourceID != w.source || got.MessageID != w.message ||
			(w.profile != "" && got.ProfileID != w.profile) || !slices.Contains(p.Members, got.ProfileID) {
			t.Errorf("trait %s: want value %q from source %s, message %s, profile %q (a member of %v); got %+v (value %s)",
				w.key, w.value, w.source, w.message, w.profile, p.Members, got, got.Value)
		}
	}
	if tr := vt["email"]; !tr.EventTime.Equal(base.Add(7 * time.Minute)) {
		t.Errorf("trait email: want event time %v (the latest identify), got %v", base.Add(7*time.Minute), tr.EventTime)
	}
	if tr, ok := vt["name"]; ok {
		t.Errorf("trait name: the group's name became the person's: %+v (value %s)", tr, tr.Value)
	}

	// Timeline: the ten messages from three sources, once each.
	checkTimeline(t, s, "anonymous_id:"+anon2, sent)

	// The app batch's batch-level context reached each of its items.
	for _, e := range s.events(t, "phone:"+phone, url.Values{"type": {"screen"}}) {
		var ctx struct {
			Device struct {
				ID string `json:"id"`
			} `json:"device"`
		}
		if json.Unmarshal(e.Context, &ctx); e.MessageID != msgID(4) || ctx.Device.ID != device {
			t.Errorf("screen event: want message %s with the batch's context.device.id %q, got %s with context %s",
				msgID(4), device, e.MessageID, e.Context)
		}
	}
}

// identifierOf reports whether a merge names one of the allowed identifier
// types with its expected value.
func identifierOf(m merge, allowed map[string]string) bool {
	v, ok := allowed[m.IdentifierType]
	return ok && v == m.Identifier
}

// mapsEqual reports whether two sets are equal.
func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// keys lists a map's keys in order, for failure messages.
func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// mustJSON encodes v or fails the test.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding JSON: %v", err)
	}
	return b
}
