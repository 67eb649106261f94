package activation

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/kithcdp/kith"
)

// A destination's accounting is read in one place, here, so that the API
// (GET /v1/destinations, /v1/stats, /metrics) and the console show the
// same numbers: what is pending is counted from the stream heads and the
// destination's progress, not by anything that could disagree.

// SummaryStore is what Summarize and ReadHeads read: the log, the
// audience change stream and a destination's progress (kith.Store).
type SummaryStore interface {
	LogHead(ctx context.Context) (int64, error)
	ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error)
	ChangeReader
	TraitChangeHead(ctx context.Context) (int64, error)
	AudienceSize(ctx context.Context, audience string) (int64, error)
	DestinationProgress(ctx context.Context, id string) (kith.DestinationProgress, error)
}

// ChangeReader reads the audience change stream.
type ChangeReader interface {
	MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error)
}

// Heads are the ends of the streams destinations read: the log's last
// seq and the audience change stream's. Read them once for a page of
// destinations, so every destination on it is measured against the same
// ends.
type Heads struct {
	Log, Changes, Traits int64
}

// ReadHeads reads the log head, and the change stream's head when changes
// is true (it takes a few reads; see ChangeHead): pass
// AnyAudiences(destinations...), since only a destination subscribed to
// audiences has changes pending.
func ReadHeads(ctx context.Context, st SummaryStore, changes bool) (Heads, error) {
	var h Heads
	var err error
	if h.Log, err = st.LogHead(ctx); err != nil {
		return h, fmt.Errorf("reading the log head: %w", err)
	}
	if h.Traits, err = st.TraitChangeHead(ctx); err != nil {
		return h, fmt.Errorf("reading the trait change head: %w", err)
	}
	if changes {
		h.Changes, err = ChangeHead(ctx, st)
	}
	return h, err
}

// AnyAudiences reports whether one of ds subscribes to audiences.
func AnyAudiences(ds ...kith.Destination) bool {
	for _, d := range ds {
		if len(d.Audiences) > 0 {
			return true
		}
	}
	return false
}

// ChangeHead returns the seq of the latest audience change (0 when there
// is none), where a new destination starts in that stream. The stores
// answer only "the first change after a position", so the head is found
// as the smallest position no change follows: positions doubling until
// one has nothing after it, then a binary search below it, each probe
// one read of one change. A change appended meanwhile may be missed; a
// destination created at that moment is then sent it, which is what one
// created a moment earlier would do.
func ChangeHead(ctx context.Context, st ChangeReader) (int64, error) {
	// next returns the seq of the first change after after, if any.
	next := func(after int64) (int64, bool, error) {
		cs, err := st.MembershipChanges(ctx, after, "", "", 1)
		if err != nil {
			return 0, false, fmt.Errorf("reading the audience change stream after %d: %w", after, err)
		}
		if len(cs) == 0 {
			return 0, false, nil
		}
		return cs[0].Seq, true, nil
	}
	// lo is a position at or below the head, hi one at or above it.
	var lo, hi int64
	for step := int64(1); ; step *= 2 {
		seq, ok, err := next(lo + step)
		if err != nil {
			return 0, err
		}
		if !ok {
			hi = lo + step
			break
		}
		lo = seq
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		seq, ok, err := next(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = seq
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Account is one destination's accounting: every message it subscribes
// to is delivered, filtered, retrying, dead-lettered or still pending.
// The JSON names are the API's published ones.
type Account struct {
	Delivered int64 `json:"delivered"`
	// Pending counts what the destination has not handled yet: the
	// events appended to the log after its position (when it subscribes
	// to events; the log head minus its position) and the audience
	// changes after its position in the change stream (when it
	// subscribes to audiences), and the trait changes after its position
	// in that stream (when it subscribes to traits), and the members of
	// the audiences its first sync has not finished sending. What its
	// filters will drop is among them, so it is an upper bound.
	Pending int64 `json:"pending"`
	// BehindSeconds is how long ago the oldest pending event arrived (0
	// when none is pending).
	BehindSeconds float64 `json:"behindSeconds"`
	Retrying      int64   `json:"retrying"`
	DeadLettered  int64   `json:"dead_lettered"`
	// Filtered is the sum of FilteredBy, the messages not sent by reason
	// (subscription, consent, …).
	Filtered   int64            `json:"filtered"`
	FilteredBy map[string]int64 `json:"filteredBy"`
}

// Summarize returns destination d's accounting from its stored counts c
// (kith.DestinationStore.DestinationCounts), the stream heads h and its
// stored progress, which it reads and returns too. An ENOTFOUND error
// means d was deleted meanwhile.
func Summarize(ctx context.Context, st SummaryStore, d kith.Destination, c kith.DestinationCounts, h Heads, now time.Time) (Account, kith.DestinationProgress, error) {
	p, err := st.DestinationProgress(ctx, d.ID)
	if err != nil {
		return Account{}, p, fmt.Errorf("destination %s: reading its progress: %w", d.Name, err)
	}
	a := Account{Delivered: c.Delivered, Retrying: c.Retrying, DeadLettered: c.DeadLettered, FilteredBy: map[string]int64{}}
	for reason, n := range c.Filtered {
		a.FilteredBy[reason] = n
		a.Filtered += n
	}
	if d.Events != nil && h.Log > p.LogSeq {
		a.Pending += h.Log - p.LogSeq
		msgs, err := st.ReadLog(ctx, p.LogSeq, 1)
		if err != nil {
			return a, p, fmt.Errorf("destination %s: reading its oldest pending event: %w", d.Name, err)
		}
		if len(msgs) > 0 {
			behind := now.Sub(msgs[0].ReceivedAt).Seconds()
			a.BehindSeconds = math.Round(max(behind, 0)*1000) / 1000
		}
	}
	if len(d.Audiences) > 0 && h.Changes > p.ChangeSeq {
		a.Pending += h.Changes - p.ChangeSeq
	}
	if len(d.Traits) > 0 && h.Traits > p.TraitSeq {
		a.Pending += h.Traits - p.TraitSeq
	}
	// A first sync still to do: the members of the audiences it has not
	// finished (the one it is in counted whole).
	for i := p.Sync - 1; p.Sync > 0 && i < len(d.Audiences); i++ {
		n, err := st.AudienceSize(ctx, d.Audiences[i])
		if err != nil {
			return a, p, fmt.Errorf("destination %s: reading the size of %s: %w", d.Name, d.Audiences[i], err)
		}
		a.Pending += n
	}
	return a, p, nil
}

// LastError returns the error of the latest of s.Attempts that failed,
// "" when none did.
func (s State) LastError() string {
	for i := len(s.Attempts) - 1; i >= 0; i-- {
		if s.Attempts[i].Error != "" {
			return s.Attempts[i].Error
		}
	}
	return ""
}
