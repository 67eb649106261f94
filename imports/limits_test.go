package imports

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// gzipBomb is a gzip file that decompresses to the parts in order, each
// repeated as often as its count says: concatenated gzip members, so that
// hundreds of megabytes cost a few hundred kilobytes and no time to build.
type bombPart struct {
	text  string
	times int
}

func gzipBomb(t testing.TB, parts ...bombPart) []byte {
	t.Helper()
	var out bytes.Buffer
	member := func(b []byte) []byte {
		var m bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&m, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return m.Bytes()
	}
	for _, p := range parts {
		if p.times <= 1 {
			out.Write(member([]byte(p.text)))
			continue
		}
		// One member of up to 1 MiB of the text, repeated.
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

// memInput is an Input over bytes in memory.
func memInput(name string, b []byte) Input {
	return Input{Name: name, Size: int64(len(b)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

// allocated returns the bytes allocated while f ran: a bound on the
// memory it can have held at its peak.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const mib = 1 << 20

// A row with one enormous field (the security review's 611 KB gzip file
// whose second row was a 600 MB quoted field took the server to 5.9 GB) is
// rejected with its line and reading goes on after it, without holding
// the row: the reader keeps at most the row limit of any record.
func TestOversizedRowIsRejectedInBoundedMemory(t *testing.T) {
	big := 200 * mib
	csvMapping := "type: identify\nkey: [id]\nfields: {userId: id, traits.note: note}\n"
	cases := []struct {
		name    string
		mapping string
		file    string
		parts   []bombPart
		read    int64
		rejects []wantReject
		message string
	}{
		{"csv quoted field", csvMapping, "people.csv.gz", []bombPart{
			{"id,note\nu1,ok\nu2,\"", 1}, {"a", big}, {"\"\nu3,fine\nu4,\"x\"y\n", 1},
		}, 4, []wantReject{{3, ReasonRowTooLarge}, {5, ReasonMalformedRow}}, "more than the limit"},
		// The field's line breaks count as lines: the rows after it keep
		// their line numbers.
		{"csv quoted field of many lines", csvMapping, "people.csv.gz", []bombPart{
			{"id,note\nu1,ok\nu2,\"", 1}, {"aaaaaaa\n", big / 8}, {"\"\nu3,fine\nu4,\"x\"y\n", 1},
		}, 4, []wantReject{{3, ReasonRowTooLarge}, {3 + big/8 + 2, ReasonMalformedRow}}, "lines 3 to"},
		{"csv quoted field never closed", csvMapping, "people.csv.gz", []bombPart{
			{"id,note\nu1,ok\nu2,\"", 1}, {"a", big},
		}, 2, []wantReject{{3, ReasonRowTooLarge}}, "never closed"},
		{"csv unquoted field", csvMapping, "people.csv.gz", []bombPart{
			{"id,note\nu1,ok\nu2,", 1}, {"a", big}, {"\nu3,fine\n", 1},
		}, 3, []wantReject{{3, ReasonRowTooLarge}}, "more than the limit"},
		{"json line", "type: identify\nkey: [id]\nfields: {userId: id, traits.note: note}\n", "people.jsonl.gz", []bombPart{
			{`{"id":"u1"}` + "\n" + `{"id":"u2","note":"`, 1}, {"a", big}, {"\"}\n{\"id\":\"u3\"}\n", 1},
		}, 3, []wantReject{{2, ReasonRowTooLarge}}, "more than the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMapping([]byte(tc.mapping))
			if err != nil {
				t.Fatal(err)
			}
			bomb := gzipBomb(t, tc.parts...)
			var rejects []Reject
			var sum Summary
			var runErr error
			log := &memLog{}
			n := allocated(func() {
				sum, runErr = (&Runner{Source: "crm", Mapping: m, Sink: &logSink{log: log},
					OnReject: func(x Reject) { rejects = append(rejects, x) }}).Run(context.Background(), []Input{memInput(tc.file, bomb)})
			})
			if runErr != nil {
				t.Fatal(runErr)
			}
			t.Logf("allocated %d MB", n/mib)
			if n > 32*mib {
				t.Errorf("reading a %d KB file with a %d MB row allocated %d MB", len(bomb)>>10, big/mib, n/mib)
			}
			var got []wantReject
			for _, x := range rejects {
				got = append(got, wantReject{x.Line, x.Reason})
			}
			if !reflect.DeepEqual(got, tc.rejects) {
				t.Fatalf("rejects %v, want %v", got, tc.rejects)
			}
			if !strings.Contains(rejects[0].Message, tc.message) || len(rejects[0].Row) > 1000 {
				t.Errorf("the reject says %q (row %d bytes), want it to mention %q", rejects[0].Message, len(rejects[0].Row), tc.message)
			}
			if sum.Read != tc.read || sum.Rejected != int64(len(tc.rejects)) || sum.Accepted != sum.Read-sum.Rejected {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}
