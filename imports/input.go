package imports

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Limits bound what reading one input may cost, whatever it holds: an
// uploaded file is read by the server, and a few hundred kilobytes of gzip
// can decompress to gigabytes, or to one field of that size.
type Limits struct {
	// MaxRowBytes bounds one record: a CSV record (line breaks inside
	// quoted fields included) or one JSON line, and with it every field.
	// A longer record is skipped in bounded memory, to where a CSV reader
	// would end it, and reported as a *RowSizeError; reading goes on after
	// it. 0 means DefaultMaxRowBytes.
	MaxRowBytes int
	// MaxInputBytes bounds one input's bytes after decompression; 0 for
	// no bound. Reading stops with a *LimitError naming the line.
	MaxInputBytes int64
	// MaxRows bounds one input's records, a CSV header included: memory
	// grows with rows (every key read is remembered to catch repeats).
	// 0 for no bound. Reading stops with a *LimitError naming the line.
	MaxRows int64
}

// DefaultMaxRowBytes is the longest record read when Limits.MaxRowBytes is
// 0: far more than any CRM or shop export needs in one row.
const DefaultMaxRowBytes = 1 << 20

// rowExcerpt is how much of a record too large to read is kept, to show
// which one it was.
const rowExcerpt = 200

// LimitError reports an input that goes past Limits.MaxInputBytes or
// Limits.MaxRows. Reading stops at Line; the rows before it were read.
type LimitError struct {
	Line  int    // the line being read when the limit was passed
	Limit int64  // the limit
	What  string // what is counted: "bytes once decompressed" or "rows"
}

// Error says which limit was passed, and where.
func (e *LimitError) Error() string {
	return fmt.Sprintf("line %d: the input has more than %d %s, the most one import reads", e.Line, e.Limit, e.What)
}

// RowSizeError reports a record longer than Limits.MaxRowBytes. It was
// skipped; reading goes on with the next record.
type RowSizeError struct {
	Line    int   // the line the record starts on
	EndLine int   // the line it ends on
	Size    int64 // its bytes, line breaks included
	Limit   int   // Limits.MaxRowBytes
	// Unclosed: the record ends at the end of the input inside a quoted
	// field, which was never closed.
	Unclosed bool
}

// Error says how long the record is and why it may be.
func (e *RowSizeError) Error() string {
	s := fmt.Sprintf("the row is %d bytes, more than the limit of %d", e.Size, e.Limit)
	if e.EndLine > e.Line {
		s += fmt.Sprintf(" (lines %d to %d)", e.Line, e.EndLine)
	}
	if e.Unclosed {
		s += "; a quoted field is never closed, so the row runs to the end of the file"
	}
	return s
}

