package activation

import (
	"context"
	"fmt"
	"testing"

	"github.com/kithcdp/kith"
)

// Destinations reading the same events attribute each once between them;
// the oldest are forgotten past the bound, and clear forgets all.
func TestOwnersShared(t *testing.T) {
	o := newOwners()
	asked := 0
	attr := func(_ context.Context, ms []kith.Message) ([]string, error) {
		out := make([]string, len(ms))
		for i, m := range ms {
			asked++
			out[i] = fmt.Sprintf("p%d", m.Seq%7)
		}
		return out, nil
	}
	batch := func(from, n int) []kith.Message {
		ms := make([]kith.Message, n)
		for i := range ms {
			ms[i].Seq = int64(from + i)
		}
		return ms
	}
	ctx := context.Background()
	for range 10 { // ten destinations, the same step
		got, err := o.attribute(ctx, attr, batch(1, 500))
		if err != nil || got[0] != "p1" || got[499] != fmt.Sprintf("p%d", 500%7) {
			t.Fatalf("attribute: %v %v", got[:2], err)
		}
	}
	if asked != 500 {
		t.Errorf("%d lookups for ten destinations reading 500 events, want 500", asked)
	}
	o.attribute(ctx, attr, batch(501, ownerCacheSize))
	asked = 0
	o.attribute(ctx, attr, batch(1, 500)) // evicted
	if asked != 500 || len(o.by) != ownerCacheSize {
		t.Errorf("after %d more events: %d lookups of the first 500, %d remembered; want 500 and %d", ownerCacheSize, asked, len(o.by), ownerCacheSize)
	}
	o.clear()
	asked = 0
	o.attribute(ctx, attr, batch(1, 3))
	if asked != 3 {
		t.Errorf("after clear: %d lookups, want 3", asked)
	}
}

// Full pages of the log are read once between the workers; a short page
// (the log's end, which may still grow) is read every time; clear forgets.
func TestLogPagesShared(t *testing.T) {
	l := newLogPages()
	reads := 0
	head := int64(1200)
	rd := func(_ context.Context, after int64, limit int) ([]kith.Message, error) {
		reads++
		var out []kith.Message
		for s := after + 1; s <= head && len(out) < limit; s++ {
			out = append(out, kith.Message{Seq: s})
		}
		return out, nil
	}
	ctx := context.Background()
	for range 10 {
		for _, after := range []int64{0, 500, 1000} {
			if _, err := l.read(ctx, rd, after, 500); err != nil {
				t.Fatal(err)
			}
		}
	}
	if reads != 2+10 { // two full pages once, the short one each time
		t.Errorf("%d reads, want 12", reads)
	}
	l.clear()
	reads = 0
	l.read(ctx, rd, 0, 500)
	if reads != 1 {
		t.Errorf("after clear: %d reads, want 1", reads)
	}
}
