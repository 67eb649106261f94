package audience

import (
	"reflect"
	"testing"

	"github.com/kithcdp/kith"
)

// TestReads: what a definition reads, with the computed traits and
// audiences it refers to followed and named (issue 14: the pii:read check
// must see through them).
func TestReads(t *testing.T) {
	prog, err := Compile([]kith.Definition{
		computed("contact", `last(traits.email of event * where context.ip exists)`),
		audienceDef("emails", `traits.email ends_with "@example.com"`),
		audienceDef("both", `audience "emails" and traits.contact exists`),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		def  kith.Definition
		want []Read
	}{
		{kith.Definition{Kind: kith.KindAudience, Key: "x", Text: `traits.plan = "pro" or not traits.email starts_with "a"`},
			[]Read{{Trait: "plan", Op: "=", Value: "pro"}, {Trait: "email", Op: "starts_with", Value: "a"}}},
		{kith.Definition{Kind: kith.KindAudience, Key: "x", Text: `consent "Advertising" and count(event "Page" where properties.path = "/p") > 1`},
			[]Read{{Path: "properties.path", Op: "=", Value: "/p"}}},
		{kith.Definition{Kind: kith.KindAudience, Key: "x", Text: `sum(properties.total of event "Order Completed") > 1`},
			[]Read{{Path: "properties.total", Fn: FnSum}}},
		{kith.Definition{Kind: kith.KindAudience, Key: "x", Text: `traits.contact starts_with "a"`},
			[]Read{{Path: "traits.email", Fn: FnLast, Via: []string{"computed trait contact"}}, {Path: "context.ip", Op: "exists", Via: []string{"computed trait contact"}}}},
		{kith.Definition{Kind: kith.KindAudience, Key: "x", Condition: []byte(`{"audience":"both"}`)},
			[]Read{
				{Trait: "email", Op: "ends_with", Value: "@example.com", Via: []string{"audience both", "audience emails"}},
				{Path: "traits.email", Fn: FnLast, Via: []string{"audience both", "computed trait contact"}},
				{Path: "context.ip", Op: "exists", Via: []string{"audience both", "computed trait contact"}},
			}},
		{kith.Definition{Kind: kith.KindComputedTrait, Key: "y", Text: `unique_count(properties.sku of event "Viewed" where properties.price > 5)`},
			[]Read{{Path: "properties.sku", Fn: FnUniqueCount}, {Path: "properties.price", Op: ">", Value: 5.0}}},
	}
	for _, tt := range tests {
		got, err := prog.Reads(tt.def)
		if err != nil {
			t.Errorf("%s%s: %v", tt.def.Text, tt.def.Condition, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s%s reads\n%+v, want\n%+v", tt.def.Text, tt.def.Condition, got, tt.want)
		}
	}
	if _, err := prog.Reads(kith.Definition{Kind: kith.KindAudience, Key: "x", Text: `traits.email ~ 1`}); kith.ErrorCode(err) != kith.EINVALID {
		t.Errorf("bad definition: %v, want EINVALID", err)
	}
	if got, ok := prog.SavedReads(kith.KindAudience, "emails"); !ok || !reflect.DeepEqual(got, []Read{{Trait: "email", Op: "ends_with", Value: "@example.com"}}) {
		t.Errorf("SavedReads(emails) = %+v, %v", got, ok)
	}
	if got, ok := prog.SavedReads(kith.KindComputedTrait, "contact"); !ok || len(got) != 2 {
		t.Errorf("SavedReads(contact) = %+v, %v", got, ok)
	}
	if _, ok := prog.SavedReads(kith.KindAudience, "nope"); ok {
		t.Error("SavedReads of a missing audience")
	}
}