// Decompress returns r, or a gzip reader of it when r starts with the gzip
// magic bytes. Bound what is read from the result (a RecordReader's
// Limits.MaxInputBytes): gzip can expand a thousandfold.
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("invalid gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// Record is one record of an input as written.
type Record struct {
	// Line is the 1-based physical line the record starts on, EndLine the
	// one it ends on (later than Line when a quoted CSV field holds line
	// breaks).
	Line, EndLine int
	// Text is the record without its final line break; for a record too
	// large to read, its first bytes only. It is valid until the next
	// call of Next.
	Text []byte
	// full is the record with its line break, as a CSV parser reads it.
	full []byte
}

// RecordReader splits an input into records in bounded memory: JSON Lines
// by line, CSV by record as encoding/csv reads them (a quoted field may
// span lines), without ever holding more than Limits.MaxRowBytes of one
// record. Empty lines are skipped, as encoding/csv skips them; a UTF-8 byte
// order mark at the start is dropped.
type RecordReader struct {
	br    *bufio.Reader
	lim   Limits
	csv   bool
	quote quoteScan

	line  int   // line breaks read so far
	read  int64 // bytes read (decompressed)
	rows  int64 // records returned
	buf   []byte
	err   error // final: returned by every later call
	begun bool
}

// NewLineReader returns a RecordReader whose records are lines (JSON
// Lines).
func NewLineReader(r io.Reader, lim Limits) *RecordReader {
	return newRecordReader(r, lim, nil)
}

func newRecordReader(r io.Reader, lim Limits, comma []byte) *RecordReader {
	if lim.MaxRowBytes <= 0 {
		lim.MaxRowBytes = DefaultMaxRowBytes
	}
	rr := &RecordReader{br: bufio.NewReaderSize(r, 64<<10), lim: lim}
	if comma != nil {
		rr.csv, rr.quote.comma = true, comma
	}
	return rr
}

// Next returns the next record. A record longer than Limits.MaxRowBytes
// comes with a *RowSizeError (and its first bytes), and the call after it
// goes on with the next record. At the end it returns io.EOF; any other
// error (a *LimitError, a failing reader) is final and returned again by
// every later call.
func (r *RecordReader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	for {
		rec, err := r.next()
		if err != nil {
			if _, ok := err.(*RowSizeError); !ok {
				r.err = err
				return Record{}, err
			}
		}
		if err == nil && blank(rec.full) {
			continue
		}
		r.rows++
		if r.lim.MaxRows > 0 && r.rows > r.lim.MaxRows {
			r.err = &LimitError{Line: rec.Line, Limit: r.lim.MaxRows, What: "rows"}
			return Record{}, r.err
		}
		return rec, err
	}
}

// blank reports whether a record is an empty line, which encoding/csv
// skips: a line break alone ("\r\n" is one), or a lone "\r" at the end.
func blank(full []byte) bool {
	return len(full) == 0 || string(full) == "\n" || string(full) == "\r\n" || string(full) == "\r"
}

// next reads one record, empty lines included.
func (r *RecordReader) next() (Record, error) {
	if !r.begun {
		r.begun = true
		if bom, _ := r.br.Peek(3); bytes.Equal(bom, []byte("\ufeff")) {
			r.br.Discard(3)
			r.read += 3
		}
	}
	if err := r.skipEmptyLines(); err != nil {
		return Record{}, err
	}
	r.buf = r.buf[:0]
	r.quote.begin()
	rec := Record{Line: r.line + 1}
	var size int64
	nl, eof := false, false
	for {
		piece, err := r.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
			return Record{}, fmt.Errorf("line %d: %w", r.line+1, err)
		}
		if len(piece) > 0 {
			r.read += int64(len(piece))
			if r.lim.MaxInputBytes > 0 && r.read > r.lim.MaxInputBytes {
				return Record{}, &LimitError{Line: r.line + 1, Limit: r.lim.MaxInputBytes, What: "bytes once decompressed"}
			}
			size += int64(len(piece))
			if size <= int64(r.lim.MaxRowBytes) {
				r.buf = append(r.buf, piece...)
			} else if keep := rowExcerpt - len(r.buf); keep > 0 {
				r.buf = append(r.buf, piece[:min(keep, len(piece))]...)
			}
			nl = piece[len(piece)-1] == '\n'
			content := piece
			if nl {
				content = piece[:len(piece)-1]
			}
			if r.csv {
				r.quote.scan(content)
			}
			if nl {
				r.line++
				if !r.csv || r.quote.st != stQuoted {
					break
				}
				continue
			}
		}
		if err == io.EOF {
			if size == 0 {
				return Record{}, io.EOF
			}
			eof = true
			break
		}
	}
	rec.EndLine = r.line
	if !nl {
		rec.EndLine++ // the last line, without a line break
	}
	if size > int64(r.lim.MaxRowBytes) && !blank(r.buf) {
		rec.Text = bytes.TrimRight(trimExcerpt(r.buf), "\r\n")
		return rec, &RowSizeError{Line: rec.Line, EndLine: rec.EndLine, Size: size, Limit: r.lim.MaxRowBytes,
			Unclosed: r.csv && eof && r.quote.st == stQuoted}
	}
	rec.full = r.buf
	// "\r\n" ends a line as "\n" does, and a "\r" at the end is dropped,
	// as encoding/csv does.
	rec.Text = bytes.TrimSuffix(bytes.TrimSuffix(r.buf, []byte("\n")), []byte("\r"))
	return rec, nil
}

