package imports

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/mappings"
)

// memLog is a Submitter that keeps messages in memory and deduplicates
// them by message id, as the event log does.
type memLog struct {
	mu       sync.Mutex
	ids      map[string]bool
	stored   []json.RawMessage
	rejected map[string]int64
}

func (m *memLog) Submit(ctx context.Context, s collect.Submission) collect.Outcome {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids, m.rejected = map[string]bool{}, map[string]int64{}
	}
	out := collect.Outcome{Duplicate: make([]bool, len(s.Messages))}
	for i, msg := range s.Messages {
		if m.ids[msg.MessageID] {
			out.Duplicate[i] = true
			continue
		}
		m.ids[msg.MessageID] = true
		m.stored = append(m.stored, msg.Raw)
	}
	for r, n := range s.Rejected {
		m.rejected[r] += n
	}
	return out
}

// logSink sends to a memLog through collect.SubmitItems, the server's own
// validation; failAfter > 0 makes the Send after that many fail.
type logSink struct {
	log       *memLog
	mu        sync.Mutex
	sends     int
	failAfter int
}

var errInterrupted = errors.New("interrupted")

func (s *logSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error) {
	s.mu.Lock()
	s.sends++
	fail := s.failAfter > 0 && s.sends > s.failAfter
	s.mu.Unlock()
	if fail {
		return nil, errInterrupted
	}
	res, err := collect.SubmitItems(ctx, s.log, "src_test", msgs, rejected,
		collect.Meta{ReceivedAt: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}, collect.DefaultLimits())
	if err != nil {
		return nil, err
	}
	out := make([]Outcome, len(res))
	for i, r := range res {
		out[i] = Outcome{Status: r.Status, Reason: r.Reason, Message: r.Message}
	}
	return out, nil
}

type wantReject struct {
	line   int
	reason string
}

// readyMade are the ready-made mappings with their example files: what
// each row becomes is worked out by hand in the comments of the CSVs'
// bad rows.
var readyMade = []struct {
	name                     string
	read, accepted, rejected int64
	messages                 int64
	rejects                  []wantReject
}{
	{"crm_contacts", 13, 7, 6, 7, []wantReject{
		{7, ReasonInvalidTime}, {8, ReasonMissingKey}, {9, ReasonInvalidBoolean},
		{10, ReasonInvalidTime}, {12, ReasonMalformedRow}, {13, ReasonDuplicateKey}}},
	{"orders", 15, 8, 7, 6, []wantReject{
		{8, ReasonInvalidNumber}, {9, ReasonInconsistent}, {10, ReasonInconsistent},
		{11, ReasonInvalidTime}, {12, ReasonMissingField}, {15, ReasonDuplicateKey}, {16, ReasonInvalidInteger}}},
	{"email_engagement", 11, 7, 4, 7, []wantReject{
		{6, ReasonMissingField}, {7, ReasonInvalidValue}, {10, ReasonInvalidTime}, {11, ReasonMalformedRow}}},
}

