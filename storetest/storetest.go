// Package storetest is the conformance suite for kith.Store: one test body
// that every storage backend (sqlite, postgres) runs, so that the backends
// cannot drift apart in what they promise. It follows Litestream's pattern: a
// backend's own test file only knows how to open a fresh store, and Run
// exercises the contract documented in package kith.
//
// The suite checks observable behaviour through the kith.Store interface
// only. Where kith.go leaves an order unspecified (Sources, Identities,
// Traits, Merges), the suite sorts before comparing; where it leaves a value
// unspecified (for example a Limit of zero), the suite does not test it.
package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// Run runs the conformance suite against a backend. open must return a
// fresh, empty, migrated store each time it is called; the suite calls it
// once per subtest. The suite closes every store it gets from open exactly
// once, in a cleanup registered after open returns, so cleanups that open
// registers itself (removing a directory, dropping a schema) run after the
// store is closed.
func Run(t *testing.T, open func(t *testing.T) kith.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s kith.Store)
	}{
		{"EmptyStore", testEmptyStore},
		{"AppendRoundTrip", testAppendRoundTrip},
		{"AppendSeqAcrossBatches", testAppendSeqAcrossBatches},
		{"AppendReportsSeqs", testAppendReportsSeqs},
		{"AppendDedup", testAppendDedup},
		{"AppendRejected", testAppendRejected},
		{"AppendSuppressed", testAppendSuppressed},
		{"AppendConcurrent", testAppendConcurrent},
		{"AppendCanceledContext", testAppendCanceledContext},
		{"ReadLogPaging", testReadLogPaging},
		{"EventsBySeq", testEventsBySeq},
		{"PruneDedup", testPruneDedup},
		{"IndexCursorConflict", testIndexCursorConflict},
		{"IndexConcurrent", testIndexConcurrent},
		{"Identifiers", testIdentifiers},
		{"Merges", testMerges},
		{"Traits", testTraits},
		{"Timeline", testTimeline},
		{"TimelinePaging", testTimelinePaging},
		{"ProfileSummary", testProfileSummary},
		{"Processed", testProcessed},
		{"Sources", testSources},
		{"Tokens", testTokens},
		{"Secret", testSecret},
		{"Orders", testOrders},
		{"OrderNumbers", testOrderNumbers},
		{"Insights", testInsights},
		{"InsightRuns", testInsightRuns},
		{"ClusterReplace", testClusterReplace},
		{"TraitsKeepOthers", testTraitsKeepOthers},
		{"Decisions", testDecisions},
		{"ScanTraits", testScanTraits},
		{"AudienceDefinitions", testAudienceDefinitions},
		{"AudienceBatch", testAudienceBatch},
		{"AudienceOrdinals", testAudienceOrdinals},
		{"AudienceMembersPaging", testAudienceMembersPaging},
		{"AudienceBulk", testAudienceBulk},
		{"TraitChanges", testTraitChanges},
		{"AudienceChanges", testAudienceChanges},
		{"AudienceStates", testAudienceStates},
		{"AudienceMemberships", testAudienceMemberships},
		{"AudienceCursors", testAudienceCursors},
		{"AudienceConflict", testAudienceConflict},
		{"DMPAudiences", testDMPAudiences},
		{"ScanIdentifiers", testScanIdentifiers},
		{"ScanPredicted", testScanPredicted},
		{"AuditLog", testAuditLog},
		{"DailyEvents", testDailyEvents},
		{"AudienceNetChanges", testAudienceNetChanges},
		{"Privacy", testPrivacy},
		{"Consents", testConsents},
		{"FindByName", testFindByName},
		{"Destinations", testDestinations},
		{"DestinationAdvance", testDestinationAdvance},
		{"DestinationAdvanceRefused", testDestinationAdvanceRefused},
		{"DestinationDeliveriesPaging", testDestinationDeliveriesPaging},
		{"DestinationCounts", testDestinationCounts},
		{"DestinationDelete", testDestinationDelete},
		{"DestinationHostileText", testDestinationHostileText},
		{"DestinationRecipients", testDestinationRecipients},
		{"DestinationSync", testDestinationSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
	t.Run("ClosedStore", func(t *testing.T) {
		testClosedStore(t, open(t))
	})
}

// RunPersistence runs the part of the suite that needs to close a store and
// open the same data again: dedup, counters, the log, derived state, sources,
// tokens, the secret, audience definitions, the audience engine's data and
// destinations with their progress and deliveries must survive a restart.
// open returns a fresh, empty, migrated store and a function that opens that
// store's data again after the suite has closed it; the reopen function may
// be called several times, and the suite closes every store it receives
// exactly once.
func RunPersistence(t *testing.T, open func(t *testing.T) (kith.Store, func() kith.Store)) {
	t.Helper()
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("PruneDedupReopen", func(t *testing.T) { testPruneDedupReopen(t, open) })
	t.Run("AudienceReopen", func(t *testing.T) { testAudienceReopen(t, open) })
	t.Run("DestinationReopen", func(t *testing.T) { testDestinationReopen(t, open) })
}

// base is the reference time of the fixtures. It has microseconds so that
// truncation to seconds or milliseconds shows up.
var base = time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)

