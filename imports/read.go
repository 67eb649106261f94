package imports

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// maxJSONLine bounds one JSON Lines row; a longer one is rejected, not
// buffered without limit.
const maxJSONLine = 1 << 20

// row is one input record: a CSV record or a JSON Lines object.
type row struct {
	line   int // physical line the record starts on (1-based)
	fields []string
	obj    map[string]any
	raw    string // the record as written, for the rejects file
	// bad is set when the record could not be read as a row.
	bad *reject
}

// value returns the row's value of a column and whether it is present
// (an empty CSV field or a JSON null counts as absent).
func (r *row) value(idx map[string]int, f *Field) (any, bool) {
	if r.obj != nil {
		var v any = r.obj
		for _, p := range f.path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[p]; !ok {
				return nil, false
			}
		}
		if v == nil {
			return nil, false
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, false
		}
		return v, true
	}
	i, ok := idx[f.Column]
	if !ok || i >= len(r.fields) || r.fields[i] == "" {
		return nil, false
	}
	return r.fields[i], true
}

// text is a column's value as text, for keys and group comparison.
func (r *row) text(idx map[string]int, column string) string {
	v, ok := r.value(idx, &Field{Column: column, path: strings.Split(column, ".")})
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// rowReader yields rows of one input.
type rowReader interface {
	// next returns the next row, io.EOF at the end, or another error when
	// the input cannot be read further.
	next() (row, error)
	// header is the CSV header (nil for JSON Lines).
	header() []string
}

// countingReader counts the bytes read from the underlying (possibly
// compressed) file, for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// formatOf picks the input format: the mapping's, else the extension's.
func formatOf(m *Mapping, name string) (string, error) {
	if m.Format != "" {
		return m.Format, nil
	}
	base := strings.TrimSuffix(strings.ToLower(filepath.Base(name)), ".gz")
	switch filepath.Ext(base) {
	case ".csv", ".tsv", ".txt":
		return "csv", nil
	case ".jsonl", ".ndjson", ".json":
		return "jsonl", nil
	}
	return "", fmt.Errorf("%s: cannot tell the format from the name; set format: csv or jsonl in the mapping", name)
}

// openRows wraps an input in a decompressor when it starts with the gzip
// magic bytes, and in the reader of its format.
func openRows(m *Mapping, name string, r io.Reader) (rowReader, error) {
	format, err := formatOf(m, name)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: invalid gzip: %w", name, err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	if format == "jsonl" {
		return &jsonlReader{r: br}, nil
	}
	return newCSVReader(br, []rune(m.Delimiter)[0], name)
}

// csvReader reads CSV records and keeps each one's text: the csv package
// reports where a record ends (InputOffset), and a tee keeps the bytes
// since the previous record.
type csvReader struct {
	r    *csv.Reader
	tee  *teeBuffer
	head []string
	prev int64
	line int
}

type teeBuffer struct {
	r    io.Reader
	buf  []byte
	base int64 // input offset of buf[0]
}

func (t *teeBuffer) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// take returns the bytes [from, to) of the input and forgets those before to.
func (t *teeBuffer) take(from, to int64) string {
	lo, hi := from-t.base, to-t.base
	lo, hi = max(lo, 0), min(hi, int64(len(t.buf)))
	var s string
	if lo < hi {
		s = string(t.buf[lo:hi])
	}
	if hi > 0 {
		t.buf = append(t.buf[:0], t.buf[hi:]...)
		t.base += hi
	}
	return s
}

func newCSVReader(r io.Reader, comma rune, name string) (*csvReader, error) {
	tee := &teeBuffer{r: r}
	cr := csv.NewReader(tee)
	cr.Comma = comma
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: the file is empty (a CSV input needs a header row)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	// A byte order mark is not part of the first column's name.
	head[0] = strings.TrimPrefix(head[0], "\ufeff")
	for i := range head {
		head[i] = strings.TrimSpace(head[i])
	}
	c := &csvReader{r: cr, tee: tee, head: head}
	c.prev = cr.InputOffset()
	tee.take(0, c.prev)
	return c, nil
}

func (c *csvReader) header() []string { return c.head }

func (c *csvReader) next() (row, error) {
	for {
		rec, err := c.r.Read()
		off := c.r.InputOffset()
		raw := strings.Trim(c.tee.take(c.prev, off), "\r\n")
		c.prev = off
		if err == io.EOF {
			return row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return row{line: pe.StartLine, raw: raw, bad: &reject{Reason: ReasonMalformedRow, Message: pe.Error()}}, nil
		}
		if err != nil {
			return row{}, err
		}
		if len(rec) == 0 || len(rec) == 1 && rec[0] == "" {
			continue // a blank line
		}
		// Field positions are known only for a record read without error.
		line, _ := c.r.FieldPos(0)
		if len(rec) != len(c.head) {
			return row{line: line, raw: raw, bad: &reject{Reason: ReasonMalformedRow,
				Message: fmt.Sprintf("the row has %d fields, the header %d", len(rec), len(c.head))}}, nil
		}
		return row{line: line, fields: rec, raw: raw}, nil
	}
}

// jsonlReader reads one JSON object per line.
type jsonlReader struct {
	r    *bufio.Reader
	line int
}

func (j *jsonlReader) header() []string { return nil }

func (j *jsonlReader) next() (row, error) {
	for {
		b, err := j.r.ReadSlice('\n')
		if len(b) == 0 && err == io.EOF {
			return row{}, io.EOF
		}
		j.line++
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: read it to its end in pieces,
			// keeping at most maxJSONLine bytes.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = j.r.ReadSlice('\n')
				if len(long) <= maxJSONLine {
					long = append(long, b...)
				}
			}
			if len(long) > maxJSONLine {
				return row{line: j.line, raw: string(long[:200]) + "…", bad: &reject{Reason: ReasonMalformedRow,
					Message: fmt.Sprintf("the line is longer than %d bytes", maxJSONLine)}}, nil
			}
			b = long
		}
		if err != nil && err != io.EOF {
			return row{}, err
		}
		text := bytes.TrimRight(b, "\r\n")
		if len(bytes.TrimSpace(text)) == 0 {
			if err == io.EOF {
				return row{}, io.EOF
			}
			continue
		}
		r := row{line: j.line, raw: string(text)}
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.UseNumber()
		var obj map[string]any
		if derr := dec.Decode(&obj); derr != nil || obj == nil || dec.More() {
			msg := "the line is not one JSON object"
			if derr != nil {
				msg += ": " + derr.Error()
			}
			r.bad = &reject{Reason: ReasonMalformedRow, Message: msg}
			return r, nil
		}
		r.obj = obj
		return r, nil
	}
}
