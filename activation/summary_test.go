package activation_test

import (
	"context"
	"fmt"
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
