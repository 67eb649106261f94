package activation_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// countingStore is a real store that counts the recipients each
// AdvanceDestination records.
type countingStore struct {
	activation.Store
	mu         sync.Mutex
	recipients []string
}

func (s *countingStore) AdvanceDestination(ctx context.Context, id string, u kith.DestinationUpdate) error {
	s.mu.Lock()
	s.recipients = append(s.recipients, u.Recipients...)
	s.mu.Unlock()
	return s.Store.AdvanceDestination(ctx, id, u)
}

// A worker records a profile as a recipient once, not in every step that
// sends about it (a row written per profile and step, on the writer the
// ack path shares); the record is there for erasure to find.
func TestRecipientRecordedOnce(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.addViews(30, 3) // u0, u1, u2 in turn: in every step of 10
	d := r.hook("hook", rc.URL)
	st := &countingStore{Store: r.store}
	r.engine(activation.Config{Store: st, BatchSize: 10})
	r.waitDelivered(d, 30)
	st.mu.Lock()
	got := slices.Clone(st.recipients)
	st.mu.Unlock()
	slices.Sort(got)
	want := []string{r.profileOf("user_id", "u0"), r.profileOf("user_id", "u1"), r.profileOf("user_id", "u2")}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("recipients recorded %v, want each of %v once", got, want)
	}
	ids, err := r.store.ReceivedBy(context.Background(), want[:1])
	if err != nil || !slices.Equal(ids, []string{d.ID}) {
		t.Fatalf("ReceivedBy = %v, %v; want [%s]", ids, err, d.ID)
	}
}
