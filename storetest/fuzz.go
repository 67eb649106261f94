package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	kidentity "github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// FuzzWritePath is the body of a fuzz target that every backend runs: what
// the collector accepts, a store holds. Each input becomes Segment messages
// whose identifiers, trait names and values, event name, consent category
// and revenue come from the fuzzer (random strings with NUL characters,
// invalid UTF-8, numbers of any size), written as raw JSON and through
// encoding/json. collect.Parse accepts or rejects each; every accepted one
// must append, index (profiles, identifiers, traits, consent, orders) and
// read back byte for byte, and nothing the store returns may be an error.
// open is called once, with f, and the store is shared by the inputs.
func FuzzWritePath(f *testing.F, open func(tb testing.TB) kith.Store) {
	f.Add("u-1", "email", "ada@example.com", "Order Completed", "Advertising", "42.5")
	f.Add("a\x00b", "na\x00me", "v\x00", "e\x00", "Adv\x00ertising", "1e308")
	f.Add("p_\xff", "k\xff", "\xed\xa0\x80", "\xff", "\xc3", "1e400")
	f.Add("", "", "", "", "", "-0")
	f.Add("12345678901234567890", "traits", `{"nested":"\u0000"}`, "Order Completed", "x", "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000")
	f.Add("u-2", "phone", "+31 6 1234 5678", "Product Viewed", "Analytics", "0.000000000000000000000000000001")
	store := open(f)
	secret, err := store.Secret(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	rules := kidentity.DefaultRules()
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 50, Rules: kidentity.NewCurrent(rules).Load})
	n := 0
	f.Fuzz(func(t *testing.T, id, key, value, event, category, number string) {
		n++
		ctx := context.Background()
		now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
		revenue := "1"
		if jsonNumber.MatchString(number) {
			revenue = number
		}
		enc := func(v any) string {
			b, _ := json.Marshal(v)
			return string(b)
		}
		bodies := []string{
			// Raw bytes straight into the JSON text: invalid UTF-8 and
			// NUL bytes reach the parser as they are.
			`{"type":"identify","userId":"` + id + `","traits":{"` + key + `":"` + value + `"},"messageId":"raw-` + strconv.Itoa(n) + `"}`,
			// Through encoding/json: NUL becomes \u0000, invalid bytes U+FFFD.
			`{"type":"identify","messageId":"enc-` + strconv.Itoa(n) + `","userId":` + enc(id) + `,"traits":` + enc(map[string]any{key: value, "email": value}) +
				`,"context":{"consent":{"categoryPreferences":` + enc(map[string]bool{category: true}) + `}}}`,
			`{"type":"track","messageId":"ord-` + strconv.Itoa(n) + `","anonymousId":` + enc("anon-"+id) + `,"event":` + enc(event) +
				`,"properties":{"revenue":` + revenue + `,"order_id":` + enc(value) + `,"products":[{"product_id":` + enc(key) + `,"price":` + revenue + `,"quantity":3}]}}`,
			`{"type":"track","messageId":"ord2-` + strconv.Itoa(n) + `","userId":"u-order","event":"Order Completed","properties":{"revenue":` + revenue +
				`,"currency":` + enc(category) + `,"products":[{"product_id":"p1","name":` + enc(value) + `,"price":` + revenue + `,"quantity":1e300}]}}`,
		}
		var accepted []kith.Message
		for _, body := range bodies {
			p := collect.Parse([]byte(body), "track", collect.Meta{ReceivedAt: now}, collect.DefaultLimits())
			for _, m := range p.Messages {
				m.SourceID = "src_fuzz"
				if problem := kith.JSONTextProblem(m.Raw); problem != "" {
					t.Fatalf("collect accepted a message whose body %s: %s", problem, m.Raw)
				}
				accepted = append(accepted, m)
			}
			for _, r := range p.Rejected {
				if r.Reason == "" || r.Message == "" {
					t.Fatalf("a rejection without a reason: %+v", r)
				}
			}
		}
		if len(accepted) == 0 {
			return
		}
		res, err := store.Append(ctx, kith.AppendBatch{Events: accepted})
		if err != nil {
			t.Fatalf("Append of %d accepted messages: %v", len(accepted), err)
		}
		for {
			k, err := ix.Step(ctx)
			if err != nil {
				t.Fatalf("indexing accepted messages: %v", err)
			}
			if k == 0 {
				break
			}
		}
		if h := ix.Health(); h.Skipped != 0 {
			t.Fatalf("the indexer set aside %d accepted events", h.Skipped)
		}
		got, err := store.ReadLog(ctx, res.Seqs[0]-1, len(accepted))
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range got {
			if string(m.Raw) != string(accepted[i].Raw) || m.UserID != accepted[i].UserID || m.Event != accepted[i].Event {
				t.Fatalf("event %d read back differs:\n got %s\nwant %s", i, m.Raw, accepted[i].Raw)
			}
			if m.Revenue != nil && (math.IsInf(*m.Revenue, 0) || math.IsNaN(*m.Revenue)) {
				t.Fatalf("event %d: revenue %v is not finite", i, *m.Revenue)
			}
		}
		if _, err := store.Counts(ctx); err != nil {
			t.Fatalf("Counts: %v", err)
		}
		if err := readProfile(ctx, store, rules, id); err != nil {
			t.Fatal(err)
		}
	})
}

// jsonNumber matches a JSON number.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// readProfile reads everything the profile API shows of the profile with
// user id id, if there is one.
func readProfile(ctx context.Context, s kith.Store, rules *kidentity.Rules, id string) error {
	if kith.TextProblem(id) != "" {
		return nil
	}
	secret, err := s.Secret(ctx)
	if err != nil {
		return err
	}
	key := kidentity.NewKeyer(secret).Key(rules.Normalise(kith.IdentUserID, id))
	found, err := s.LookupIdentifiers(ctx, []kith.IdentKey{key})
	if err != nil {
		return fmt.Errorf("LookupIdentifiers: %w", err)
	}
	o, ok := found[key]
	if !ok {
		return nil
	}
	ts, err := s.Traits(ctx, o.Canonical)
	if err != nil {
		return fmt.Errorf("Traits: %w", err)
	}
	for _, tr := range ts {
		if !json.Valid(tr.Value) {
			return fmt.Errorf("trait %q holds invalid JSON %q", tr.Key, tr.Value)
		}
	}
	if _, err := s.Identities(ctx, o.Canonical); err != nil {
		return fmt.Errorf("Identities: %w", err)
	}
	if _, err := s.Consents(ctx, o.Canonical); err != nil {
		return fmt.Errorf("Consents: %w", err)
	}
	return nil
}
