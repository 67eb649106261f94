package pipeline_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// drainWith runs an indexer with rules until the log is applied.
func drainWith(t *testing.T, store kith.Store, rules *identity.Rules, batchSize int) {
	t.Helper()
	drainConfig(t, store, rules, pipeline.Config{BatchSize: batchSize})
}

// drainConfig is drainWith with the indexer's other settings.
func drainConfig(t *testing.T, store kith.Store, rules *identity.Rules, cfg pipeline.Config) {
	t.Helper()
	secret, _ := store.Secret(context.Background())
	cfg.Rules = identity.NewCurrent(rules).Load
	ix := pipeline.New(store, secret, cfg)
	for {
		n, err := ix.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// ownerOf resolves "type:value" under rules to its canonical profile, ""
// if no profile holds it.
func ownerOf(t *testing.T, store kith.Store, rules *identity.Rules, ref string) string {
	t.Helper()
	secret, _ := store.Secret(context.Background())
	id, ok := rules.ParseRef(ref)
	if !ok {
		t.Fatalf("bad ref %q", ref)
	}
	k := identity.NewKeyer(secret).Key(id)
	o, err := store.LookupIdentifiers(context.Background(), []kith.IdentKey{k})
	if err != nil {
		t.Fatal(err)
	}
	return o[k].Canonical
}

func mustRules(t *testing.T, js string) *identity.Rules {
	t.Helper()
	r, err := identity.ParseRules([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The identity rules, from Segment's documented Unify examples and the
// rule declarations of the identity issue.
func TestIdentityRules(t *testing.T) {
	custom := `{"types":[
		{"name":"user_id","sources":["userId"],"priority":1,"limit":1},
		{"name":"email","sources":["traits.email","context.traits.email"],"normalise":"email","priority":2,"limit":5},
		{"name":"crm_id","sources":["externalIds"],"priority":3,"limit":5,"neverMerge":true},
		{"name":"phone","sources":["traits.phone"],"normalise":"phone","priority":4,"limit":5},
		{"name":"loyalty_card","sources":["properties.loyalty_card","traits.loyalty_card"],"normalise":"lower","priority":5,"limit":1},
		{"name":"anonymous_id","sources":["anonymousId"],"priority":9,"limit":2,"window":"7d"}],
		"blocked":{"exact":["guest@shop.example"],"patterns":["^0+$"]},
		"defaultRegion":"NL"}`
	tests := []struct {
		name  string
		rules string // "" = defaults
		msgs  []string
		same  [][]string
		apart [][2]string
		// absent refs must not be attached to any profile.
		absent []string
	}{
		{
			name: "missed logout: a shared anonymous_id does not merge two users",
			msgs: []string{
				`{"type":"identify","anonymousId":"a1","userId":"u1"}`,
				`{"type":"identify","anonymousId":"a1","userId":"u2"}`,
			},
			same:  [][]string{{"user_id:u1", "anonymous_id:a1"}},
			apart: [][2]string{{"user_id:u1", "user_id:u2"}},
		},
		{
			name: "without the user_id limit the shared anonymous_id would merge them",
			rules: `{"types":[{"name":"user_id","sources":["userId"],"priority":1},
				{"name":"anonymous_id","sources":["anonymousId"],"priority":9}]}`,
			msgs: []string{
				`{"type":"identify","anonymousId":"a1","userId":"u1"}`,
				`{"type":"identify","anonymousId":"a1","userId":"u2"}`,
			},
			same: [][]string{{"user_id:u1", "anonymous_id:a1", "user_id:u2"}},
		},
		{
			name: "the events of the shared device after the switch go to the new user only by user_id",
			msgs: []string{
				`{"type":"identify","anonymousId":"a1","userId":"u1","traits":{"email":"one@x.io"}}`,
				`{"type":"track","event":"e","anonymousId":"a1","userId":"u2"}`,
				`{"type":"identify","userId":"u2","traits":{"email":"two@x.io"}}`,
			},
			same:  [][]string{{"user_id:u1", "anonymous_id:a1", "email:one@x.io"}, {"user_id:u2", "email:two@x.io"}},
			apart: [][2]string{{"user_id:u1", "user_id:u2"}},
		},
		{
			name: "an e-mail shared by two user ids is dropped, not merged",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"family@x.io"}}`,
				`{"type":"identify","userId":"u2","traits":{"email":"family@x.io"}}`,
			},
			same:  [][]string{{"user_id:u1", "email:family@x.io"}},
			apart: [][2]string{{"user_id:u1", "user_id:u2"}},
		},
		{
			name: "without conflict the same links still merge",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"ada@x.io"}}`,
				`{"type":"identify","anonymousId":"a9","traits":{"email":"bob@x.io"}}`,
				`{"type":"track","event":"e","anonymousId":"a9","context":{"traits":{"email":"ada@x.io"}}}`,
			},
			same: [][]string{{"user_id:u1", "email:ada@x.io", "anonymous_id:a9", "email:bob@x.io"}},
		},
		{
			name: "a sixth e-mail on one profile is dropped (limit 5)",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"e1@x.io"}}`,
				`{"type":"identify","userId":"u1","traits":{"email":"e2@x.io"}}`,
				`{"type":"identify","userId":"u1","traits":{"email":"e3@x.io"}}`,
				`{"type":"identify","userId":"u1","traits":{"email":"e4@x.io"}}`,
				`{"type":"identify","userId":"u1","traits":{"email":"e5@x.io"}}`,
				`{"type":"identify","userId":"u1","traits":{"email":"e6@x.io"}}`,
			},
			same:   [][]string{{"user_id:u1", "email:e1@x.io", "email:e5@x.io"}},
			absent: []string{"email:e6@x.io"},
		},
		{
			name:  "never-merge: two CRM ids linked by an e-mail stay apart",
			rules: custom,
			msgs: []string{
				`{"type":"identify","anonymousId":"r1","context":{"externalIds":[{"id":"C-1","type":"crm_id"}]},"traits":{"email":"ann@x.io"}}`,
				`{"type":"identify","anonymousId":"r2","context":{"externalIds":[{"id":"C-2","type":"crm_id"}]}}`,
				`{"type":"track","event":"e","anonymousId":"r2","context":{"traits":{"email":"ann@x.io"}}}`,
			},
			same:  [][]string{{"crm_id:C-1", "email:ann@x.io", "anonymous_id:r1"}, {"crm_id:C-2", "anonymous_id:r2"}},
			apart: [][2]string{{"crm_id:C-1", "crm_id:C-2"}},
		},
		{
			name:  "anonymous_id limit 2 within 7 days: a third in the week is dropped",
			rules: custom,
			msgs: []string{
				`{"type":"identify","userId":"u1","anonymousId":"w1","timestamp":"2026-03-01T10:00:00Z"}`,
				`{"type":"identify","userId":"u1","anonymousId":"w2","timestamp":"2026-03-02T10:00:00Z"}`,
				`{"type":"identify","userId":"u1","anonymousId":"w3","timestamp":"2026-03-03T10:00:00Z"}`,
			},
			same:   [][]string{{"user_id:u1", "anonymous_id:w1", "anonymous_id:w2"}},
			absent: []string{"anonymous_id:w3"},
		},
		{
			name:  "anonymous_id limit 2 within 7 days: ids older than the window do not count",
			rules: custom,
			msgs: []string{
				`{"type":"identify","userId":"u1","anonymousId":"w1","timestamp":"2026-03-01T10:00:00Z"}`,
				`{"type":"identify","userId":"u1","anonymousId":"w2","timestamp":"2026-03-02T10:00:00Z"}`,
				`{"type":"identify","userId":"u1","anonymousId":"w3","timestamp":"2026-03-20T10:00:00Z"}`,
			},
			same: [][]string{{"user_id:u1", "anonymous_id:w1", "anonymous_id:w2", "anonymous_id:w3"}},
		},
		{
			name:  "phones in E.164 with the default region link across formats",
			rules: custom,
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"phone":"+31 6 1234 5678"}}`,
				`{"type":"identify","anonymousId":"a7","traits":{"phone":"06-12345678"}}`,
			},
			same: [][]string{{"user_id:u1", "phone:+31612345678", "anonymous_id:a7", "phone:0612345678"}},
		},
		{
			name:  "custom types from properties and traits, normalised as declared",
			rules: custom,
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"loyalty_card":"LC-9"}}`,
				`{"type":"track","event":"Order Completed","anonymousId":"till-4","properties":{"loyalty_card":"lc-9 "}}`,
			},
			same: [][]string{{"user_id:u1", "loyalty_card:lc-9", "anonymous_id:till-4"}},
		},
		{
			name:  "configured blocked values never link",
			rules: custom,
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"Guest@Shop.example","phone":"0000"}}`,
				`{"type":"identify","userId":"u2","traits":{"email":"guest@shop.example","phone":"0000"}}`,
			},
			apart:  [][2]string{{"user_id:u1", "user_id:u2"}},
			absent: []string{"email:guest@shop.example"},
		},
		{
			name: "default blocked values never link",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"test@test.com"},"anonymousId":"undefined"}`,
				`{"type":"identify","userId":"u2","traits":{"email":"TEST@test.com"},"anonymousId":"undefined"}`,
			},
			apart:  [][2]string{{"user_id:u1", "user_id:u2"}},
			absent: []string{"email:test@test.com", "anonymous_id:undefined"},
		},
		{
			name: "device ids by device type; advertising ids only with ad tracking on",
			msgs: []string{
				`{"type":"track","event":"App Opened","anonymousId":"m1","context":{"device":{"id":"D-1","type":"ios","advertisingId":"AD-1","adTrackingEnabled":false}}}`,
				`{"type":"identify","userId":"u1","context":{"device":{"id":"D-1","type":"ios","advertisingId":"AD-2","adTrackingEnabled":true}}}`,
			},
			same:   [][]string{{"user_id:u1", "ios.id:D-1", "anonymous_id:m1", "ios.idfa:AD-2"}},
			absent: []string{"ios.idfa:AD-1"},
		},
		{
			name: "alias joins two user ids (an explicit instruction, not held to limits)",
			msgs: []string{
				`{"type":"track","event":"e","userId":"old-7"}`,
				`{"type":"track","event":"e","userId":"new-7"}`,
				`{"type":"alias","userId":"new-7","previousId":"old-7"}`,
			},
			same: [][]string{{"user_id:old-7", "user_id:new-7"}},
		},
	}
	for _, tc := range tests {
		rules := identity.DefaultRules()
		if tc.rules != "" {
			rules = mustRules(t, tc.rules)
		}
		// One event per batch; all in one; one per batch with the
		// profiles' identifiers reloaded from the store for every check;
		// and with the identifier cache rotated after nearly every batch.
		for _, cfg := range []pipeline.Config{{BatchSize: 1}, {BatchSize: 1000}, {BatchSize: 1, MaxProfiles: 1}, {BatchSize: 1, MaxCache: 2}} {
			t.Run(fmt.Sprintf("%s/batch=%d,profiles=%d,cache=%d", tc.name, cfg.BatchSize, cfg.MaxProfiles, cfg.MaxCache), func(t *testing.T) {
				store := openStore(t)
				var items []string
				for _, m := range tc.msgs {
					items = append(items, batch(m))
				}
				appendAll(t, store, "src", items...)
				drainConfig(t, store, rules, cfg)
				for _, group := range tc.same {
					want := ownerOf(t, store, rules, group[0])
					if want == "" {
						t.Fatalf("%s has no profile", group[0])
					}
					for _, ref := range group[1:] {
						if got := ownerOf(t, store, rules, ref); got != want {
							t.Errorf("%s -> %q, want %q (%s)", ref, got, want, group[0])
						}
					}
				}
				for _, pair := range tc.apart {
					a, b := ownerOf(t, store, rules, pair[0]), ownerOf(t, store, rules, pair[1])
					if a == "" || b == "" || a == b {
						t.Errorf("%s and %s must be separate profiles: %q %q", pair[0], pair[1], a, b)
					}
				}
				for _, ref := range tc.absent {
					if p := ownerOf(t, store, rules, ref); p != "" {
						t.Errorf("%s is attached to %s, want it dropped", ref, p)
					}
				}
			})
		}
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, js := range []string{
		`{"types":[{"name":"x","sources":["userId"],"priority":0}]}`,
		`{"types":[{"name":"x","sources":["nowhere"],"priority":1}]}`,
		`{"types":[{"name":"x","sources":["userId"],"priority":1},{"name":"x","sources":["userId"],"priority":2}]}`,
		`{"types":[{"name":"x","sources":["userId"],"priority":1,"normalise":"soundex"}]}`,
		`{"types":[{"name":"x","sources":["userId"],"priority":1,"window":"soon"}]}`,
		`{"types":[{"name":"a:b","sources":["userId"],"priority":1}]}`,
		`{"types":[],"blocked":{"patterns":["("]}}`,
		`{"types":[],"defaultRegion":"XX"}`,
		`{"types":[],"colour":"red"}`,
	} {
		if _, err := identity.ParseRules([]byte(js)); err == nil {
			t.Errorf("ParseRules(%s): want an error", js)
		}
	}
}
