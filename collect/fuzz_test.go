package collect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kithcdp/kith"
	. "github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/rawjson"
)

// fuzzEndpoints are the collection endpoints Parse serves (/v1/batch and
// one per call type).
var fuzzEndpoints = []string{"batch", "track", "identify", "page", "screen", "group", "alias"}

// fuzzReasons are the rejection reasons Parse may give.
var fuzzReasons = map[string]bool{
	kith.ReasonInvalidJSON: true, kith.ReasonMissingType: true, kith.ReasonUnknownType: true,
	kith.ReasonMissingID: true, kith.ReasonMissingEvent: true, kith.ReasonMissingPrevious: true,
	kith.ReasonMissingGroupID: true, kith.ReasonEventTooLarge: true, kith.ReasonMessageIDTooLong: true,
	kith.ReasonInvalidField: true,
}

// fuzzDefaultObjects are the members each type always has as objects
// (Segment fills them with {}).
var fuzzDefaultObjects = map[string][]string{
	"identify": {"traits"}, "group": {"traits"},
	"track": {"properties"}, "page": {"properties"}, "screen": {"properties"},
}

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = Limits{MaxEventBytes: 2 << 10, MaxRequestBytes: 16 << 10, MaxMessageIDLen: 20}

// storable reports why decoded JSON text could not be kept in a text
// column (PostgreSQL refuses NUL and invalid UTF-8), or "".
func storable(v any) string {
	switch x := v.(type) {
	case string:
		return kith.TextProblem(x)
	case map[string]any:
		for k, e := range x {
			if why := storable(k); why != "" {
				return why + " in a key"
			}
			if why := storable(e); why != "" {
				return why
			}
		}
	case []any:
		for _, e := range x {
			if why := storable(e); why != "" {
				return why
			}
		}
	}
	return ""
}