// skipEmptyLines passes over empty lines in the buffer at once: a file of
// nothing else (a gzip bomb of line breaks) costs no more than reading it.
func (r *RecordReader) skipEmptyLines() error {
	for {
		b, _ := r.br.Peek(r.br.Buffered())
		if len(b) == 0 {
			if b, _ = r.br.Peek(1); len(b) == 0 {
				return nil // the end, or an error the next read reports
			}
			b, _ = r.br.Peek(r.br.Buffered())
		}
		k, lines := 0, 0
		for k < len(b) {
			if b[k] == '\n' {
				k, lines = k+1, lines+1
			} else if b[k] == '\r' && k+1 < len(b) && b[k+1] == '\n' {
				k, lines = k+2, lines+1
			} else {
				break
			}
		}
		if k == 0 {
			return nil
		}
		if limit := r.lim.MaxInputBytes; limit > 0 && r.read+int64(k) > limit {
			at := r.line + bytes.Count(b[:limit-r.read], []byte("\n")) + 1
			return &LimitError{Line: at, Limit: limit, What: "bytes once decompressed"}
		}
		r.br.Discard(k)
		r.read += int64(k)
		r.line += lines
	}
}

// trimExcerpt cuts the start of a record at a character boundary.
func trimExcerpt(b []byte) []byte {
	b = b[:min(len(b), rowExcerpt)]
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return b
}

// The states of quoteScan.
const (
	stField     = iota // in an unquoted field, or at the start of one
	stQuoted           // in a quoted field
	stQuoteSeen        // just after a quote in a quoted field
	stQuoteCR          // after a closing quote and a carriage return
	stError            // a quote error: the record ends with the line
)

// quoteScan follows a CSV record the way encoding/csv parses it (no lazy
// quotes), far enough to know whether a line break ends the record or
// falls inside a quoted field. A quote opens a quoted field only at a
// field's start; inside one, a doubled quote is a quote and a quote before
// the delimiter or the line break closes it; any other quote is an error,
// after which encoding/csv ends the record with the line.
type quoteScan struct {
	comma []byte // the delimiter, UTF-8 encoded
	st    int
	k     int // bytes of the delimiter matched after a closing quote
	// Unquoted content since the field's start: whether there is any,
	// and its last bytes, to tell whether a quote follows a delimiter.
	content bool
	tail    [utf8.UTFMax]byte
	ntail   int
}

func (s *quoteScan) begin() { s.st, s.k = stField, 0; s.fieldStart() }

func (s *quoteScan) fieldStart() { s.st, s.content, s.ntail = stField, false, 0 }

// scan follows one piece of a line, its line break left out.
func (s *quoteScan) scan(c []byte) {
	for i := 0; i < len(c); {
		switch s.st {
		case stQuoted:
			j := bytes.IndexByte(c[i:], '"')
			if j < 0 {
				return
			}
			i += j + 1
			s.st, s.k = stQuoteSeen, 0
		case stQuoteSeen:
			switch b := c[i]; {
			case s.k == 0 && b == '"': // an escaped quote
				s.st = stQuoted
			case s.k == 0 && b == '\r': // fine if the line ends here
				s.st = stQuoteCR
			case b == s.comma[s.k]:
				s.k++
				if s.k == len(s.comma) {
					s.fieldStart()
				}
			default:
				s.st = stError
				return
			}
			i++
		case stQuoteCR:
			s.st = stError
			return
		case stField:
			seg := c[i:]
			j := bytes.IndexByte(seg, '"')
			if j < 0 {
				s.addContent(seg)
				return
			}
			if !s.atFieldStart(seg[:j]) {
				s.st = stError
				return
			}
			s.st = stQuoted
			i += j + 1
		case stError:
			return
		}
	}
}

