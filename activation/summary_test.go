package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/sqlite"
)

// ChangeHead finds the last change of the stream the embedded store
// keeps, whatever its length, bulk changes (several seqs in one row)
// included.
func TestChangeHead(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// batches of single entries; bulk, when > 0, is a bulk entry of
		// that many profiles appended after them.
		singles []int
		bulk    int
	}{
		{name: "empty"},
		{name: "one change", singles: []int{1}},
		{name: "two changes", singles: []int{2}},
		{name: "a power of two", singles: []int{64}},
		{name: "one past it", singles: []int{65}},
		{name: "several batches", singles: []int{3, 70, 200}},
		{name: "bulk last", singles: []int{5}, bulk: 40},
		{name: "bulk only", bulk: 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			n := 0
			for _, size := range tc.singles {
				var b kith.AudienceBatch
				for range size {
					b.Changes = append(b.Changes, kith.MembershipChange{Audience: "a", ProfileID: fmt.Sprintf("p_%04d", n), Entered: true, At: at, Cause: "event"})
					n++
				}
				if err := st.ApplyAudienceBatch(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			if tc.bulk > 0 {
				bulk := kith.BulkChange{Audience: "b", Entered: true, At: at, Cause: "backfill"}
				for i := range tc.bulk {
					bulk.ProfileIDs = append(bulk.ProfileIDs, fmt.Sprintf("p_%04d", i))
				}
				if err := st.ApplyAudienceBatch(ctx, kith.AudienceBatch{Bulk: []kith.BulkChange{bulk}}); err != nil {
					t.Fatal(err)
				}
			}
			var want int64
			for after := int64(0); ; {
				cs, err := st.MembershipChanges(ctx, after, "", "", 1000)
				if err != nil {
					t.Fatal(err)
				}
				if len(cs) == 0 {
					break
				}
				want, after = cs[len(cs)-1].Seq, cs[len(cs)-1].Seq
			}
			got, err := activation.ChangeHead(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("ChangeHead = %d, want %d", got, want)
			}
		})
	}
}

// Pending counts what each stream a destination reads holds after its
// position: the log's events (when it subscribes to events), audience
// changes, trait changes (when it subscribes to traits) and, during a
// first sync, the members of the audiences it has not finished.
func TestSummarizePending(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.addViews(5, 2)
	ada, bob := r.profileOf("user_id", "u0"), r.profileOf("user_id", "u1")
	at := time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC)
	if err := r.store.ApplyAudienceBatch(ctx, kith.AudienceBatch{
		Changes: []kith.MembershipChange{
			{Audience: "a", ProfileID: ada, Entered: true, At: at, Cause: "event"},
			{Audience: "a", ProfileID: bob, Entered: true, At: at, Cause: "event"},
			{Audience: "b", ProfileID: bob, Entered: true, At: at, Cause: "event"},
		},
		TraitChanges: []kith.TraitChange{
			{ProfileID: ada, Key: "ltv", Value: json.RawMessage(`1`), Provenance: kith.ProvenanceComputed, At: at},
			{ProfileID: bob, Key: "ltv", Value: json.RawMessage(`2`), Provenance: kith.ProvenanceComputed, At: at},
		},
	}); err != nil {
		t.Fatal(err)
	}
	h, err := activation.ReadHeads(ctx, r.store, true)
	if err != nil || h != (activation.Heads{Log: 5, Changes: 3, Traits: 2}) {
		t.Fatalf("heads %+v %v, want log 5, changes 3, traits 2", h, err)
	}
	for _, c := range []struct {
		name  string
		d     kith.Destination
		start kith.DestinationProgress
		want  int64
	}{
		{"events", kith.Destination{Events: every}, kith.DestinationProgress{LogSeq: 2}, 3},
		{"not subscribed to events", kith.Destination{}, kith.DestinationProgress{LogSeq: 2}, 0},
		{"audience changes", kith.Destination{Audiences: []string{"a"}}, kith.DestinationProgress{LogSeq: 5, ChangeSeq: 1}, 2},
		{"first sync of a then b", kith.Destination{Audiences: []string{"a", "b"}}, kith.DestinationProgress{LogSeq: 5, ChangeSeq: 3, Sync: 1}, 2 + 1},
		{"first sync of b", kith.Destination{Audiences: []string{"a", "b"}}, kith.DestinationProgress{LogSeq: 5, ChangeSeq: 3, Sync: 2, SyncAfter: ada}, 1},
		{"traits", kith.Destination{Traits: []string{"ltv"}}, kith.DestinationProgress{LogSeq: 5, TraitSeq: 1}, 1},
		{"all", kith.Destination{Events: every, Audiences: []string{"a"}, Traits: []string{"ltv"}}, kith.DestinationProgress{}, 5 + 3 + 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.d
			d.ID, d.Name, d.Type, d.Config = "dst_"+strings.ReplaceAll(c.name, " ", "_"), strings.ReplaceAll(c.name, " ", "-"), kith.DestinationWebhook, webhookTo("https://e.com", "").Config
			if err := r.store.CreateDestination(ctx, d, c.start); err != nil {
				t.Fatal(err)
			}
			a, p, err := activation.Summarize(ctx, r.store, d, kith.DestinationCounts{}, h, at)
			if err != nil || p != c.start || a.Pending != c.want {
				t.Errorf("pending %d (progress %+v, %v), want %d", a.Pending, p, err, c.want)
			}
		})
	}
}
