package sqlite_test

import (
	"context"
	"database/sql"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// Counters saturate instead of overflowing (SQLite would turn the sum into
// a REAL that no longer reads as an integer, and every read of the
// accounting would fail from then on), and a counter an older version left
// as a REAL reads saturated.
func TestCountersSaturate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC()
	m := kith.Message{SourceID: "s", MessageID: "m1", Type: "track", Event: "e", Timestamp: now, ReceivedAt: now, Raw: []byte(`{"type":"track"}`)}
	big := map[string]map[string]int64{"s": {"ovf": math.MaxInt64 - 1}}
	for i := range 2 {
		if _, err := s.Append(ctx, kith.AppendBatch{Events: []kith.Message{m}, Rejected: big}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts after a counter reached the top: %v", err)
	}
	if got := c["s"].Rejected["ovf"]; got != math.MaxInt64 {
		t.Errorf("rejected ovf = %d, want it saturated at %d", got, int64(math.MaxInt64))
	}
	s.Close()

	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE counters SET value = 1.5e19 WHERE source_id = 's' AND name = 'received'`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s = open(t, dir)
	defer s.Close()
	c, err = s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts with a counter stored as a REAL: %v", err)
	}
	if c["s"].Received != math.MaxInt64 || c["s"].Accepted != 1 {
		t.Errorf("counts %+v", c["s"])
	}
}
