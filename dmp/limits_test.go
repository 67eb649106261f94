package dmp

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// bombPart is text repeated times over in a gzipBomb.
type bombPart struct {
	text  string
	times int
}

// gzipBomb is gzip that decompresses to the parts in order: repeated
// members of up to 1 MiB, so hundreds of megabytes cost a few hundred
// kilobytes and no time to build.
func gzipBomb(t testing.TB, parts ...bombPart) []byte {
	t.Helper()
	member := func(b []byte) []byte {
		var m bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&m, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return m.Bytes()
	}
	var out bytes.Buffer
	for _, p := range parts {
		per := max(1, min(p.times, (1<<20)/max(1, len(p.text))))
		m := member(bytes.Repeat([]byte(p.text), per))
		for n := 0; n < p.times; n += per {
			if p.times-n < per {
				m = member(bytes.Repeat([]byte(p.text), p.times-n))
			}
			out.Write(m)
		}
	}
	return out.Bytes()
}

func gunzip(t testing.TB, b []byte) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return zr
}

// allocated returns the bytes allocated while f ran, a bound on what it
// held at its peak.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const mib = 1 << 20

// A row with an enormous field (the security review's 306 KB gzip file
// with a 300 MB field took the server to 2.1 GB) is a row error with its
// line, read past in bounded memory; the next row is read as usual.
func TestAudienceReaderOversizedRow(t *testing.T) {
	big := 300 * mib
	cases := []struct {
		name, format string
		parts        []bombPart
	}{
		{"csv quoted", FormatCSV, []bombPart{{"id_type,id,audiences\ncookie,c1,\"", 1}, {"a", big}, {"\"\ncookie,c2,b\n", 1}}},
		{"csv unquoted", FormatCSV, []bombPart{{"id_type,id,audiences\ncookie,c1,", 1}, {"a|", big / 2}, {"\ncookie,c2,b\n", 1}}},
		{"json lines", FormatJSONL, []bombPart{{"\n" + `{"id_type":"cookie","id":"c1","audiences":"`, 1}, {"a", big}, {"\"}\n" + `{"id_type":"cookie","id":"c2","audiences":"b"}` + "\n", 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bomb := gzipBomb(t, tc.parts...)
			var recs []AudienceRecord
			var errs []*RowError
			n := allocated(func() { recs, errs = readAll(t, NewAudienceReader(gunzip(t, bomb), tc.format, now, 0)) })
			if n > 32*mib {
				t.Errorf("reading %d KB of gzip with a %d MB row allocated %d MB", len(bomb)>>10, big/mib, n/mib)
			}
			if len(errs) != 1 || errs[0].Line != 2 || errs[0].Reason != ReasonRowTooLarge || !strings.Contains(errs[0].Message, "more than the limit of 65536") {
				t.Fatalf("row errors %+v", errs)
			}
			if len(recs) != 1 || recs[0].Line != 3 || recs[0].ID != "c2" {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

// matchAll is a MatchStore that knows every identifier.
type matchAll struct {
	saves, most, entries int
}

func (s *matchAll) LookupIdentifiers(_ context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error) {
	out := make(map[kith.IdentKey]kith.IdentOwner, len(keys))
	for _, k := range keys {
		out[k] = kith.IdentOwner{ProfileID: "p", Canonical: "p"}
	}
	return out, nil
}

func (s *matchAll) ScanIdentifiers(context.Context, string, func(kith.IdentKey, string) error) error {
	return nil
}

func (s *matchAll) SaveDMPAudiences(_ context.Context, as []kith.DMPAudience) error {
	s.saves++
	s.most = max(s.most, len(as))
	s.entries += len(as)
	return nil
}

func matcher(store MatchStore, maxInput int64) *Matcher {
	return &Matcher{Store: store, Keyer: identity.NewKeyer([]byte("secret")), Rules: identity.NewCurrent(nil).Load, Now: func() time.Time { return now }, MaxInputBytes: maxInput}
}

// What an import holds stays bounded whatever the file names: entries
// are stored every 10,000 audience names, the summary lists 10,000 names
// and counts the rest, and a file past the byte limit (a gzip bomb) stops
// the import, naming the line, once the rows before it are stored.
func TestMatcherImportBounds(t *testing.T) {
	t.Run("many audiences", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("id_type,id,audiences\n")
		for i := range 40 {
			fmt.Fprintf(&b, "cookie,c%d,", i)
			for j := range 3000 {
				if j > 0 {
					b.WriteByte('|')
				}
				fmt.Fprintf(&b, "a%d", i*300+j) // 12,300 distinct names
			}
			b.WriteByte('\n')
		}
		store := &matchAll{}
		sum, err := matcher(store, 0).Import(context.Background(), "dmp", strings.NewReader(b.String()), FormatCSV, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Matched != 40 || sum.Entries != 120_000 || store.entries != 120_000 || store.most > 13_000 {
			t.Fatalf("summary %+v; store saved %d entries, at most %d at once", sum, store.entries, store.most)
		}
		listed := int64(0)
		for _, n := range sum.Audiences {
			listed += n
		}
		if len(sum.Audiences) != maxListedAudiences || listed+sum.OtherAudiences != 120_000 {
			t.Fatalf("%d names listed, %d memberships listed and %d others", len(sum.Audiences), listed, sum.OtherAudiences)
		}
	})
	t.Run("gzip bomb", func(t *testing.T) {
		bomb := gzipBomb(t, bombPart{"id_type,id,audiences\ncookie,c1,a\ncookie,c2,b\n", 1}, bombPart{"\n", 1 << 30})
		store := &matchAll{}
		var sum ImportSummary
		var err error
		n := allocated(func() {
			sum, err = matcher(store, 8*mib).Import(context.Background(), "dmp", gunzip(t, bomb), FormatCSV, nil)
		})
		if kith.ErrorCode(err) != kith.ETOOLARGE || !strings.Contains(err.Error(), "line 8388567: the input has more than 8388608 bytes") {
			t.Fatalf("error %v", err)
		}
		if sum.Read != 2 || sum.Matched != 2 || store.entries != 2 {
			t.Fatalf("summary %+v, %d stored", sum, store.entries)
		}
		if n > 32*mib {
			t.Errorf("allocated %d MB", n/mib)
		}
	})
}
