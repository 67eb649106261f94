package pipeline

import (
	"bytes"
	"encoding/json"
	"sort"

	"github.com/kithcdp/kith"
)

// consentOf reads the consent decisions an event carries in
// context.consent.categoryPreferences (Segment's consent object, sent on
// any event and on `Segment Consent Preference Updated`). Most events
// carry none, and those are skipped without decoding.
func consentOf(m kith.Message) []kith.Consent {
	if !bytes.Contains(m.Raw, []byte(`"categoryPreferences"`)) {
		return nil
	}
	var v struct {
		Context struct {
			Consent struct {
				CategoryPreferences map[string]json.RawMessage `json:"categoryPreferences"`
			} `json:"consent"`
		} `json:"context"`
	}
	if json.Unmarshal(m.Raw, &v) != nil {
		return nil
	}
	prefs := v.Context.Consent.CategoryPreferences
	cats := make([]string, 0, len(prefs))
	for c := range prefs {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var out []kith.Consent
	for _, c := range cats {
		var granted bool
		if c == "" || json.Unmarshal(prefs[c], &granted) != nil {
			continue // only true and false are decisions
		}
		out = append(out, kith.Consent{Category: c, Granted: granted, At: m.EventTime(), SourceID: m.SourceID, MessageID: m.MessageID, Seq: m.Seq})
	}
	return out
}
