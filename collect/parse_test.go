package collect

import (
	"encoding/json"
	"testing"
	"time"
)

func TestHasNUL(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"a":"x\u0000"}`, true},
		{`{"a":"x\\u0000"}`, false}, // a literal backslash, then text
		{`{"a":"x\\\u0000"}`, true}, // a literal backslash, then NUL
		{`{"a":"plain"}`, false},
	}
	for _, tc := range tests {
		if got := hasNUL([]byte(tc.in)); got != tc.want {
			t.Errorf("hasNUL(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

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
