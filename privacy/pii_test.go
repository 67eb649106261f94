package privacy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"ada@example.com": "a***@example.com",
		"+31612345678":    "+31***78",
		"Lovelace":        "L***",
		"":                "",
	} {
		if got := MaskString(in); got != want {
			t.Errorf("MaskString(%q) = %q, want %q", in, got, want)
		}
	}
	ev := MaskEvent(json.RawMessage(`{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","plan":"pro","address":{"city":"Delft","street":"Oude Delft 1"}},
		"context":{"traits":{"phone":"+31612345678"},"externalIds":[{"id":"ada@example.com","type":"email"},{"id":"C1","type":"crm_id"}]}}`))
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		t.Fatal(err)
	}
	tr := m["traits"].(map[string]any)
	ctx := m["context"].(map[string]any)
	ext := ctx["externalIds"].([]any)
	if tr["email"] != "a***@example.com" || tr["plan"] != "pro" || tr["address"].(map[string]any)["street"] != "O***" ||
		ctx["traits"].(map[string]any)["phone"] != "+31***78" || ext[0].(map[string]any)["id"] != "a***@example.com" || ext[1].(map[string]any)["id"] != "C1" || m["userId"] != "u1" {
		t.Fatalf("masked event %s", ev)
	}
}

func TestMaskEventQueryStrings(t *testing.T) {
	ev := MaskEvent(json.RawMessage(`{"type":"page","properties":{"path":"/reset?email=ada@example.com","url":"https://shop.example.com/p/1"},"context":{"page":{"url":"https://shop.example.com/reset?email=ada@example.com"}}}`))
	if strings.Contains(string(ev), "ada@example.com") || !strings.Contains(string(ev), `"/reset?***"`) || !strings.Contains(string(ev), `"https://shop.example.com/p/1"`) {
		t.Fatalf("masked %s", ev)
	}
}
