package imports_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/mappings"
)

// fuzzSink validates what an import sends exactly as the server does
// (collect.SubmitItems) and keeps the messages it would store.
type fuzzSink struct {
	mu       sync.Mutex
	sent     []json.RawMessage
	stored   []kith.Message
	rejected map[string]int64
}

// Send implements imports.Sink.
func (s *fuzzSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]imports.Outcome, error) {
	s.mu.Lock()
	s.sent = append(s.sent, msgs...)
	s.mu.Unlock()
	sub := fuzzSubmitter{sink: s}
	res, err := collect.SubmitItems(ctx, sub, "src", msgs, rejected, collect.Meta{ReceivedAt: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}, collect.DefaultLimits())
	if err != nil {
		return nil, err
	}
	out := make([]imports.Outcome, len(res))
	for i, r := range res {
		out[i] = imports.Outcome{Status: r.Status, Reason: r.Reason, Message: r.Message}
	}
	return out, nil
}

// fuzzSubmitter is the committer behind a fuzzSink: it keeps what it is
// given and reports nothing as a duplicate.
type fuzzSubmitter struct{ sink *fuzzSink }

// Submit implements collect.Submitter.
func (f fuzzSubmitter) Submit(_ context.Context, sub collect.Submission) collect.Outcome {
	f.sink.mu.Lock()
	defer f.sink.mu.Unlock()
	f.sink.stored = append(f.sink.stored, sub.Messages...)
	if f.sink.rejected == nil {
		f.sink.rejected = map[string]int64{}
	}
	for r, n := range sub.Rejected {
		f.sink.rejected[r] += n
	}
	return collect.Outcome{Duplicate: make([]bool, len(sub.Messages))}
}

// reasonRE is the shape of a rejection reason: a short code for counters.
var reasonRE = regexp.MustCompile(`^[a-z][a-z_]*$`)

// runImport imports data with the mapping and checks the import's
// promises: it ends (with an error that says what stopped it, or with
// read = accepted + rejected), every rejected row has a line within the
// input, a reason code and a message, every message sent is a JSON object
// of the mapping's type with a derived id, the messages stored are the
// accepted ones, and they hold only text the stores can hold.
func runImport(t *testing.T, m *imports.Mapping, name string, data []byte) {
	t.Helper()
	sink := &fuzzSink{}
	var rejects []imports.Reject
	run := &imports.Runner{Source: "fuzz", Mapping: m, Sink: sink, BatchSize: 3, Concurrency: 2,
		OnReject: func(x imports.Reject) { rejects = append(rejects, x) }}
	sum, err := run.Run(context.Background(), []imports.Input{{Name: name, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}})
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("import of %q: an empty error", data)
		}
		return // a header that does not fit, a bad gzip stream, ...
	}
	if sum.Read != sum.Accepted+sum.Rejected || sum.Rejected != int64(len(rejects)) || sum.Messages > sum.Accepted || sum.Duplicates > sum.Accepted {
		t.Fatalf("import of %q: summary %+v with %d rejects", data, sum, len(rejects))
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		lines = int(^uint(0) >> 1) // lines of the decompressed text
	}
	for _, x := range rejects {
		if x.Line < 1 || x.Line > lines || !reasonRE.MatchString(x.Reason) || x.Message == "" {
			t.Fatalf("import of %q: reject %+v", data, x)
		}
	}
	for _, msg := range sink.sent {
		var obj map[string]any
		if err := json.Unmarshal(msg, &obj); err != nil {
			t.Fatalf("import of %q: sent %s: %v", data, msg, err)
		}
		if obj["type"] != m.Type {
			t.Fatalf("import of %q: sent %s, not a %s", data, msg, m.Type)
		}
		if id, _ := obj["messageId"].(string); !strings.HasPrefix(id, "imp-") || len(id) != 44 {
			t.Fatalf("import of %q: sent %s without a derived id", data, msg)
		}
	}
	if int64(len(sink.stored)) != sum.Messages {
		t.Fatalf("import of %q: %d messages stored, the summary says %d", data, len(sink.stored), sum.Messages)
	}
	for _, st := range sink.stored {
		if p := kith.JSONTextProblem(st.Raw); p != "" {
			t.Fatalf("import of %q: stored %s, which %s", data, st.Raw, p)
		}
	}
}

