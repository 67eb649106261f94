package activation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/kithcdp/kith"
)

// kindTrait is the kind of the identify calls that carry trait changes.
const kindTrait = "trait"

// traitChanges reads the next trait changes and decides each: skipped (a
// trait the destination does not subscribe to: not counted), filtered,
// or an identify about the profile with the trait's new value (null when
// it is gone), as Segment sends computed traits.
func (w *worker) traitChanges(ctx context.Context) (read, error) {
	from := w.progress.TraitSeq
	limit := w.e.cfg.BatchSize
	chs, err := w.e.store.TraitChanges(ctx, from, limit)
	if err != nil {
		return read{}, fmt.Errorf("destination %s: reading trait changes after %d: %w", w.d.Name, from, err)
	}
	if len(chs) == 0 {
		return read{upTo: from}, nil
	}
	rd := read{upTo: chs[len(chs)-1].Seq, full: len(chs) == limit}
	allowed := w.consent()
	people := map[string]person{}
	for _, ch := range chs {
		it := item{seq: ch.Seq}
		if !slices.Contains(w.d.Traits, ch.Key) {
			rd.items = append(rd.items, it)
			continue
		}
		id := deliveryID(w.d.ID, 't', ch.Seq)
		d, reason, err := w.profileMessage(ctx, allowed, people, ch.ProfileID, id, kindTrait, func(p person) ([]byte, error) {
			return traitMessage(id, ch, p)
		})
		if err != nil {
			return read{}, err
		}
		it.d, it.reason = d, reason
		rd.items = append(rd.items, it)
	}
	return rd, nil
}

// traitMessage is the identify that carries one trait change: the
// trait's new value, and the profile's e-mail beside it as audience
// messages carry it.
func traitMessage(id string, ch kith.TraitChange, p person) ([]byte, error) {
	value := ch.Value
	if len(value) == 0 {
		value = json.RawMessage("null")
	}
	traits := map[string]json.RawMessage{ch.Key: value}
	if p.email != "" && ch.Key != "email" {
		traits["email"], _ = json.Marshal(p.email)
	}
	m := struct {
		Type        string                     `json:"type"`
		MessageID   string                     `json:"messageId"`
		UserID      string                     `json:"userId,omitempty"`
		AnonymousID string                     `json:"anonymousId,omitempty"`
		Traits      map[string]json.RawMessage `json:"traits"`
		Context     map[string]any             `json:"context"`
		Timestamp   string                     `json:"timestamp"`
	}{Type: "identify", MessageID: id, UserID: p.userID, AnonymousID: p.anonymousID, Traits: traits,
		Context:   map[string]any{"kith": map[string]any{"trait": ch.Key, "provenance": ch.Provenance}},
		Timestamp: ch.At.UTC().Format(timeFormat)}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("trait message: %w", err)
	}
	return b, nil
}
