package imports

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// peakHeap runs f and returns the most heap it had in use, sampled every
// few milliseconds, over what was in use before. The collector runs often
// meanwhile, so that the heap stays close to what is live.
func peakHeap(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return peak.Load() - min(peak.Load(), base)
}

// Many large rows, or one group of very many, are not held together: a
// batch holds at most a few megabytes of rows, accepted or rejected, and a
// group past what one message may hold is rejected as its rows come.
func TestManyLargeRowsInBoundedMemory(t *testing.T) {
	blob := strings.Repeat("x", 900<<10)
	cases := []struct {
		name    string
		mapping string
		parts   []bombPart
		read    int64
		reasons map[string]int64
	}{
		{"rejected rows", "type: identify\nkey: [id]\nfields: {userId: id}\n",
			[]bombPart{{"id,blob\n", 1}, {"u," + blob + ",extra\n", 400}}, 400, map[string]int64{ReasonMalformedRow: 400}},
		{"accepted rows with a large column no field uses", "type: identify\nfields: {userId: id}\n",
			[]bombPart{{"id,blob\n", 1}, {"u," + blob + "\n", 400}}, 400, map[string]int64{}},
		{"one group of a million rows", "type: track\nevent: Order Completed\ngroup_by: order_id\nfields: {userId: customer, properties.order_id: order_id}\n" +
			"items: {path: properties.products, fields: {product_id: product}}\n",
			[]bombPart{{"order_id,customer,product,note\n", 1}, {"P-1,c-1,p-1,a note of some length to make the row longer\n", 1_000_000}, {"P-2,c-1,p-2,fine\n", 1}},
			1_000_001, map[string]int64{ReasonGroupTooLarge: 1_000_000}},
		// Unreadable rows after a group are held until the next row says
		// whether the group went on; past 4 MiB of them it has ended.
		{"unreadable rows after a group", "type: track\nevent: Order Completed\ngroup_by: order_id\nfields: {userId: customer, properties.order_id: order_id}\n" +
			"items: {path: properties.products, fields: {product_id: product}}\n",
			[]bombPart{{"order_id,customer,product\nP-1,c-1,p-1\n", 1}, {"P-1," + blob + "\n", 300}, {"P-2,c-1,p-2\n", 1}},
			302, map[string]int64{ReasonMalformedRow: 300}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMapping([]byte(tc.mapping))
			if err != nil {
				t.Fatal(err)
			}
			bomb := gzipBomb(t, tc.parts...)
			var sum Summary
			var runErr error
			lines := 0
			peak := peakHeap(func() {
				sum, runErr = (&Runner{Source: "crm", Mapping: m, Sink: &logSink{log: &memLog{}},
					OnReject: func(x Reject) { lines = max(lines, x.Line) }}).Run(context.Background(), []Input{memInput("in.csv.gz", bomb)})
			})
			t.Logf("peak heap %d MB", peak/mib)
			if runErr != nil {
				t.Fatal(runErr)
			}
			if peak > 100*mib {
				t.Errorf("importing %d KB of gzip held %d MB at once", len(bomb)>>10, peak/mib)
			}
			if sum.Read != tc.read || !reflect.DeepEqual(sum.Reasons, tc.reasons) || sum.Check() != nil {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// An input past Limits.MaxInputBytes (a gzip bomb) or Limits.MaxRows stops
// the import with an error naming the line; the rows before it were
// imported and accounted for.
func TestInputLimitsStopTheImport(t *testing.T) {
	m, _ := ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
	cases := []struct {
		name  string
		lim   Limits
		parts []bombPart
		want  string
		read  int64
	}{
		{"bytes", Limits{MaxInputBytes: 8 * mib}, []bombPart{{"id\nu1\nu2\n", 1}, {"\n", 1 << 30}}, "line 8388603: the input has more than 8388608 bytes once decompressed", 2},
		{"rows", Limits{MaxRows: 3}, []bombPart{{"id\nu1\nu2\nu3\n", 1}, {"\n", 1 << 20}}, "line 4: the input has more than 3 rows", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bomb := gzipBomb(t, tc.parts...)
			log := &memLog{}
			var sum Summary
			var err error
			n := allocated(func() {
				sum, err = (&Runner{Source: "crm", Mapping: m, Sink: &logSink{log: log}, Limits: tc.lim}).Run(context.Background(), []Input{memInput("in.csv.gz", bomb)})
			})
			var le *LimitError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a *LimitError saying %q", err, tc.want)
			}
			if sum.Read != tc.read || sum.Accepted != tc.read || len(log.stored) != int(tc.read) {
				t.Errorf("summary %+v, %d stored", sum, len(log.stored))
			}
			if n > 32*mib {
				t.Errorf("allocated %d MB", n/mib)
			}
		})
	}
}

// A group rejected for its size is rejected as its rows come, so a
// checkpoint may fall inside it: an import interrupted there resumes with
// every row of the group rejected once, and the rows after it imported.
func TestResumeInsideAGroupTooLarge(t *testing.T) {
	m, err := ParseMapping([]byte("type: track\nevent: Order Completed\ngroup_by: order_id\nfields: {userId: customer, properties.order_id: order_id}\n" +
		"items: {path: properties.products, fields: {product_id: product}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("order_id,customer,product,note\nP-0,c-1,p-1,first\n")
	const big = 100_000 // about 5 MB: past maxGroupBytes
	for range big {
		b.WriteString("P-1,c-1,p-1,a note of some length to make the row longer\n")
	}
	b.WriteString("P-2,c-1,p-2,last\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "orders.csv")
	os.WriteFile(path, []byte(b.String()), 0o644)
	in, _ := FileInput(path)
	log := &memLog{}
	rejects := filepath.Join(dir, "orders.rejects.csv")
	var resumedAt int
	r := &Runner{Source: "pos", Mapping: m, Sink: &logSink{log: log, failAfter: 5}, RejectsPath: rejects, StatePath: rejects + ".state",
		BatchSize: 500, Concurrency: 1, OnResume: func(_ string, line int) { resumedAt = line }}
	if _, err := r.Run(context.Background(), []Input{in}); !errors.Is(err, errInterrupted) {
		t.Fatalf("first run: %v, want the interruption", err)
	}
	r.Sink = &logSink{log: log}
	sum, err := r.Run(context.Background(), []Input{in})
	if err != nil {
		t.Fatal(err)
	}
	if resumedAt <= 3 || resumedAt >= big+2 {
		t.Fatalf("resumed after line %d, want inside the group (lines 3 to %d)", resumedAt, big+2)
	}
	if sum.Read != big+2 || sum.Accepted != 2 || sum.Reasons[ReasonGroupTooLarge] != big || len(log.stored) != 2 {
		t.Fatalf("summary %+v, %d stored", sum, len(log.stored))
	}
	got := readRejects(t, rejects)
	if len(got) != big || got[0].line != 3 || got[big-1].line != big+2 {
		t.Fatalf("%d rejects, from line %d to %d", len(got), got[0].line, got[len(got)-1].line)
	}
	for i, x := range got {
		if x.line != i+3 || x.reason != ReasonGroupTooLarge {
			t.Fatalf("reject %d: %+v", i, x)
		}
	}
}