func writeExample(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := mappings.Example(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".csv")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readyMapping(t *testing.T, name string) *Mapping {
	t.Helper()
	b, err := mappings.Mapping(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMapping(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func readRejects(t *testing.T, path string) []wantReject {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(recs[0], RejectsHeader) {
		t.Fatalf("rejects header %v", recs[0])
	}
	var out []wantReject
	for _, r := range recs[1:] {
		var line int
		fmt.Sscan(r[1], &line)
		if r[3] == "" {
			t.Errorf("reject at line %d has no message", line)
		}
		out = append(out, wantReject{line, r[2]})
	}
	return out
}

func TestReadyMadeMappings(t *testing.T) {
	for _, tc := range readyMade {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, err := FileInput(writeExample(t, dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			log := &memLog{}
			rejects := filepath.Join(dir, "rejects.csv")
			r := &Runner{Source: "shop", Mapping: readyMapping(t, tc.name), Sink: &logSink{log: log},
				RejectsPath: rejects, StatePath: rejects + ".state", BatchSize: 3}
			sum, err := r.Run(context.Background(), []Input{in})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Read != tc.read || sum.Accepted != tc.accepted || sum.Rejected != tc.rejected || sum.Duplicates != 0 || sum.Messages != tc.messages {
				t.Fatalf("summary %+v, want read %d accepted %d rejected %d messages %d", sum, tc.read, tc.accepted, tc.rejected, tc.messages)
			}
			if got := readRejects(t, rejects); !reflect.DeepEqual(got, tc.rejects) {
				t.Fatalf("rejects %v\nwant %v", got, tc.rejects)
			}
			if int64(len(log.stored)) != tc.messages {
				t.Fatalf("stored %d messages, want %d", len(log.stored), tc.messages)
			}
			var acct int64
			for _, n := range log.rejected {
				acct += n
			}
			if acct != int64(len(tc.rejects)) {
				t.Fatalf("the source's accounting has %d rejections (%v), want %d", acct, log.rejected, len(tc.rejects))
			}
			if _, err := os.Stat(rejects + ".state"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the resume file is left behind: %v", err)
			}

			// The same file again stores nothing new.
			again, err := r.Run(context.Background(), []Input{in})
			if err != nil {
				t.Fatal(err)
			}
			if again.Accepted != tc.accepted || again.Duplicates != tc.accepted || again.Rejected != tc.rejected {
				t.Fatalf("second run %+v: want every accepted row a duplicate", again)
			}
			if int64(len(log.stored)) != tc.messages {
				t.Fatalf("second run stored more: %d messages", len(log.stored))
			}
		})
	}
}

func TestInterruptedImportResumes(t *testing.T) {
	for _, tc := range readyMade {
		for _, c := range []struct{ failAfter, concurrency int }{{1, 1}, {2, 1}, {3, 1}, {1, 4}, {2, 4}, {3, 4}} {
			failAfter := c.failAfter
			t.Run(fmt.Sprintf("%s/after%d/concurrency%d", tc.name, failAfter, c.concurrency), func(t *testing.T) {
				dir := t.TempDir()
				in, err := FileInput(writeExample(t, dir, tc.name))
				if err != nil {
					t.Fatal(err)
				}
				log := &memLog{}
				rejects := filepath.Join(dir, "rejects.csv")
				var resumedAt int
				r := &Runner{Source: "shop", Mapping: readyMapping(t, tc.name), Sink: &logSink{log: log, failAfter: failAfter},
					RejectsPath: rejects, StatePath: rejects + ".state", BatchSize: 2, Concurrency: c.concurrency,
					OnResume: func(_ string, line int) { resumedAt = line }}
				if _, err := r.Run(context.Background(), []Input{in}); !errors.Is(err, errInterrupted) {
					t.Fatalf("first run: %v, want the interruption", err)
				}
				stored := len(log.stored)
				r.Sink = &logSink{log: log}
				sum, err := r.Run(context.Background(), []Input{in})
				if err != nil {
					t.Fatal(err)
				}
				// With one batch in flight the first failAfter batches are
				// checkpointed; with several, the batch that failed may be
				// the first in input order, and then there is nothing to
				// resume from.
				if c.concurrency == 1 && resumedAt == 0 {
					t.Fatal("the second run did not resume")
				}
				if sum.Read != tc.read || sum.Accepted != tc.accepted || sum.Rejected != tc.rejected {
					t.Fatalf("resumed summary %+v", sum)
				}
				// One batch in flight: nothing after the checkpoint was
				// stored, so nothing is sent twice. With several in
				// flight, batches after the failed one may have been
				// stored; they come back as already imported, and the
				// log still holds each message once.
				if c.concurrency == 1 && sum.Duplicates != 0 {
					t.Fatalf("resumed import resent %d rows already stored", sum.Duplicates)
				}
				if int64(len(log.stored)) != tc.messages || len(log.stored) < stored {
					t.Fatalf("stored %d messages, want %d", len(log.stored), tc.messages)
				}
				if got := readRejects(t, rejects); !reflect.DeepEqual(got, tc.rejects) {
					t.Fatalf("rejects after resume %v\nwant %v", got, tc.rejects)
				}
			})
		}
	}
}

// TestOrderMessage checks what an order with line items becomes.
func TestOrderMessage(t *testing.T) {
	dir := t.TempDir()
	in, _ := FileInput(writeExample(t, dir, "orders"))
	log := &memLog{}
	r := &Runner{Source: "pos", Mapping: readyMapping(t, "orders"), Sink: &logSink{log: log}}
	if _, err := r.Run(context.Background(), []Input{in}); err != nil {
		t.Fatal(err)
	}
	var first, anon map[string]any
	for _, raw := range log.stored {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		switch m["properties"].(map[string]any)["order_id"] {
		case "P-10001":
			first = m
		case "P-10004":
			anon = m
		}
	}
	if first == nil || anon == nil {
		t.Fatal("orders P-10001 and P-10004 were not stored")
	}
	if first["event"] != "Order Completed" || first["type"] != "track" || first["anonymousId"] != "card-LC-400001" {
		t.Fatalf("order P-10001: %v", first)
	}
	b, _ := mappings.Example("orders")
	lines := strings.Split(string(b), "\n")
	if first["messageId"] != MessageID("pos", "orders.csv", "P-10001", lines[1], lines[2], lines[3]) {
		t.Fatalf("messageId %v is not derived from source, file, key and rows", first["messageId"])
	}
	if ts := first["timestamp"]; ts != "2026-04-01T10:12:00.000000Z" {
		t.Fatalf("timestamp %v", ts)
	}
	props := first["properties"].(map[string]any)
	products := props["products"].([]any)
	if len(products) != 3 || props["currency"] != "EUR" || props["channel"] != "pos" {
		t.Fatalf("properties %v", props)
	}
	beans := products[1].(map[string]any)
	if beans["product_id"] != "p-042" || beans["price"] != 18.95 || beans["quantity"] != 2.0 || beans["category"] != "Coffee" {
		t.Fatalf("second line item %v", beans)
	}
	ext := first["context"].(map[string]any)["externalIds"].([]any)[0].(map[string]any)
	if ext["type"] != "loyalty_card" || ext["id"] != "LC-400001" {
		t.Fatalf("external id %v", ext)
	}
	if anon["anonymousId"] != "receipt-P-10004" {
		t.Fatalf("a sale without a card: anonymousId %v", anon["anonymousId"])
	}
}

func TestGzipAndJSONLines(t *testing.T) {
	m, err := ParseMapping([]byte(`
type: identify
key: [id]
fields:
  userId: {column: id, required: true}
  traits.email: {column: contact.email, transform: [trim, lower]}
  traits.score: {column: score, type: number}
  traits.vip: {column: vip, type: boolean}
  traits.tags: tags
  timestamp: {column: at, format: unix}
`))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Join([]string{
		`{"id":"a1","contact":{"email":" A@X.COM "},"score":1.5,"vip":true,"tags":["x","y"],"at":1767225600}`,
		``,
		`{"id":"a2","score":"3","vip":"no","at":1767225600}`,
		`{"id":"a3","score":"lots","at":1767225600}`,
		`not json`,
		`{"id":"","at":1767225600}`,
		`{"id":"a1","at":1767225600}`,
	}, "\n") + "\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(lines))
	zw.Close()
	p := filepath.Join(t.TempDir(), "people.jsonl.gz")
	os.WriteFile(p, gz.Bytes(), 0o644)
	in, _ := FileInput(p)
	log := &memLog{}
	var rejects []Reject
	r := &Runner{Source: "crm", Mapping: m, Sink: &logSink{log: log}, OnReject: func(x Reject) { rejects = append(rejects, x) }}
	sum, err := r.Run(context.Background(), []Input{in})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Read != 6 || sum.Accepted != 2 || sum.Rejected != 4 {
		t.Fatalf("summary %+v", sum)
	}
	want := []wantReject{{4, ReasonInvalidNumber}, {5, ReasonMalformedRow}, {6, ReasonMissingKey}, {7, ReasonDuplicateKey}}
	var got []wantReject
	for _, x := range rejects {
		got = append(got, wantReject{x.Line, x.Reason})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rejects %v, want %v", got, want)
	}
	var a1 map[string]any
	json.Unmarshal(log.stored[0], &a1)
	traits := a1["traits"].(map[string]any)
	if traits["email"] != "a@x.com" || traits["score"] != 1.5 || traits["vip"] != true || len(traits["tags"].([]any)) != 2 {
		t.Fatalf("traits %v", traits)
	}
	if a1["timestamp"] != "2026-01-01T00:00:00.000000Z" {
		t.Fatalf("timestamp %v", a1["timestamp"])
	}
}

func TestMappingErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "type: identify\nfeilds: {}\n", "feilds"},
		{"bad type", "type: purchase\nfields: {userId: id}\n", "type must be one of"},
		{"track without event", "type: track\nfields: {userId: id}\n", "needs an event"},
		{"bad target", "type: identify\nfields: {user: id}\n", `no "user"`},
		{"scalar with dot", "type: identify\nfields: {userId.x: id}\n", "not an object"},
		{"object without key", "type: identify\nfields: {traits: id}\n", "name a key inside"},
		{"bad field type", "type: identify\nfields: {traits.x: {column: a, type: money}}\n", "type must be one of"},
		{"bad transform", "type: identify\nfields: {traits.x: {column: a, transform: [reverse]}}\n", "unknown transform"},
		{"bad zone", "type: identify\nfields: {timestamp: {column: a, timezone: Mars/Base}}\n", "unknown timezone"},
		{"items without group", "type: track\nevent: X\nfields: {userId: id}\nitems: {path: properties.p, fields: {a: a}}\n", "group_by"},
		{"nothing", "type: identify\n", "sets no fields"},
		{"quote as delimiter", "type: identify\ndelimiter: '\"'\nfields: {userId: id}\n", "delimiter must be one character other than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMapping([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestHeaderMustHaveMappedColumns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.csv")
	os.WriteFile(p, []byte("id,mail\n1,a@b.c\n"), 0o644)
	in, _ := FileInput(p)
	m, _ := ParseMapping([]byte("type: identify\nfields: {userId: id, traits.email: email}\n"))
	_, err := (&Runner{Source: "s", Mapping: m, Sink: &logSink{log: &memLog{}}}).Run(context.Background(), []Input{in})
	if err == nil || !strings.Contains(err.Error(), `no column "email"`) {
		t.Fatalf("error %v", err)
	}
}

// The defects found in review, each with the input that showed it.
func TestImportEdgeCases(t *testing.T) {
	orders := readyMapping(t, "orders")
	head := "order_id,ordered_at,channel,store_id,customer_id,email,loyalty_card,currency,product_id,sku,product_name,category,price,quantity\n"
	line := func(order, product string) string {
		return order + ",2026-04-01 10:00:00,pos,s1,,,LC-1,EUR," + product + ",SKU,Name,Cat,1.00,1\n"
	}
	cases := []struct {
		name, input                      string
		m                                *Mapping
		read, accepted, rejected, stored int64
		reasons                          map[string]int64
	}{
		// A quote error in the first field used to crash the reader.
		{"bad quote in the first field", "id,email\nu\"2,b@x\nu3,c@x\n", nil, 2, 1, 1, 1, map[string]int64{ReasonMalformedRow: 1}},
		{"unclosed quote", "id,email\n\"u2,b@x\n", nil, 1, 0, 1, 0, map[string]int64{ReasonMalformedRow: 1}},
		// A bad row inside an order rejects the whole order instead of
		// storing it without that line item.
		{"bad row inside a group", head + line("P-1", "a") + line("P-1", "b") + "P-1,broken\n" + line("P-1", "c") + line("P-2", "a"), orders, 5, 1, 4, 1,
			map[string]int64{ReasonMalformedRow: 1, ReasonInconsistent: 3}},
		// A bad row after a group is its own rejection.
		{"bad row after a group", head + line("P-1", "a") + "P-1,broken\n" + line("P-2", "a"), orders, 3, 2, 1, 2, map[string]int64{ReasonMalformedRow: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if m == nil {
				m, _ = ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id, traits.email: email}\n"))
			}
			p := filepath.Join(t.TempDir(), "in.csv")
			os.WriteFile(p, []byte(tc.input), 0o644)
			in, _ := FileInput(p)
			log := &memLog{}
			sum, err := (&Runner{Source: "s", Mapping: m, Sink: &logSink{log: log}, BatchSize: 1}).Run(context.Background(), []Input{in})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Read != tc.read || sum.Accepted != tc.accepted || sum.Rejected != tc.rejected || int64(len(log.stored)) != tc.stored || !reflect.DeepEqual(sum.Reasons, tc.reasons) {
				t.Fatalf("summary %+v, stored %d", sum, len(log.stored))
			}
		})
	}
}

// Cancelling an import is an error, not a success with rows missing.
func TestCancelledImportFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "in.csv")
	var b strings.Builder
	b.WriteString("id\n")
	for i := range 6 {
		fmt.Fprintf(&b, "u%d\n", i)
	}
	os.WriteFile(p, []byte(b.String()), 0o644)
	in, _ := FileInput(p)
	m, _ := ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		sink := &cancelSink{logSink: logSink{log: &memLog{}}, cancel: cancel}
		sum, err := (&Runner{Source: "s", Mapping: m, Sink: sink, BatchSize: 2, Concurrency: 1, StatePath: filepath.Join(t.TempDir(), "state")}).Run(ctx, []Input{in})
		if err == nil {
			t.Fatalf("a cancelled import succeeded: %+v, %d stored", sum, len(sink.log.stored))
		}
	}
}