// fuzzMappings are the ready-made mappings and a few that reach the other
// features: JSON Lines with nested columns, every type, map, or, default,
// sha256, unix times, a tab delimiter, a constant value.
var fuzzMappings = func() []*imports.Mapping {
	var out []*imports.Mapping
	for _, name := range mappings.Names() {
		b, err := mappings.Mapping(name)
		if err != nil {
			panic(err)
		}
		m, err := imports.ParseMapping(b)
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	for _, src := range []string{`
type: identify
format: jsonl
key: [customer.id]
fields:
  userId: {column: customer.id, required: true}
  traits.email: {column: customer.email, transform: [trim, lower]}
  traits.score: {column: score, type: number, decimal: ","}
  traits.visits: {column: visits, type: integer, default: 0}
  traits.vip: {column: vip, type: boolean}
  traits.born: {column: born, type: date, format: "02/01/2006"}
  traits.tags: tags
  traits.source: {value: crm}
  timestamp: {column: at, type: time, format: unix_ms}
external_ids:
  - {type: crm_id, column: customer.id, transform: [upper]}
`, `
type: page
delimiter: "\t"
format: csv
event: {column: page, map: {h: Home, c: Checkout}, default: h}
fields:
  anonymousId: {column: visitor, or: {column: email, transform: [trim, lower, sha256], prefix: "e-"}}
  timestamp: {column: at, timezone: Europe/Amsterdam}
  properties.path: {column: path, required: true}
  context.campaign.name: campaign
`, `
type: group
key: [account]
fields:
  userId: user
  groupId: {column: account, required: true}
  traits.name: name
  timestamp: {column: at, type: time, format: unix}
`} {
		m, err := imports.ParseMapping([]byte(src))
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}()

// FuzzImportRows imports any input, CSV or JSON Lines, gzip-compressed or
// not, through each mapping (see runImport for what is checked).
func FuzzImportRows(f *testing.F) {
	for i, name := range mappings.Names() {
		ex, err := mappings.Example(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), ex)
	}
	n := len(mappings.Names())
	f.Add(uint8(n), []byte(`{"customer":{"id":"c1","email":" A@B.c "},"score":"1.234,5","visits":3,"vip":"yes","born":"31/12/1980","tags":["a"],"at":1700000000123}`+"\n"+`{"customer":{"id":7},"score":1e400}`+"\n\n[1]\n{\"customer\":{\"id\":\"c1\"}}\n{"))
	f.Add(uint8(n), []byte("{\"customer\":{\"id\":\"x\\u0000\"}}\n{\"customer\":{\"id\":\"\xff\"}}"))
	f.Add(uint8(n+1), []byte("visitor\temail\tpage\tpath\tat\tcampaign\nv1\t\tc\t/cart\t2026-03-29 02:30:00\tspring\n\t X@Y.z \t\t/\t2026-10-25T02:30:00\t\n\t\tq\t/x\tnope\t\n\"a\tb"))
	f.Add(uint8(n+2), []byte("account,user,name,at\nacme,u1,Acme,1700000000.5\nacme,u2,Acme,-1e300\n,u3,,\n"))
	f.Add(uint8(0), []byte("\xef\xbb\xbforder_id,ordered_at\n"))
	f.Add(uint8(0), []byte{0x1f, 0x8b, 0x08, 0x00})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		m := fuzzMappings[int(which)%len(fuzzMappings)]
		runImport(t, m, "input.csv", data) // the mapping's format wins over the name
	})
}

// FuzzParseMapping checks the mapping file parser: any input is refused
// with an error that names what is wrong (a YAML error its line), or gives
// a mapping of a known type, whose hash is the file's SHA-256, that imports
// a small CSV and JSON Lines file built for its columns.
func FuzzParseMapping(f *testing.F) {
	for _, name := range mappings.Names() {
		b, err := mappings.Mapping(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"type: identify\nfields: {userId: a}", "type: [", "\ttype: x", "colour: 1", "- a",
		"type: identify\nfields:\n  userId: &a {column: x, or: *a}",
		"type: identify\nfields: {userId: {column: a, bogus: 1}}", "type: identify\nfields: {traits: a}",
		"type: track\nevent: {column: e, map: {a: b}}\nfields: {userId: u}\ndelimiter: \"\\\"\"",
		"type: identify\nformat: jsonl\nfields: {userId: {value: {a: 1}}, traits.x: {value: .nan, type: number}}",
		"type: identify\nfields: {userId: {column: u, timezone: Mars/Olympus}}",
		"type: track\nevent: e\ngroup_by: o\nitems: {path: properties.p, fields: {a: b}}\nfields: {userId: u}",
		"type: identify\nexternal_ids: [{type: t, column: c}, 1]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 8<<10 {
			return
		}
		m, err := imports.ParseMapping(b)
		if err != nil {
			msg := err.Error()
			if msg == "" {
				t.Fatalf("ParseMapping(%q): an empty error", b)
			}
			if strings.HasPrefix(msg, "invalid mapping: yaml: unmarshal errors") && !strings.Contains(msg, "line ") {
				t.Fatalf("ParseMapping(%q): %q does not say where", b, msg)
			}
			return
		}
		if !slices.Contains([]string{"identify", "track", "page", "screen", "group"}, m.Type) {
			t.Fatalf("ParseMapping(%q): type %q", b, m.Type)
		}
		if sum := sha256.Sum256(b); m.Hash() != hex.EncodeToString(sum[:]) {
			t.Fatalf("ParseMapping(%q): hash %s", b, m.Hash())
		}
		// A CSV file with one header row of a few columns the mapping might
		// name, and JSON Lines rows with the same values.
		runImport(t, m, "in.csv", []byte("a,b,c,u,e,o\nx,1,2026-01-01,u1,e1,o1\nx,,2,,,o1\n"))
		runImport(t, m, "in.jsonl", []byte(`{"a":"x","b":1,"c":"2026-01-01","u":"u1","e":"e1","o":"o1"}`+"\n"+`{"a":{"b":null}}`))
	})
}