// checkMessage asserts what every accepted message promises: its stored
// form is one valid JSON object, storable text, within the limits, whose
// members agree with the typed fields and carry what its type requires.
func checkMessage(t *testing.T, body []byte, m kith.Message, received time.Time) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("body %q: accepted %s: "+format, append([]any{body, m.Raw}, args...)...)
	}
	if !json.Valid(m.Raw) || !utf8.Valid(m.Raw) {
		fail("not valid JSON in UTF-8")
	}
	if len(m.Raw) > fuzzLimits.MaxEventBytes {
		fail("%d bytes, over the limit", len(m.Raw))
	}
	if p := kith.JSONTextProblem(m.Raw); p != "" {
		fail("%s", p)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(m.Raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		fail("not a JSON object: %v", err)
	}
	if why := storable(doc); why != "" {
		fail("holds %s", why)
	}
	for _, s := range []string{m.MessageID, m.Type, m.Event, m.UserID, m.AnonymousID} {
		if why := storable(s); why != "" {
			fail("a typed field holds %s", why)
		}
	}
	str := func(key string) string {
		s, _ := doc[key].(string)
		return s
	}
	if _, leaked := doc["writeKey"]; leaked {
		fail("the writeKey is stored")
	}
	if !contains(fuzzEndpoints[1:], m.Type) || str("type") != m.Type {
		fail("type %q (raw %q)", m.Type, str("type"))
	}
	if m.MessageID == "" || str("messageId") != m.MessageID || utf8.RuneCountInString(m.MessageID) > fuzzLimits.MaxMessageIDLen && !strings.HasPrefix(m.MessageID, "kith-") {
		fail("messageId %q (raw %q)", m.MessageID, str("messageId"))
	}
	if m.UserID == "" && m.AnonymousID == "" {
		fail("neither userId nor anonymousId")
	}
	if str("userId") != m.UserID || str("anonymousId") != m.AnonymousID {
		fail("ids %q %q, raw %q %q", m.UserID, m.AnonymousID, str("userId"), str("anonymousId"))
	}
	switch m.Type {
	case "track":
		if strings.TrimSpace(m.Event) == "" || str("event") != m.Event {
			fail("track event %q", m.Event)
		}
	case "alias":
		if str("previousId") == "" || m.UserID == "" {
			fail("alias without previousId or userId")
		}
	case "group":
		if str("groupId") == "" {
			fail("group without groupId")
		}
	}
	for _, key := range append([]string{"context", "integrations"}, fuzzDefaultObjects[m.Type]...) {
		if _, ok := doc[key].(map[string]any); !ok {
			fail("%s is not an object", key)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, str("timestamp"))
	if err != nil || !ts.Equal(m.Timestamp) {
		fail("timestamp %q, typed %v", str("timestamp"), m.Timestamp)
	}
	ra, err := time.Parse(time.RFC3339Nano, str("receivedAt"))
	if err != nil || !ra.Equal(m.ReceivedAt) || !m.ReceivedAt.Equal(received) {
		fail("receivedAt %q, typed %v", str("receivedAt"), m.ReceivedAt)
	}
	if m.Revenue != nil {
		props, _ := doc["properties"].(map[string]any)
		if _, ok := props["revenue"]; !ok {
			fail("revenue %v without properties.revenue", *m.Revenue)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FuzzParse feeds request bodies to every collection endpoint. Each item
// must end as either a message that re-marshals to valid, storable JSON
// with the fields its type requires, or a rejection with a known reason
// and a message; a batch answers for each of its items exactly once.
func FuzzParse(f *testing.F) {
	seeds := []struct {
		ep   uint8
		body string
	}{
		{1, `{"userId":"u1","event":"Order Completed","properties":{"revenue":"19.95"},"timestamp":"2026-01-01T00:00:00Z","sentAt":"2026-01-01T00:00:05Z"}`},
		{2, `{"anonymousId":"a1","traits":{"email":"x@example.com"},"context":{"ip":"1.2.3.4"},"writeKey":"wk"}`},
		{3, `{"userId":12345,"name":"Home","properties":null,"originalTimestamp":"2026-01-01 10:00:00+02:00"}`},
		{4, `{"userId":"u","name":"Settings","timestamp":"2026-01-01"}`},
		{5, `{"userId":"u","groupId":"g1","traits":{"name":"Acme"}}`},
		{6, `{"userId":"u","previousId":"a1","messageId":"m-1"}`},
		{0, `{"writeKey":"wk","sentAt":"2026-01-01T00:00:10.5Z","context":{"library":{"name":"x"}},"integrations":{"All":true},"batch":[{"type":"track","userId":"u","event":"e","timestamp":"2026-01-01T00:00:00Z"},{"type":"identify","anonymousId":"a","traits":{"k\u00e9y":"v"}},{"type":"nope"},7,{"type":"alias","userId":"u"}]}`},
		{0, `{"batch":[{"type":"track","userId":"u","event":"e","properties":{"x":"a\u0000b"}}]}`},
		{0, `{"batch":[{"type":"track","userId":"u","event":"e","messageId":"` + strings.Repeat("x", 30) + `"}]}`},
		{0, `{"batch":{}}`},
		{1, `{"userId":"u","event":"e","context":[1]}`},
		{1, "{\"userId\":\"u\",\"event\":\"\xff\"}"},
		{1, `{"userId":"u","event":" ","timestamp":17}`},
		{1, `[1,2]`},
		{1, `{"userId":"u"`},
		{1, `{"userId":"u","event":"e","originalTimestamp":"0000-01-01T00:00:00Z","sentAt":"9999-12-31T23:59:59.999999999+14:00"}`},
		{1, `{"userId":"u","event":"e","timestamp":"2026-02-30T25:00:00Z"}`},
		{0, `{"context":"x","batch":[{"type":"page","anonymousId":"a","context":{"ip":null}}]}`},
	}
	for _, s := range seeds {
		f.Add(s.ep, []byte(s.body), "203.0.113.9")
	}
	received := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, ep uint8, body []byte, ip string) {
		if len(body) > fuzzLimits.MaxRequestBytes {
			return // the server refuses the request before parsing
		}
		endpoint := fuzzEndpoints[int(ep)%len(fuzzEndpoints)]
		p := Parse(body, endpoint, Meta{ReceivedAt: received, IP: ip}, fuzzLimits)
		want := received.Truncate(time.Microsecond)
		for _, m := range p.Messages {
			checkMessage(t, body, m, want)
		}
		for _, r := range p.Rejected {
			if !fuzzReasons[r.Reason] || r.Message == "" {
				t.Fatalf("body %q: rejection %+v without a known reason and a message", body, r)
			}
		}
		// Each item is answered once: as a message or a rejection.
		items := 1
		if endpoint == "batch" && json.Valid(body) {
			top, _ := rawjson.Object(body)
			if elems, ok, err := rawjson.Array(top["batch"]); ok && err == nil {
				items = len(elems)
			}
		}
		if n := len(p.Messages) + len(p.Rejected); n != items {
			t.Fatalf("body %q to %s: %d messages + %d rejections for %d items", body, endpoint, len(p.Messages), len(p.Rejected), items)
		}
		seen := map[int]bool{}
		for _, r := range p.Rejected {
			if r.Index < 0 || r.Index >= items || seen[r.Index] {
				t.Fatalf("body %q: rejection index %d of %d items (or repeated)", body, r.Index, items)
			}
			seen[r.Index] = true
		}
		// Parsing is deterministic but for the generated message ids.
		again := Parse(body, endpoint, Meta{ReceivedAt: received, IP: ip}, fuzzLimits)
		if len(again.Messages) != len(p.Messages) || !reflect.DeepEqual(again.Rejected, p.Rejected) || again.WriteKey != p.WriteKey {
			t.Fatalf("body %q: two parses disagree", body)
		}
	})
}

// FuzzSubmitItems checks the import path's entry: every item gets exactly
// one outcome, the rejected ones with a reason, and the submission the
// committer sees holds exactly the accepted items and counts exactly the
// rejected ones (plus those rejected before).
func FuzzSubmitItems(f *testing.F) {
	f.Add([]byte("{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\"}\n{\"type\":\"identify\"}\nnot json\n[1]"))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","properties":{"x":[[[]]]}}`))
	f.Add([]byte("\n\n"))
	// Items that are not one JSON value alone: they used to shift the items
	// after them, or panic.
	f.Add([]byte(""))
	f.Add([]byte("\"a\n b\""))
	f.Add([]byte("1,2\n{\"type\":\"identify\",\"userId\":\"u\"}"))
	f.Add([]byte("1],\"context\":{\"ip\":\"1.2.3.4\"},\"x\":[2"))
	f.Add([]byte(`{"type":"alias","userId":"u","previousId":"p"}` + "\n" + `{"type":"group","userId":"u","groupId":"g"}` + "\n" + `{"a":"\u0000"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		var msgs []json.RawMessage
		for _, line := range bytes.Split(in, []byte("\n")) {
			msgs = append(msgs, json.RawMessage(line))
		}
		var subs []Submission
		sub := fuzzSubmitter(func(_ context.Context, s Submission) Outcome {
			subs = append(subs, s)
			return Outcome{Duplicate: make([]bool, len(s.Messages))}
		})
		before := map[string]int64{kith.ReasonInvalidField: 2}
		out, err := SubmitItems(context.Background(), sub, "src", msgs, before, Meta{ReceivedAt: time.Unix(1e9, 0)}, fuzzLimits)
		if err != nil {
			t.Fatalf("SubmitItems(%q): %v", in, err)
		}
		if len(out) != len(msgs) {
			t.Fatalf("SubmitItems(%q): %d outcomes for %d items", in, len(out), len(msgs))
		}
		accepted, rejected := 0, int64(0)
		for i, o := range out {
			switch o.Status {
			case ItemAccepted:
				accepted++
			case ItemRejected:
				rejected++
				if !fuzzReasons[o.Reason] || o.Message == "" {
					t.Fatalf("SubmitItems(%q): item %d rejected without a reason: %+v", in, i, o)
				}
			default:
				t.Fatalf("SubmitItems(%q): item %d has status %q", in, i, o.Status)
			}
		}
		stored, counted := 0, int64(0)
		for _, s := range subs {
			stored += len(s.Messages)
			for _, n := range s.Rejected {
				counted += n
			}
			for _, m := range s.Messages {
				if m.SourceID != "src" {
					t.Fatalf("SubmitItems(%q): a message without its source", in)
				}
			}
		}
		if stored != accepted || counted != rejected+before[kith.ReasonInvalidField] {
			t.Fatalf("SubmitItems(%q): %d stored, %d counted; outcomes say %d accepted, %d rejected", in, stored, counted, accepted, rejected)
		}
	})
}

// fuzzSubmitter is a Submitter that calls a function.
type fuzzSubmitter func(context.Context, Submission) Outcome

// Submit implements Submitter.
func (f fuzzSubmitter) Submit(ctx context.Context, s Submission) Outcome { return f(ctx, s) }

// FuzzBatchContext checks the merge of a batch's context into its items:
// an accepted item's stored context holds the item's own members
// unchanged, then each member of the batch context it lacks, then the
// client's address as ip when neither gives one; a non-object item context
// is rejected, a non-object batch context ignored.
func FuzzBatchContext(f *testing.F) {
	f.Add([]byte(`{"locale":"nl","ip":"2.2.2.2"}`), []byte(`{"ip":"1.1.1.1","x":{"locale":1}}`), "9.9.9.9")
	f.Add([]byte(`{"a\"b":[1,{"c":"}"}]}`), []byte(` { } `), "")
	f.Add([]byte(`{"a":2}`), []byte(`{"\u0061":1}`), "::1")
	f.Add([]byte(`"x"`), []byte(`null`), "1.2.3.4")
	f.Add([]byte(`{}`), []byte(`[1]`), "1.2.3.4")
	f.Fuzz(func(t *testing.T, batchCtx, itemCtx []byte, ip string) {
		if len(batchCtx)+len(itemCtx) > 4<<10 {
			return
		}
		item := `{"type":"track","userId":"u","event":"e"`
		if len(itemCtx) > 0 {
			item += `,"context":` + string(itemCtx)
		}
		item += "}"
		body := `{"batch":[` + item + `]`
		if len(batchCtx) > 0 {
			body += `,"context":` + string(batchCtx)
		}
		body += "}"
		p := Parse([]byte(body), "batch", Meta{ReceivedAt: time.Unix(1e9, 0), IP: ip}, fuzzLimits)
		if !json.Valid([]byte(body)) || !utf8.ValidString(body) {
			return // FuzzParse checks what becomes of those
		}
		var own, def map[string]any
		ownIsObject := len(itemCtx) == 0 || json.Unmarshal(itemCtx, &own) == nil
		if len(batchCtx) > 0 {
			_ = json.Unmarshal(batchCtx, &def) // not an object: ignored
		}
		if len(p.Messages) == 0 {
			if len(p.Rejected) != 1 {
				t.Fatalf("body %s: %+v", body, p)
			}
			r := p.Rejected[0]
			switch {
			case r.Reason == kith.ReasonEventTooLarge, r.Reason == kith.ReasonInvalidField && kith.TextProblem(ip) != "":
			case r.Reason == kith.ReasonInvalidField && !ownIsObject:
			case r.Reason == kith.ReasonInvalidField && strings.Contains(body, `\u0000`):
			default:
				t.Fatalf("body %s: rejected %+v", body, r)
			}
			return
		}
		if !ownIsObject {
			t.Fatalf("body %s: a non-object context was accepted", body)
		}
		want := map[string]any{}
		if ip != "" {
			var v any
			q, _ := json.Marshal(ip) // as stored: invalid UTF-8 becomes U+FFFD
			_ = json.Unmarshal(q, &v)
			want["ip"] = v
		}
		for k, v := range def {
			want[k] = v
		}
		for k, v := range own {
			want[k] = v
		}
		var stored struct {
			Context map[string]any `json:"context"`
		}
		if err := json.Unmarshal(p.Messages[0].Raw, &stored); err != nil {
			t.Fatalf("body %s: stored %s: %v", body, p.Messages[0].Raw, err)
		}
		if !reflect.DeepEqual(stored.Context, want) {
			t.Fatalf("body %s: stored context %v, want %v", body, stored.Context, want)
		}
	})
}