// cancelSink cancels the import during its first Send.
type cancelSink struct {
	logSink
	cancel context.CancelFunc
}

func (c *cancelSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error) {
	c.cancel()
	return c.logSink.Send(ctx, msgs, rejected)
}

// Two inputs with the same base name would share message ids.
func TestSameBaseNameRefused(t *testing.T) {
	dir := t.TempDir()
	var ins []Input
	for _, sub := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
		p := filepath.Join(dir, sub, "contacts.csv")
		os.WriteFile(p, []byte("id\nu1\n"), 0o644)
		in, _ := FileInput(p)
		ins = append(ins, in)
	}
	m, _ := ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
	_, err := (&Runner{Source: "s", Mapping: m, Sink: &logSink{log: &memLog{}}}).Run(context.Background(), ins)
	if err == nil || !strings.Contains(err.Error(), "same name") {
		t.Fatalf("error %v", err)
	}
}

// A mapping file with YAML anchors and aliases is refused with its line:
// one whose alias refers to itself recursed until the stack overflowed,
// which killed the server that parsed an uploaded mapping.
func TestMappingRefusesAliases(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"alias cycle", "type: identify\nfields:\n  userId: &a {column: x, or: *a}\n"},
		{"plain alias", "type: identify\nfields:\n  userId: &u {column: id}\n  anonymousId: *u\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMapping([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "aliases") {
				t.Fatalf("err = %v, want a refusal naming line 3 and aliases", err)
			}
		})
	}
}