// addContent notes unquoted content.
func (s *quoteScan) addContent(b []byte) {
	if len(b) == 0 {
		return
	}
	s.content = true
	if len(b) >= len(s.tail) {
		s.ntail = copy(s.tail[:], b[len(b)-len(s.tail):])
		return
	}
	keep := min(s.ntail, len(s.tail)-len(b))
	copy(s.tail[:], s.tail[s.ntail-keep:s.ntail])
	s.ntail = keep + copy(s.tail[keep:], b)
}

// atFieldStart reports whether a quote after the unquoted content pre
// (which follows what addContent saw) opens a quoted field: whether
// nothing, or a delimiter, comes right before it.
func (s *quoteScan) atFieldStart(pre []byte) bool {
	if len(pre) == 0 && !s.content {
		return true
	}
	n := len(s.comma)
	if len(pre) >= n {
		return bytes.Equal(pre[len(pre)-n:], s.comma)
	}
	need := n - len(pre)
	return s.ntail >= need && bytes.Equal(s.tail[s.ntail-need:s.ntail], s.comma[:need]) && bytes.Equal(pre, s.comma[need:])
}

// CSVReader reads CSV records as encoding/csv does (RFC 4180, a one-rune
// delimiter, no lazy quotes, records may have any number of fields) in
// bounded memory, with each record's line and text.
type CSVReader struct {
	rr   *RecordReader
	cr   *csv.Reader
	feed recordFeed
	// lines fed to cr so far, to turn its line numbers into the input's.
	fed   int
	comma rune
}

// NewCSVReader returns a CSVReader of r with the delimiter comma (which
// may not be a quote, a line break or NUL).
func NewCSVReader(r io.Reader, comma rune, lim Limits) (*CSVReader, error) {
	if !validDelimiter(comma) {
		return nil, fmt.Errorf("%q cannot be a CSV delimiter", comma)
	}
	c := &CSVReader{rr: newRecordReader(r, lim, utf8.AppendRune(nil, comma)), comma: comma}
	c.reset()
	return c, nil
}

// validDelimiter reports whether r can separate CSV fields (as
// encoding/csv allows).
func validDelimiter(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && utf8.ValidRune(r) && r != utf8.RuneError
}

// reset starts a new csv.Reader on the feed.
func (c *CSVReader) reset() {
	c.cr = csv.NewReader(&c.feed)
	c.cr.Comma = c.comma
	c.cr.FieldsPerRecord = -1
	c.fed = 0
}

// Read returns the next record's fields and the record. A record that
// cannot be parsed gives a *csv.ParseError with the input's line numbers,
// and one too large a *RowSizeError; reading goes on after either. At the
// end Read returns io.EOF; any other error is final.
func (c *CSVReader) Read() ([]string, Record, error) {
	rec, err := c.rr.Next()
	if err != nil {
		return nil, rec, err
	}
	// The record alone is fed to the parser. It ends in a line break,
	// unless it ends the input, so the parser stops at its end.
	c.feed.b = rec.full
	n := int64(len(rec.full))
	from := c.cr.InputOffset()
	fields, err := c.cr.Read()
	before := c.fed
	c.fed += rec.EndLine - rec.Line + 1
	if err == nil && c.cr.InputOffset()-from == n {
		return fields, rec, nil
	}
	var pe *csv.ParseError
	isParse := errors.As(err, &pe)
	if c.cr.InputOffset()-from != n || !isParse {
		// The parser ended the record elsewhere than the splitter, which
		// follows it, so this should not happen: start a fresh parser
		// rather than let one record's rest spill into the next.
		c.reset()
		return nil, rec, &csv.ParseError{StartLine: rec.Line, Line: rec.Line, Column: 1, Err: errors.New("the record could not be told apart from the next")}
	}
	shift := rec.Line - 1 - before
	out := *pe
	out.StartLine, out.Line = pe.StartLine+shift, pe.Line+shift
	return nil, rec, &out
}

// recordFeed hands one record to the csv.Reader, then io.EOF.
type recordFeed struct{ b []byte }

func (f *recordFeed) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}
