package activation_test

import (
	"encoding/json"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// A destination's mapping reshapes what it is sent: fields renamed,
// dropped, set, and filled from the traits of the profile the message is
// about, as the profile is now (a trait from an identify that came after
// the event too); the messageId, and so the webhook-id, stays.
func TestMappingReshapesMessages(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.add(
		track("ada", "Viewed", 1),
		`{"type":"identify","userId":"ada","traits":{"plan":"gold","ltv":310.5},"messageId":"ada-2"}`,
	)
	d := r.create(kith.Destination{Name: "shaped", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, "").Config,
		Events: &kith.EventFilter{Types: []string{"track"}},
		Mapping: &kith.Mapping{
			Drop:   []string{"properties.n", "context"},
			Rename: map[string]string{"userId": "customer_id", "event": "action"},
			Set:    map[string]json.RawMessage{"meta.source": json.RawMessage(`"kith"`)},
			Traits: map[string]string{"meta.plan": "plan", "meta.ltv": "ltv", "meta.none": "absent"},
		}})
	r.engine(activation.Config{})
	r.waitDelivered(d, 1)
	reqs := rc.requests()
	var got map[string]any
	if err := json.Unmarshal(reqs[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "track", "messageId": "ada-1", "customer_id": "ada", "action": "Viewed",
		"meta": map[string]any{"source": "kith", "plan": "gold", "ltv": 310.5}, "properties": map[string]any{}}
	for k, v := range want {
		if g, _ := json.Marshal(got[k]); string(g) != mustJSON(t, v) {
			t.Errorf("%s = %s, want %s (message %s)", k, g, mustJSON(t, v), reqs[0].Body)
		}
	}
	for _, k := range []string{"userId", "event", "context"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s was mapped away but is in %s", k, reqs[0].Body)
		}
	}
	if id := reqs[0].Header.Get("webhook-id"); id != "dlv_"+d.ID+"_e1" {
		t.Errorf("webhook-id %q", id)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
