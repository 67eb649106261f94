package imports

import (
	"encoding/csv"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// agreeWithCSV reads input with a CSVReader and with encoding/csv and
// fails unless they find the same records, on the same lines, with the
// same errors; a record the CSVReader finds too large must be one
// encoding/csv reads whole, starting on the same line.
func agreeWithCSV(t *testing.T, input string, comma rune, maxRow int) {
	t.Helper()
	want := csv.NewReader(strings.NewReader(input))
	want.Comma, want.FieldsPerRecord = comma, -1
	got, err := NewCSVReader(strings.NewReader(input), comma, Limits{MaxRowBytes: maxRow})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		wf, werr := want.Read()
		gf, rec, gerr := got.Read()
		var wpe, gpe *csv.ParseError
		var se *RowSizeError
		switch {
		case werr == io.EOF:
			if gerr != io.EOF {
				t.Fatalf("%q record %d: encoding/csv ends, CSVReader gives %q, %v", input, i, gf, gerr)
			}
			return
		case errors.As(gerr, &se):
			line := 0
			if errors.As(werr, &wpe) {
				line = wpe.StartLine
			} else if werr == nil {
				line, _ = want.FieldPos(0)
			}
			if line != rec.Line || se.Line != rec.Line {
				t.Fatalf("%q record %d: too large at line %d, encoding/csv's starts on line %d (%v)", input, i, rec.Line, line, werr)
			}
		case errors.As(werr, &wpe):
			if !errors.As(gerr, &gpe) || gpe.Error() != wpe.Error() {
				t.Fatalf("%q record %d: encoding/csv says %v, CSVReader %q, %v", input, i, werr, gf, gerr)
			}
		case werr != nil:
			t.Fatalf("%q: %v", input, werr)
		default:
			line, _ := want.FieldPos(0)
			if gerr != nil || !reflect.DeepEqual(gf, wf) || rec.Line != line {
				t.Fatalf("%q record %d: encoding/csv reads %q on line %d, CSVReader %q on line %d, %v", input, i, wf, line, gf, rec.Line, gerr)
			}
		}
	}
}

// The CSVReader splits records itself, in bounded memory, and only then
// parses them with encoding/csv: it must end every record where
// encoding/csv would, whatever the quoting.
func TestCSVReaderAgreesWithEncodingCSV(t *testing.T) {
	inputs := []string{
		"a,b\n1,2\n",
		"a,b\r\n1,2\r\n",
		"a,b\n1,2",
		"a,b\n1,2\r",
		"\n\na,b\n\r\n\n1,2\n\n",
		"a,b\n\"x\ny\",2\n3,4\n",
		"a,b\n\"x\r\ny\",2\r\n3,4\r\n",
		"a,b\n\"x\"\"y\",\"\"\"\"\n",
		"a,b\n\"x\"y,2\n3,4\n",   // text after a closing quote
		"a,b\nx\"y,2\n3,4\n",     // a quote inside an unquoted field
		"a,b\n\"x,2\n3,4\n",      // never closed
		"a,b\n\"x\"\r3,4\n5,6\n", // a carriage return after a closing quote
		"a,b\n\"x\"\r",
		"a,\"b\"\n,\"\"\n\"\",\n",
		"a,b\n\"\"\"\n\"\"\",2\n",
		"a,b\n  \n1,2\n",
		"\"a\nb\"",
		"x,\"\n\n\n\",y\nz\n",
	}
	for _, in := range inputs {
		agreeWithCSV(t, in, ',', 1<<20)
		agreeWithCSV(t, strings.ReplaceAll(in, ",", ";"), ';', 1<<20)
		agreeWithCSV(t, strings.ReplaceAll(in, ",", "§"), '§', 1<<20)
		agreeWithCSV(t, in, ',', 4)
	}
	// Random text from the characters that matter, with one- and
	// two-byte delimiters, and rows both within and over the limit.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString([]string{"a", "b", ",", "§", "\"", "\"", "\n", "\r", "\r\n", " ", "\xc2"}[rng.IntN(11)])
		}
		in := b.String()
		agreeWithCSV(t, in, ',', 1<<20)
		agreeWithCSV(t, in, '§', 1<<20)
		agreeWithCSV(t, in, ',', 1+rng.IntN(8))
	}
}

