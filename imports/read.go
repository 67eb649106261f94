package imports

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

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
// magic bytes, and in the reader of its format, within the limits.
func openRows(m *Mapping, name string, r io.Reader, lim Limits) (rowReader, error) {
	format, err := formatOf(m, name)
	if err != nil {
		return nil, err
	}
	in, err := Decompress(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if format == "jsonl" {
		return &jsonlReader{r: NewLineReader(in, lim)}, nil
	}
	return newCSVReader(in, []rune(m.Delimiter)[0], name, lim)
}

// tooLarge is the row of a record too large to read: its line, its start,
// and why.
func tooLarge(rec Record, err *RowSizeError) row {
	return row{line: rec.Line, raw: string(rec.Text) + "…", bad: &reject{Reason: ReasonRowTooLarge, Message: err.Error()}}
}

// csvReader reads the rows of a CSV input.
type csvReader struct {
	r    *CSVReader
	head []string
}

func newCSVReader(r io.Reader, comma rune, name string, lim Limits) (*csvReader, error) {
	cr, err := NewCSVReader(r, comma, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	head, _, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: the file is empty (a CSV input needs a header row)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	for i := range head {
		head[i] = strings.TrimSpace(head[i])
	}
	return &csvReader{r: cr, head: head}, nil
}

func (c *csvReader) header() []string { return c.head }

func (c *csvReader) next() (row, error) {
	for {
		fields, rec, err := c.r.Read()
		if err != nil {
			var pe *csv.ParseError
			var se *RowSizeError
			switch {
			case errors.As(err, &se):
				return tooLarge(rec, se), nil
			case errors.As(err, &pe):
				return row{line: pe.StartLine, raw: string(rec.Text), bad: &reject{Reason: ReasonMalformedRow, Message: pe.Error()}}, nil
			}
			return row{}, err
		}
		if len(fields) == 1 && fields[0] == "" {
			continue // a blank line
		}
		if len(fields) != len(c.head) {
			return row{line: rec.Line, raw: string(rec.Text), bad: &reject{Reason: ReasonMalformedRow,
				Message: fmt.Sprintf("the row has %d fields, the header %d", len(fields), len(c.head))}}, nil
		}
		return row{line: rec.Line, fields: fields, raw: string(rec.Text)}, nil
	}
}

// jsonlReader reads one JSON object per line.
type jsonlReader struct {
	r *RecordReader
}

func (j *jsonlReader) header() []string { return nil }

func (j *jsonlReader) next() (row, error) {
	for {
		rec, err := j.r.Next()
		if err != nil {
			var se *RowSizeError
			if errors.As(err, &se) {
				return tooLarge(rec, se), nil
			}
			return row{}, err
		}
		text := rec.Text
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		r := row{line: rec.Line, raw: string(text)}
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
