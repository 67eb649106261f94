package collect

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestParseIDsAndDefaults(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, endpoint, body string
		userID, anonID       string
		event                string
		revenue              float64
	}{
		{"numeric userId becomes a string", "identify", `{"userId":12345678901234567890}`, "12345678901234567890", "", "", 0},
		{"track revenue typed", "track", `{"anonymousId":"a","event":"Order Completed","properties":{"revenue":"19.95"}}`, "", "a", "Order Completed", 19.95},
		{"screen name is the event", "screen", `{"userId":"u","name":"Settings"}`, "u", "", "Settings", 0},
		{"endpoint type wins over body type", "page", `{"type":"track","userId":"u","name":"Home"}`, "u", "", "Home", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Parse([]byte(tc.body), tc.endpoint, Meta{ReceivedAt: now}, DefaultLimits())
			if len(p.Messages) != 1 {
				t.Fatalf("rejected: %v", p.Rejected)
			}
			m := p.Messages[0]
			if m.UserID != tc.userID || m.AnonymousID != tc.anonID || m.Event != tc.event || m.Type != tc.endpoint {
				t.Errorf("got user=%q anon=%q event=%q type=%q", m.UserID, m.AnonymousID, m.Event, m.Type)
			}
			if (tc.revenue == 0) != (m.Revenue == nil) || (m.Revenue != nil && *m.Revenue != tc.revenue) {
				t.Errorf("revenue %v, want %v", m.Revenue, tc.revenue)
			}
			if !m.ReceivedAt.Equal(now) || !m.Timestamp.Equal(now) {
				t.Errorf("times %v %v", m.ReceivedAt, m.Timestamp)
			}
		})
	}
}

func TestHasKeyAndMerge(t *testing.T) {
	keys := []struct {
		obj, key string
		want     bool
	}{
		{`{"ip":"1.2.3.4"}`, "ip", true},
		{`{"a":{"ip":1},"b":["ip"]}`, "ip", false},
		{`{"a":"ip","b":1}`, "ip", false},
		{`{ "x" : 1 , "ip" : null }`, "ip", true},
		{`{"i\u0070":1}`, "ip", true},
		{`{"a\"":{"ip":1}}`, "ip", false},
		{`{}`, "ip", false},
	}
	for _, tc := range keys {
		if got := hasKey([]byte(tc.obj), tc.key); got != tc.want {
			t.Errorf("hasKey(%s, %q) = %v, want %v", tc.obj, tc.key, got, tc.want)
		}
	}
	merges := []struct {
		own, want string
	}{
		{``, `{"ip":"9.9.9.9","locale":"nl"}`},
		{`{}`, `{"ip":"9.9.9.9","locale":"nl"}`},
		{`{"locale":"en"}`, `{"ip":"9.9.9.9","locale":"en"}`},
		{` { "ip" : "1.1.1.1" , "x":{"locale":1}}`, `{"locale":"nl","ip" : "1.1.1.1" , "x":{"locale":1}}`},
	}
	for _, tc := range merges {
		var own json.RawMessage
		if tc.own != "" {
			own = json.RawMessage(tc.own)
		}
		got, rej := mergeObject(own, "context", map[string]json.RawMessage{"locale": json.RawMessage(`"nl"`)}, map[string]json.RawMessage{"ip": json.RawMessage(`"9.9.9.9"`), "locale": json.RawMessage(`"xx"`)})
		if rej != nil {
			t.Fatal(rej)
		}
		if string(got) != tc.want {
			t.Errorf("mergeObject(%s) = %s, want %s", tc.own, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("mergeObject(%s) is not valid JSON: %s", tc.own, got)
		}
	}
	if _, rej := mergeObject(json.RawMessage(`[1]`), "context"); rej == nil {
		t.Error("a non-object context must be rejected")
	}
}

func TestNumberIsFiniteDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{`42.5`, 42.5, true}, {`"19.95"`, 19.95, true}, {`-1e3`, -1000, true},
		{`"NaN"`, 0, false}, {`"Infinity"`, 0, false}, {`"-inf"`, 0, false}, {`"0x1p4"`, 0, false},
		{`"abc"`, 0, false}, {`true`, 0, false}, {`null`, 0, false}, {``, 0, false},
	}
	for _, tc := range tests {
		got, ok := number(json.RawMessage(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("number(%s) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLimitsCountWhatIsStored(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lim := Limits{MaxEventBytes: 1000, MaxRequestBytes: 1 << 20, MaxMessageIDLen: 100}
	// A batch context that fits the request but pushes each item over the
	// per-message limit once merged in.
	body := `{"context":{"pad":"` + strings.Repeat("x", 1200) + `"},"batch":[{"type":"track","userId":"u","event":"e"}]}`
	p := Parse([]byte(body), "batch", Meta{ReceivedAt: now}, lim)
	if len(p.Messages) != 0 || len(p.Rejected) != 1 || p.Rejected[0].Reason != "event_too_large" {
		t.Fatalf("merged context over the limit: %+v", p.Rejected)
	}
	// messageId length is in characters, not bytes.
	cjk := strings.Repeat("漢", 100)
	p = Parse([]byte(`{"userId":"u","event":"e","messageId":"`+cjk+`"}`), "track", Meta{ReceivedAt: now}, lim)
	if len(p.Messages) != 1 {
		t.Fatalf("100-character messageId rejected: %+v", p.Rejected)
	}
	// The writeKey of a rejected message is still found.
	p = Parse([]byte(`{"writeKey":"wk_1","userId":"u"}`), "track", Meta{ReceivedAt: now}, lim)
	if p.WriteKey != "wk_1" || len(p.Rejected) != 1 || p.Rejected[0].Reason != "missing_event" {
		t.Fatalf("writeKey of a rejected message: %+v", p)
	}
}

// An item nested just deep enough to be valid alone but not inside a
// batch is rejected by itself; the others are stored.
func TestSubmitItemsDeeplyNested(t *testing.T) {
	deep := `{"type":"track","event":"x","userId":"u1","properties":{"x":` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `}}`
	if !json.Valid([]byte(deep)) || json.Valid([]byte(`{"batch":[`+deep+`]}`)) {
		t.Fatal("the fixture is not at the decoder's depth limit")
	}
	var got Submission
	sub := submitterFunc(func(_ context.Context, s Submission) Outcome {
		got = s
		return Outcome{Duplicate: make([]bool, len(s.Messages))}
	})
	out, err := SubmitItems(context.Background(), sub, "src", []json.RawMessage{json.RawMessage(deep), json.RawMessage(`{"type":"track","event":"y","userId":"u2"}`)}, nil,
		Meta{ReceivedAt: time.Now()}, Limits{MaxEventBytes: 1 << 20, MaxRequestBytes: 1 << 20, MaxMessageIDLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Status != ItemRejected || out[0].Reason != kith.ReasonInvalidJSON || out[1].Status != ItemAccepted {
		t.Fatalf("outcomes %+v", out)
	}
	if len(got.Messages) != 1 || got.Rejected[kith.ReasonInvalidJSON] != 1 {
		t.Fatalf("submitted %d messages, rejected %v", len(got.Messages), got.Rejected)
	}
}

type submitterFunc func(context.Context, Submission) Outcome

func (f submitterFunc) Submit(ctx context.Context, s Submission) Outcome { return f(ctx, s) }
