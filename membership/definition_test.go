package membership

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// TestDefinitionStoredForm pins the bytes a definition is stored as: the
// two stores' copies of the codec wrote these very bytes, so databases
// written before they became one still read back, and both stores keep
// the same text.
func TestDefinitionStoredForm(t *testing.T) {
	cet := time.FixedZone("CET", 2*3600)
	tests := []struct {
		name string
		d    kith.Definition
		want string
	}{
		{"an audience, < > & and quotes kept, times in their zone", kith.Definition{Kind: kith.KindAudience, Key: "vip", Text: `lifetime_value > 500 & country = "DE" <b>`,
			Condition: json.RawMessage(`{"trait": "lifetime_value", "op": ">", "value": 500}`), Version: 2,
			CreatedAt: time.Date(2026, 5, 1, 10, 0, 0, 0, cet), UpdatedAt: time.Date(2026, 5, 1, 8, 30, 0, 0, time.UTC),
			Backfill: kith.Backfill{State: kith.BackfillDone, Done: 3, Total: 3, StartedAt: time.Date(2026, 5, 1, 8, 30, 0, 0, time.UTC)}},
			`{"kind":"audience","key":"vip","definition":"lifetime_value > 500 & country = \"DE\" <b>","condition":{"trait":"lifetime_value","op":">","value":500},"version":2,"createdAt":"2026-05-01T10:00:00+02:00","updatedAt":"2026-05-01T08:30:00Z","backfill":{"state":"done","done":3,"total":3,"startedAt":"2026-05-01T08:30:00Z"}}`},
		{"no condition, zero times", kith.Definition{Kind: kith.KindComputedTrait, Key: "n"},
			`{"kind":"computed_trait","key":"n","definition":"","condition":null,"version":0,"createdAt":"0001-01-01T00:00:00Z","updatedAt":"0001-01-01T00:00:00Z","backfill":{"state":"","done":0,"total":0}}`},
	}
	for _, tt := range tests {
		got, err := EncodeDefinition(tt.d)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: EncodeDefinition = %s, %v\nwant %s", tt.name, got, err, tt.want)
			continue
		}
		d, err := DecodeDefinition(got)
		if err != nil {
			t.Fatalf("%s: DecodeDefinition: %v", tt.name, err)
		}
		if d.Condition != nil && tt.d.Condition == nil {
			t.Errorf("%s: a missing condition reads back as %s, want nil", tt.name, d.Condition)
		}
		for _, tm := range []time.Time{d.CreatedAt, d.UpdatedAt, d.Backfill.StartedAt, d.Backfill.FinishedAt} {
			if tm.Location() != time.UTC {
				t.Errorf("%s: time %v read back outside UTC", tt.name, tm)
			}
		}
		if !d.CreatedAt.Equal(tt.d.CreatedAt) || d.Text != tt.d.Text || d.Backfill.Done != tt.d.Backfill.Done {
			t.Errorf("%s: read back %+v, want %+v", tt.name, d, tt.d)
		}
	}
	_, err := EncodeDefinition(kith.Definition{Kind: kith.KindAudience, Key: "bad", Condition: json.RawMessage(`{"a":`)})
	if kith.ErrorCode(err) != kith.EINVALID {
		t.Errorf("a condition that is not JSON: %v, want EINVALID", err)
	}
}