func FuzzCSVReader(f *testing.F) {
	f.Add("a,b\n\"x\ny\",2\n", 10)
	f.Add("a,b\n\"x\"y,2\n3,4\n", 3)
	f.Fuzz(func(t *testing.T, in string, maxRow int) {
		if strings.HasPrefix(in, "\ufeff") || maxRow <= 0 {
			return // the CSVReader drops a byte order mark; encoding/csv does not
		}
		agreeWithCSV(t, in, ',', maxRow)
	})
}

// RecordReader: lines and their numbers, a byte order mark, the last line
// without a line break, and the limits.
func TestRecordReader(t *testing.T) {
	type rec struct {
		line, end int
		text      string
		err       string
	}
	cases := []struct {
		name  string
		input string
		lim   Limits
		want  []rec
		final string
	}{
		{"lines", "\ufeff{\"a\":1}\r\n\n  \n{}", Limits{}, []rec{{1, 1, `{"a":1}`, ""}, {3, 3, "  ", ""}, {4, 4, "{}", ""}}, ""},
		{"too long", "ab\nabcdef\ncd\n", Limits{MaxRowBytes: 4}, []rec{{1, 1, "ab", ""}, {2, 2, "abcdef", "the row is 7 bytes, more than the limit of 4"}, {3, 3, "cd", ""}}, ""},
		{"too many bytes", "ab\ncd\nef\n", Limits{MaxInputBytes: 7}, []rec{{1, 1, "ab", ""}, {2, 2, "cd", ""}}, "line 3: the input has more than 7 bytes once decompressed, the most one import reads"},
		{"too many rows", "ab\n\ncd\nef\n", Limits{MaxRows: 2}, []rec{{1, 1, "ab", ""}, {3, 3, "cd", ""}}, "line 4: the input has more than 2 rows, the most one import reads"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewLineReader(strings.NewReader(tc.input), tc.lim)
			var got []rec
			var final error
			for {
				x, err := r.Next()
				var se *RowSizeError
				if err != nil && !errors.As(err, &se) {
					final = err
					break
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				got = append(got, rec{x.Line, x.EndLine, string(x.Text), msg})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
			if tc.final == "" && final != io.EOF || tc.final != "" && (final == nil || final.Error() != tc.final) {
				t.Fatalf("ends with %v, want %q", final, tc.final)
			}
			if _, err := r.Next(); err != final {
				t.Fatalf("after the end: %v, want %v again", err, final)
			}
		})
	}
}

// BenchmarkReadRows reads an orders file (the ready-made mapping's
// columns, one quoted field per row) through the reader an import uses.
func BenchmarkReadRows(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("order_id,ordered_at,channel,store_id,customer_id,email,loyalty_card,currency,product_id,sku,product_name,category,price,quantity\n")
	for i := range 20000 {
		sb.WriteString("P-")
		sb.WriteString(strings.Repeat("1", i%7+1))
		sb.WriteString(",2026-04-01 10:00:00,pos,s1,c-42,ada@example.com,LC-1,EUR,p-042,SKU-1,\"Beans, dark roast\",Coffee,18.95,2\n")
	}
	data := sb.String()
	m := &Mapping{Delimiter: ",", Format: "csv"}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rows, err := openRows(m, "orders.csv", strings.NewReader(data), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := rows.next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A CSV record too large to read says which lines it spans, and whether
// it ran to the end of the input inside a quoted field.
func TestRowSizeErrorOfCSV(t *testing.T) {
	cases := []struct {
		input string
		want  RowSizeError
	}{
		{"a\n\"bcdefgh\"\ni\n", RowSizeError{Line: 2, EndLine: 2, Size: 10, Limit: 4}},
		{"a\n\"bc\ndefgh\"\ni\n", RowSizeError{Line: 2, EndLine: 3, Size: 11, Limit: 4}},
		{"a\n\"bc\ndefgh\n", RowSizeError{Line: 2, EndLine: 3, Size: 10, Limit: 4, Unclosed: true}},
		{"a\n\"bc\ndefgh", RowSizeError{Line: 2, EndLine: 3, Size: 9, Limit: 4, Unclosed: true}},
	}
	for _, tc := range cases {
		c, _ := NewCSVReader(strings.NewReader(tc.input), ',', Limits{MaxRowBytes: 4})
		var got *RowSizeError
		for {
			_, _, err := c.Read()
			if err == io.EOF {
				break
			}
			if se := (*RowSizeError)(nil); errors.As(err, &se) {
				got = se
			}
		}
		if got == nil || *got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.input, got, tc.want)
		}
	}
}
