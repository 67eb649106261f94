package kith

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// CompareOrders orders orders oldest first, by event time then log
// position.
func CompareOrders(a, b Order) int {
	if c := a.Timestamp.Compare(b.Timestamp); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}

// PredictedTraits expands a stored JSON object of predicted trait values
// into traits with provenance "predicted". Stores call it so every backend
// reports predicted traits the same way.
func PredictedTraits(profileID, runID string, at time.Time, object []byte) ([]Trait, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(object, &m); err != nil {
		return nil, fmt.Errorf("predicted traits: %w", err)
	}
	out := make([]Trait, 0, len(m))
	for k, v := range m {
		out = append(out, Trait{Key: k, Value: v, Provenance: ProvenancePredicted, ProfileID: profileID, RunID: runID, EventTime: at})
	}
	return out, nil
}

// WithPredicted combines a profile's event traits with the predicted traits
// of its members: per key the most recent prediction, which replaces an
// event trait of the same key. The result is sorted by key.
func WithPredicted(events, predicted []Trait) []Trait {
	if len(predicted) == 0 {
		return events
	}
	latest := map[string]Trait{}
	for _, p := range predicted {
		if cur, ok := latest[p.Key]; !ok || p.EventTime.After(cur.EventTime) {
			latest[p.Key] = p
		}
	}
	out := make([]Trait, 0, len(events)+len(latest))
	for _, t := range events {
		if p, ok := latest[t.Key]; ok {
			others := t.Others
			t.Others = nil
			p.Others = append(append(p.Others, t), others...)
			latest[t.Key] = p
			continue
		}
		out = append(out, t)
	}
	for _, p := range latest {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Trait) int { return cmp.Compare(a.Key, b.Key) })
	return out
}
