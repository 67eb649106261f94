package imports

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kithcdp/kith/collect"
)

// CommitSink stores messages in-process through the group committer: the
// server's import endpoints and `kith demo` use it. Messages are validated
// as /v1/batch items and stored under SourceID with the live events.
type CommitSink struct {
	Committer collect.Submitter
	SourceID  string
	// Limits bound each message (MaxRequestBytes is raised to fit any
	// batch the Runner builds).
	Limits collect.Limits
	Now    func() time.Time
	// IP is recorded as context.ip of messages without one.
	IP string
}

// Send implements Sink. Rejected counts that fail CheckRejected are
// refused (EINVALID) and nothing is stored.
func (k CommitSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error) {
	if err := CheckRejected(rejected); err != nil {
		return nil, err
	}
	lim := k.Limits
	if lim.MaxEventBytes == 0 {
		lim = collect.DefaultLimits()
	}
	n := 64
	for _, m := range msgs {
		n += len(m) + 1
	}
	lim.MaxRequestBytes = max(lim.MaxRequestBytes, n)
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	res, err := collect.SubmitItems(ctx, k.Committer, k.SourceID, msgs, rejected, collect.Meta{ReceivedAt: now(), IP: k.IP}, lim)
	if err != nil {
		return nil, err
	}
	out := make([]Outcome, len(res))
	for i, x := range res {
		out[i] = Outcome{Status: x.Status, Reason: x.Reason, Message: x.Message}
	}
	return out, nil
}
