package insights

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// FileFormat says how to read an orders file: CSV with a header naming the
// columns, or (NoHeader) whitespace-separated text whose columns are given
// by number, counted from 1 — the way CDNOW_sample.txt comes.
type FileFormat struct {
	CustomerCol string
	DateCol     string
	// AmountCol may be empty when only purchase timing matters.
	AmountCol string
	// DateFormat is a Go layout ("2006-01-02") or strftime-style
	// ("%Y%m%d"); empty tries the common ones.
	DateFormat string
	NoHeader   bool
}

// Row is one order read from a file.
type Row struct {
	Line     int
	Customer string
	At       time.Time
	Amount   float64
}

// dateLayouts are tried in order when no format is given.
var dateLayouts = []string{
	time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02",
	"20060102", "1/2/2006 15:04:05", "1/2/2006 15:04", "1/2/2006", "2006/01/02",
}

// goLayout turns a strftime-style format into a Go layout; Go layouts pass
// through.
func goLayout(f string) string {
	if !strings.Contains(f, "%") {
		return f
	}
	r := strings.NewReplacer("%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04", "%S", "05", "%y", "06", "%b", "Jan", "%%", "%")
	return r.Replace(f)
}

// ReadOrders reads every row of an orders file (gzip-compressed input is
// recognised). A row that cannot be read is an error naming its line and
// what is wrong with it: an analysis on silently skipped rows would be
// wrong without anyone knowing.
func ReadOrders(r io.Reader, f FileFormat) ([]Row, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("insights: read gzip input: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	if f.CustomerCol == "" || f.DateCol == "" {
		return nil, errors.New("insights: the customer and date columns are required")
	}
	next, err := recordReader(br, f.NoHeader)
	if err != nil {
		return nil, err
	}
	var header []string
	line := 0
	if !f.NoHeader {
		header, line, err = next()
		if err != nil {
			return nil, fmt.Errorf("insights: read header: %w", err)
		}
	}
	col := func(name string) (int, error) {
		if name == "" {
			return -1, nil
		}
		if f.NoHeader {
			n, err := strconv.Atoi(name)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("insights: without a header, columns are numbers from 1; got %q", name)
			}
			return n - 1, nil
		}
		for i, h := range header {
			if strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == name {
				return i, nil
			}
		}
		return 0, fmt.Errorf("insights: no column %q in the header (%s)", name, strings.Join(header, ", "))
	}
	cc, err := col(f.CustomerCol)
	if err != nil {
		return nil, err
	}
	dc, err := col(f.DateCol)
	if err != nil {
		return nil, err
	}
	ac, err := col(f.AmountCol)
	if err != nil {
		return nil, err
	}
	layouts := dateLayouts
	if f.DateFormat != "" {
		layouts = []string{goLayout(f.DateFormat)}
	}
	var rows []Row
	for {
		rec, ln, err := next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		} else if err != nil {
			return nil, err
		}
		line = ln
		if len(rec) == 0 {
			continue
		}
		get := func(i int, what string) (string, error) {
			if i >= len(rec) {
				return "", fmt.Errorf("insights: line %d: no %s column (the row has %d)", line, what, len(rec))
			}
			return strings.TrimSpace(rec[i]), nil
		}
		row := Row{Line: line}
		if row.Customer, err = get(cc, "customer"); err != nil {
			return nil, err
		}
		if row.Customer == "" {
			return nil, fmt.Errorf("insights: line %d: empty customer", line)
		}
		ds, err := get(dc, "date")
		if err != nil {
			return nil, err
		}
		if row.At, err = parseDate(ds, layouts); err != nil {
			return nil, fmt.Errorf("insights: line %d: %w", line, err)
		}
		if ac >= 0 {
			as, err := get(ac, "amount")
			if err != nil {
				return nil, err
			}
			v, err := strconv.ParseFloat(as, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("insights: line %d: amount %q is not a number", line, as)
			}
			row.Amount = v
		}
		rows = append(rows, row)
	}
}

func parseDate(s string, layouts []string) (time.Time, error) {
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if len(layouts) == 1 {
		return time.Time{}, fmt.Errorf("date %q does not match the format %q", s, layouts[0])
	}
	return time.Time{}, fmt.Errorf("date %q is in no known format (give --date-format)", s)
}

// recordReader returns a function yielding records with their line number.
func recordReader(r *bufio.Reader, whitespace bool) (func() ([]string, int, error), error) {
	if whitespace {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		line := 0
		return func() ([]string, int, error) {
			if !sc.Scan() {
				if err := sc.Err(); err != nil {
					return nil, line, fmt.Errorf("insights: line %d: %w", line+1, err)
				}
				return nil, line, io.EOF
			}
			line++
			return strings.Fields(sc.Text()), line, nil
		}, nil
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	return func() ([]string, int, error) {
		rec, err := cr.Read()
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, pe.StartLine, fmt.Errorf("insights: %w", err)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("insights: %w", err)
		}
		line := 0
		if len(rec) > 0 {
			// Field positions are known only for a record read whole.
			line, _ = cr.FieldPos(0)
		}
		return rec, line, err
	}, nil
}

// FileSource groups rows by customer into a Source, each customer's orders
// oldest first (rows of the same time keep file order), customers in the
// order they first appear.
func FileSource(rows []Row) Source {
	return func(ctx context.Context, fn func(kith.CustomerOrders) error) error {
		idx := map[string]int{}
		var all []kith.CustomerOrders
		for i, r := range rows {
			j, ok := idx[r.Customer]
			if !ok {
				j = len(all)
				idx[r.Customer] = j
				all = append(all, kith.CustomerOrders{ProfileID: r.Customer})
			}
			all[j].Orders = append(all[j].Orders, kith.Order{ProfileID: r.Customer, Seq: int64(i), Timestamp: r.At, Revenue: r.Amount})
		}
		for _, c := range all {
			slices.SortStableFunc(c.Orders, kith.CompareOrders)
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
}
