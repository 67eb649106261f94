package membership

import (
	"time"

	"github.com/kithcdp/kith"
)

// HistoryRow is one row of the membership history as both stores keep
// it: a change (N = 1, ProfileID set) or a bulk change (N > 1) covering
// the seqs Seq to Seq+N-1, one per profile in the order it names them.
// A Plan makes the rows a batch appends; a store scans the rows it reads
// back into one and expands them with Expand and Find.
type HistoryRow struct {
	Seq, N    int64
	Audience  string
	ProfileID string // a change's profile
	// ProfileIDs are a bulk change's profiles in a row a Plan makes. The
	// store keeps them front-coded (EncodeIDs) and reads them back as
	// IDs.
	ProfileIDs []string
	IDs        []byte // a bulk change's profiles as stored, in a row read back
	Entered    bool
	At         time.Time
	Cause      string
	CauseSeq   int64
}

// Change returns the change of r with the given seq and profile.
func (r *HistoryRow) Change(seq int64, profile string) kith.MembershipChange {
	return kith.MembershipChange{Seq: seq, Audience: r.Audience, ProfileID: profile, Entered: r.Entered, At: r.At.UTC(), Cause: r.Cause, CauseSeq: r.CauseSeq}
}

// Expand appends r's changes with seq > after to out until out holds
// limit: a change, or a bulk change's one per profile (IDs, as stored).
func (r *HistoryRow) Expand(out []kith.MembershipChange, after int64, limit int) ([]kith.MembershipChange, error) {
	if r.N <= 1 {
		if r.Seq > after && len(out) < limit {
			out = append(out, r.Change(r.Seq, r.ProfileID))
		}
		return out, nil
	}
	return ExpandBulk(out, r.Change(r.Seq, ""), r.IDs, after, limit)
}

// Find returns the seq of profile in r, a bulk change read back, or 0
// when r does not name it.
func (r *HistoryRow) Find(profile string) (int64, error) {
	return FindInBulk(r.IDs, r.Seq, profile)
}