// at returns base plus the given number of minutes.
func at(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

// message builds a track event whose Raw JSON repeats the typed fields, the
// way collect produces it.
func message(source, messageID string, ts time.Time) kith.Message {
	m := kith.Message{
		SourceID:    source,
		MessageID:   messageID,
		Type:        "track",
		Event:       "Viewed " + messageID,
		UserID:      "user-" + messageID,
		AnonymousID: "anon-" + messageID,
		Timestamp:   ts,
		ReceivedAt:  ts.Add(1500 * time.Microsecond),
	}
	m.Raw = rawOf(m, nil)
	return m
}

// rawOf renders the normalised JSON of m with extra properties.
func rawOf(m kith.Message, props map[string]any) json.RawMessage {
	doc := map[string]any{
		"type":        m.Type,
		"messageId":   m.MessageID,
		"event":       m.Event,
		"userId":      m.UserID,
		"anonymousId": m.AnonymousID,
		"timestamp":   m.Timestamp.UTC().Format(time.RFC3339Nano),
		"receivedAt":  m.ReceivedAt.UTC().Format(time.RFC3339Nano),
	}
	if props != nil {
		doc["properties"] = props
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// identKey derives a deterministic IdentKey for a test identifier.
func identKey(typ, value string) kith.IdentKey {
	sum := sha256.Sum256([]byte(typ + "\x00" + value))
	var k kith.IdentKey
	copy(k[:], sum[:])
	return k
}

// sha returns the SHA-256 of s, the way write keys and tokens are hashed.
func sha(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// mustAppend appends b and fails the test on error or on a malformed result.
func mustAppend(t *testing.T, s kith.Store, b kith.AppendBatch) kith.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(res.Duplicate) != len(b.Events) {
		t.Fatalf("Append: len(Duplicate) = %d, want %d (one flag per event)", len(res.Duplicate), len(b.Events))
	}
	return res
}

// mustApply applies b from cursor from and fails the test on error.
func mustApply(t *testing.T, s kith.Store, from int64, b kith.IndexBatch) {
	t.Helper()
	if err := s.ApplyIndexBatch(t.Context(), from, b); err != nil {
		t.Fatalf("ApplyIndexBatch(from=%d, cursor=%d): %v", from, b.Cursor, err)
	}
}

// readAll returns the whole log, reading it in pages.
func readAll(t *testing.T, s kith.Store) []kith.Message {
	t.Helper()
	var all []kith.Message
	after := int64(0)
	for {
		page, err := s.ReadLog(t.Context(), after, 100)
		if err != nil {
			t.Fatalf("ReadLog(%d, 100): %v", after, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// mustCounts returns Counts and fails the test on error.
func mustCounts(t *testing.T, s kith.Store) map[string]kith.Counts {
	t.Helper()
	c, err := s.Counts(t.Context())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

// noErr fails the test if err is not nil.
func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantCode fails the test unless err carries the kith error code.
func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	if got := kith.ErrorCode(err); got != code {
		t.Fatalf("%s: error code %q (err %v), want %q", what, got, err, code)
	}
}

// sameTime reports whether got is the instant want and is in UTC, the way
// stores return times.
func sameTime(got, want time.Time) bool {
	return got.Equal(want) && got.Location() == time.UTC
}

// checkTime fails the test unless got is the instant want, in UTC.
func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !sameTime(got, want) {
		t.Errorf("%s = %v (location %v), want %v in UTC", what, got, got.Location(), want.UTC())
	}
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// messageDiff describes how got differs from want, ignoring Seq; it returns
// "" when they match. Times must be the same instant and in UTC.
func messageDiff(got, want kith.Message) string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s=%q want %q", name, g, w))
		}
	}
	str("SourceID", got.SourceID, want.SourceID)
	str("MessageID", got.MessageID, want.MessageID)
	str("Type", got.Type, want.Type)
	str("Event", got.Event, want.Event)
	str("UserID", got.UserID, want.UserID)
	str("AnonymousID", got.AnonymousID, want.AnonymousID)
	if !sameTime(got.Timestamp, want.Timestamp) {
		d = append(d, fmt.Sprintf("Timestamp=%v want %v in UTC", got.Timestamp, want.Timestamp.UTC()))
	}
	if !sameTime(got.ReceivedAt, want.ReceivedAt) {
		d = append(d, fmt.Sprintf("ReceivedAt=%v want %v in UTC", got.ReceivedAt, want.ReceivedAt.UTC()))
	}
	switch {
	case got.Revenue == nil && want.Revenue == nil:
	case got.Revenue == nil || want.Revenue == nil:
		d = append(d, fmt.Sprintf("Revenue=%v want %v", fmtRevenue(got.Revenue), fmtRevenue(want.Revenue)))
	case *got.Revenue != *want.Revenue:
		d = append(d, fmt.Sprintf("Revenue=%v want %v", *got.Revenue, *want.Revenue))
	}
	if !jsonEqual(got.Raw, want.Raw) {
		d = append(d, fmt.Sprintf("Raw=%s want %s", got.Raw, want.Raw))
	}
	if d == nil {
		return ""
	}
	return fmt.Sprint(d)
}

func fmtRevenue(r *float64) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprint(*r)
}

// checkMessages fails the test unless got holds want's events in order,
// with strictly ascending positive Seqs.
func checkMessages(t *testing.T, got, want []kith.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %d %v", len(got), ids(got), len(want), ids(want))
	}
	prev := int64(0)
	for i := range got {
		if got[i].Seq <= prev {
			t.Errorf("event %d (%s) has Seq %d after %d: want strictly ascending and positive", i, got[i].MessageID, got[i].Seq, prev)
		}
		prev = got[i].Seq
		if d := messageDiff(got[i], want[i]); d != "" {
			t.Errorf("event %d: %s", i, d)
		}
	}
}

// ids lists the source/messageId pairs of msgs for failure messages.
func ids(msgs []kith.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.SourceID + "/" + m.MessageID
	}
	return out
}

// normCounts drops empty Rejected maps so that nil and empty compare equal.
func normCounts(c kith.Counts) kith.Counts {
	if len(c.Rejected) == 0 {
		c.Rejected = nil
	}
	return c
}

// checkCounts compares the counters of the given sources and checks the
// accounting identity received = accepted + duplicate + rejected +
// suppressed for every source the store reports. LastEventAt is compared
// only where want sets it.
func checkCounts(t *testing.T, got map[string]kith.Counts, want map[string]kith.Counts) {
	t.Helper()
	for src, c := range got {
		if c.Received != c.Accepted+c.Duplicate+c.RejectedTotal()+c.Suppressed {
			t.Errorf("source %q: received %d != accepted %d + duplicate %d + rejected %d",
				src, c.Received, c.Accepted, c.Duplicate, c.RejectedTotal())
		}
	}
	for _, src := range slices.Sorted(maps.Keys(want)) {
		g, w := normCounts(got[src]), normCounts(want[src])
		if w.LastEventAt.IsZero() {
			g.LastEventAt = time.Time{} // not what this check is about
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("Counts()[%q] = %+v, want %+v", src, g, w)
		}
	}
}

// errClosedCheck is returned by callWithin when a call did not return.
var errClosedCheck = errors.New("call did not return within 10s")

// callWithin runs fn and returns its error, or errClosedCheck if it blocks
// for more than 10 seconds (a store that hangs after Close is a bug too).
func callWithin(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return errClosedCheck
	}
}

// errPanicked marks an error recovered from a panic.
var errPanicked = errors.New("panicked")

// isPanic reports whether err came from a recovered panic.
func isPanic(err error) bool { return errors.Is(err, errPanicked) }
