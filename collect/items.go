package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"

	"github.com/kithcdp/kith"
)

// Submitter makes a submission durable (a Committer).
type Submitter interface {
	Submit(ctx context.Context, s Submission) Outcome
}

// Item statuses SubmitItems reports.
const (
	ItemAccepted  = "accepted"
	ItemDuplicate = "duplicate"
	ItemRejected  = "rejected"
	// ItemSuppressed: dropped at ingest, the message carries an
	// identifier of an erased, suppressed person.
	ItemSuppressed = "suppressed"
)

// ItemOutcome is what became of one message given to SubmitItems.
type ItemOutcome struct {
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// SubmitItems validates msgs exactly as a /v1/batch request's items, stores
// the valid ones under sourceID in one group commit, and reports each
// message's outcome in order. rejected adds rejections found before the
// messages were built (rows an import could not map), by reason, to the
// source's accounting in the same commit. Imports use it, so imported data
// takes the path of live events.
func SubmitItems(ctx context.Context, c Submitter, sourceID string, msgs []json.RawMessage, rejected map[string]int64, meta Meta, lim Limits) ([]ItemOutcome, error) {
	// Each item must be one JSON value on its own: spliced into the batch,
	// "" or `1,2` would shift the items after it, and `1],"context":{…}`
	// would reach outside its place.
	for _, m := range msgs {
		if !json.Valid(m) {
			return submitWithout(ctx, c, sourceID, msgs, rejected, meta, lim, func(m json.RawMessage) string {
				if !json.Valid(m) {
					return "the item is not one valid JSON value"
				}
				return ""
			})
		}
	}
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for i, m := range msgs {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(m)
	}
	body.WriteString(`]}`)
	p := Parse(body.Bytes(), "batch", meta, lim)
	out := make([]ItemOutcome, len(msgs))
	if len(msgs) > 0 && len(p.Rejected) == 1 && p.Rejected[0].Reason == kith.ReasonInvalidJSON && len(p.Messages) == 0 {
		// Each item is valid alone, but not inside the batch: nested too
		// deeply for the decoder once wrapped. Such an item is rejected,
		// so every call makes progress.
		deep := func(m json.RawMessage) string {
			if !json.Valid([]byte(`{"batch":[` + string(m) + `]}`)) {
				return "the item is nested too deeply"
			}
			return ""
		}
		if slices.ContainsFunc(msgs, func(m json.RawMessage) bool { return deep(m) != "" }) {
			return submitWithout(ctx, c, sourceID, msgs, rejected, meta, lim, deep)
		}
		for i := range out {
			out[i] = ItemOutcome{Status: ItemRejected, Reason: kith.ReasonInvalidJSON, Message: "the batch is not valid JSON"}
		}
		if _, err := SubmitItems(ctx, c, sourceID, nil, addCounts(rejected, kith.ReasonInvalidJSON, int64(len(msgs))), meta, lim); err != nil {
			return nil, err
		}
		return out, nil
	}
	counts := map[string]int64{}
	for r, n := range rejected {
		counts[r] += n
	}
	for _, r := range p.Rejected {
		out[r.Index] = ItemOutcome{Status: ItemRejected, Reason: r.Reason, Message: r.Message}
		counts[r.Reason]++
	}
	for i := range p.Messages {
		p.Messages[i].SourceID = sourceID
	}
	sub := Submission{SourceID: sourceID, Messages: p.Messages}
	if len(counts) > 0 {
		sub.Rejected = counts
	}
	if len(sub.Messages) == 0 && len(sub.Rejected) == 0 {
		return out, nil
	}
	res := c.Submit(ctx, sub)
	if res.Err != nil {
		return nil, res.Err
	}
	k := 0
	for i := range out {
		if out[i].Status != "" {
			continue
		}
		switch {
		case res.Suppressed != nil && res.Suppressed[k]:
			out[i].Status = ItemSuppressed
		case res.Duplicate[k]:
			out[i].Status = ItemDuplicate
		default:
			out[i].Status = ItemAccepted
		}
		k++
	}
	return out, nil
}

// submitWithout rejects the items bad names a reason for (as invalid
// JSON), submits the others with SubmitItems, and reports every item's
// outcome in order.
func submitWithout(ctx context.Context, c Submitter, sourceID string, msgs []json.RawMessage, rejected map[string]int64, meta Meta, lim Limits, bad func(json.RawMessage) string) ([]ItemOutcome, error) {
	out := make([]ItemOutcome, len(msgs))
	valid := make([]json.RawMessage, 0, len(msgs))
	idx := make([]int, 0, len(msgs))
	for i, m := range msgs {
		if why := bad(m); why != "" {
			out[i] = ItemOutcome{Status: ItemRejected, Reason: kith.ReasonInvalidJSON, Message: why}
		} else {
			valid, idx = append(valid, m), append(idx, i)
		}
	}
	sub, err := SubmitItems(ctx, c, sourceID, valid, addCounts(rejected, kith.ReasonInvalidJSON, int64(len(msgs)-len(valid))), meta, lim)
	if err != nil {
		return nil, err
	}
	for k, o := range sub {
		out[idx[k]] = o
	}
	return out, nil
}

func addCounts(m map[string]int64, reason string, n int64) map[string]int64 {
	out := make(map[string]int64, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if n > 0 {
		out[reason] += n
	}
	return out
}
