package activation

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
)

func TestMappingApply(t *testing.T) {
	const msg = `{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed",` +
		`"properties":{"revenue":12345678901234567890.5,"secret":"x","nested":{"a":1}},"context":{"ip":"10.0.0.1"},"count":"7"}`
	traits := map[string]json.RawMessage{"ltv": json.RawMessage(`310.25`), "tier": json.RawMessage(`"gold"`)}
	for _, c := range []struct {
		name string
		m    kith.Mapping
		want string
	}{
		{"drop", kith.Mapping{Drop: []string{"context.ip", "properties.secret", "absent.path", "count.deeper"}},
			`{"context":{},"count":"7","event":"Order Completed","messageId":"m1","properties":{"nested":{"a":1},"revenue":12345678901234567890.5},"type":"track","userId":"u1"}`},
		{"rename, numbers kept as written", kith.Mapping{Rename: map[string]string{"userId": "customer_id", "properties.revenue": "amount.value"}},
			`{"amount":{"value":12345678901234567890.5},"context":{"ip":"10.0.0.1"},"count":"7","customer_id":"u1","event":"Order Completed","messageId":"m1","properties":{"nested":{"a":1},"secret":"x"},"type":"track"}`},
		{"renames do not chain", kith.Mapping{Rename: map[string]string{"event": "count", "count": "event"}},
			`{"context":{"ip":"10.0.0.1"},"count":"Order Completed","event":"7","messageId":"m1","properties":{"nested":{"a":1},"revenue":12345678901234567890.5,"secret":"x"},"type":"track","userId":"u1"}`},
		{"set creates objects, skips a path through a non-object", kith.Mapping{Set: map[string]json.RawMessage{
			"context.library.name": json.RawMessage(`"kith"`), "count.x": json.RawMessage(`1`), "flag": json.RawMessage(`true`)}},
			`{"context":{"ip":"10.0.0.1","library":{"name":"kith"}},"count":"7","event":"Order Completed","flag":true,"messageId":"m1","properties":{"nested":{"a":1},"revenue":12345678901234567890.5,"secret":"x"},"type":"track","userId":"u1"}`},
		{"traits, a missing one left out", kith.Mapping{Traits: map[string]string{"context.traits.ltv": "ltv", "properties.tier": "tier", "properties.none": "missing"}},
			`{"context":{"ip":"10.0.0.1","traits":{"ltv":310.25}},"count":"7","event":"Order Completed","messageId":"m1","properties":{"nested":{"a":1},"revenue":12345678901234567890.5,"secret":"x","tier":"gold"},"type":"track","userId":"u1"}`},
		{"drop then rename then set", kith.Mapping{Drop: []string{"userId"}, Rename: map[string]string{"userId": "uid"}, Set: map[string]json.RawMessage{"userId": json.RawMessage(`"fixed"`)}},
			`{"context":{"ip":"10.0.0.1"},"count":"7","event":"Order Completed","messageId":"m1","properties":{"nested":{"a":1},"revenue":12345678901234567890.5,"secret":"x"},"type":"track","userId":"fixed"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			mp, err := newMapper(&c.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mp.apply([]byte(msg), traits)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestCheckMapping(t *testing.T) {
	many := map[string]string{}
	for i := range maxMappingEntries + 1 {
		many["p"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "q"
	}
	for _, c := range []struct {
		m    kith.Mapping
		want string // "" for valid
	}{
		{kith.Mapping{Drop: []string{"context.ip"}, Rename: map[string]string{"userId": "customer.id"}, Set: map[string]json.RawMessage{"a": json.RawMessage(`{"b":[1]}`)}, Traits: map[string]string{"t": "ltv"}}, ""},
		{kith.Mapping{Drop: []string{""}}, "mapping.drop[0]: empty path"},
		{kith.Mapping{Drop: []string{"a..b"}}, "empty field name"},
		{kith.Mapping{Drop: []string{"messageId"}}, "type and messageId cannot be mapped"},
		{kith.Mapping{Rename: map[string]string{"userId": "type"}}, "mapping.rename.userId: path \"type\""},
		{kith.Mapping{Rename: map[string]string{"messageId.x": "id"}}, "cannot be mapped"},
		{kith.Mapping{Set: map[string]json.RawMessage{"a": json.RawMessage(`{nope`)}}, "mapping.set.a: must be a JSON value"},
		{kith.Mapping{Set: map[string]json.RawMessage{"a": json.RawMessage(`"` + strings.Repeat("x", maxSetValueBytes) + `"`)}}, "at most 4096 bytes"},
		{kith.Mapping{Set: map[string]json.RawMessage{"a": json.RawMessage(`"\u0000"`)}}, ""},
		{kith.Mapping{Traits: map[string]string{"a": ""}}, "empty trait key"},
		{kith.Mapping{Traits: map[string]string{"a": "k\x00"}}, "mapping.traits.a"},
		{kith.Mapping{Drop: []string{"a\xff"}}, "mapping.drop[0]"},
		{kith.Mapping{Drop: []string{strings.Repeat("a.", 10) + "z"}}, "deeper than 10"},
		{kith.Mapping{Drop: []string{strings.Repeat("a", maxItemBytes+1)}}, "longer than 200 bytes"},
		{kith.Mapping{Rename: many}, "at most 100 entries"},
	} {
		err := checkMapping(&c.m)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.m, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error with %q", c.m, err, c.want)
		case err != nil && kith.ErrorCode(err) != kith.EINVALID:
			t.Errorf("%+v: %v is not EINVALID", c.m, err)
		}
	}
}

// FuzzMappingApply: whatever message a mapping is applied to, it returns
// a JSON object or an error, never panics, and keeps the messageId and
// type it cannot touch.
func FuzzMappingApply(f *testing.F) {
	for _, s := range []string{
		`{"type":"track","messageId":"m1","userId":"u1","properties":{"a":{"b":1}},"context":"x"}`,
		`{"type":"identify","messageId":"m2","traits":{"plan":null},"n":1e400}`,
		`{}`, `[]`, `null`, `{"properties":[1,2]}`, "{\"a\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	mp, err := newMapper(&kith.Mapping{
		Drop:   []string{"context.ip", "properties.a.b"},
		Rename: map[string]string{"userId": "customer.id", "properties.a": "moved", "context": "properties.context"},
		Set:    map[string]json.RawMessage{"properties.a.c": json.RawMessage(`"set"`), "n": json.RawMessage(`2`)},
		Traits: map[string]string{"traits.plan": "plan"},
	})
	if err != nil {
		f.Fatal(err)
	}
	traits := map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := mp.apply(body, traits)
		if err != nil {
			return
		}
		// Numbers as written: 1e700 is JSON, if no float64.
		g, err := decodeJSON(out)
		got, ok := g.(map[string]any)
		if err != nil || !ok || !json.Valid(out) {
			t.Fatalf("mapped %q into %q, not a JSON object: %v", body, out, err)
		}
		if i, err := decodeJSON(body); err == nil {
			in, _ := i.(map[string]any)
			for _, k := range fixedFields {
				if fmt.Sprint(in[k]) != fmt.Sprint(got[k]) {
					t.Fatalf("%s changed: %q → %q", k, body, out)
				}
			}
		}
	})
}
