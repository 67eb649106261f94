package dmp

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kithcdp/kith"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kithcdp/kith/imports"
)

// DefaultTTL is how long a third-party audience membership lasts when its
// row gives no expires_at.
const DefaultTTL = 90 * 24 * time.Hour

// The formats of third-party audience files, as NewAudienceReader takes
// them.
const (
	// FormatCSV is comma-separated values with the header row
	// "id_type,id,audiences,expires_at" (expires_at may be left out).
	FormatCSV = "csv"
	// FormatJSONL is JSON Lines: one JSON object per line with the keys
	// id_type, id, audiences and, optionally, expires_at.
	FormatJSONL = "jsonl"
)

// The identifier types of a third-party audience row.
const (
	// IDTypeCookie is a DMP cookie id, kept as sent.
	IDTypeCookie = "cookie"
	// IDTypeMAID is a mobile advertising id (Apple IDFA or Google GAID), a
	// UUID, kept in lower case.
	IDTypeMAID = "maid"
	// IDTypeEmailSHA256 is the hex SHA-256 digest of a normalised e-mail
	// address, kept in lower case.
	IDTypeEmailSHA256 = "email_sha256"
)

// The reasons a RowError gives, short codes fit for counting and for
// machines.
const (
	// ReasonInvalidIDType means id_type is missing or not one of the
	// IDType constants.
	ReasonInvalidIDType = "invalid_id_type"
	// ReasonInvalidID means id is missing or not of the form its id_type
	// needs.
	ReasonInvalidID = "invalid_id"
	// ReasonNoAudiences means the row names no audience once blanks are
	// dropped.
	ReasonNoAudiences = "no_audiences"
	// ReasonInvalidExpiry means expires_at is neither RFC 3339 nor
	// YYYY-MM-DD.
	ReasonInvalidExpiry = "invalid_expiry"
	// ReasonExpired means expires_at is not after the reader's now.
	ReasonExpired = "expired"
	// ReasonMalformedRow means the row could not be read at all: a CSV row
	// with the wrong number of fields or broken quoting, a JSON line that
	// is not a JSON object, or an audiences value of the wrong JSON type.
	ReasonMalformedRow = "malformed_row"
	// ReasonRowTooLarge means the row is longer than MaxRowBytes; it was
	// skipped without being read whole.
	ReasonRowTooLarge = "row_too_large"
	// ReasonInvalidAudience means an audience name is not text a store can
	// hold (a NUL character, invalid UTF-8) or is longer than
	// MaxAudienceNameBytes.
	ReasonInvalidAudience = "invalid_audience"
)

// MaxAudienceNameBytes is the longest audience name a file may give.
const MaxAudienceNameBytes = 200

// MaxRowBytes is the longest row of an audience file, line breaks in
// quoted fields included: an id and its audiences need far less, and a
// row's audiences become one stored entry each, so a longer row is
// rejected (ReasonRowTooLarge) and skipped in bounded memory.
const MaxRowBytes = 64 << 10

// audienceSeparator separates audience names within one audiences field.
const audienceSeparator = "|"

// maxCookieIDLen is the longest cookie id accepted, in bytes.
const maxCookieIDLen = 256

// emptySHA256 is the digest of the empty string: a partner that hashes a
// missing e-mail sends it, and it identifies no one.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// zeroMAID is the advertising id a device reports when the user has not
// allowed tracking. Apple: "The advertising identifier returns either a
// unique UUID, or all zeros"
// (https://developer.apple.com/documentation/adsupport/asidentifiermanager/advertisingidentifier);
// Android returns the zeroed-out id AdId.ZERO_OUT when the user has limited
// ad tracking
// (https://developer.android.com/reference/android/adservices/adid/AdId#ZERO_OUT),
// and Google Play services' AdvertisingIdClient.Info.getId returns the same
// value then. It identifies no one.
const zeroMAID = "00000000-0000-0000-0000-000000000000"

var (
	// ErrUnknownFormat is returned, wrapped, by AudienceReader.Next when the
	// reader was made for a format other than FormatCSV or FormatJSONL.
	ErrUnknownFormat = errors.New("dmp: unknown audience file format")
	// ErrBadHeader is returned, wrapped, by AudienceReader.Next when a CSV
	// file's header row is missing a required column or has an unknown or
	// repeated one.
	ErrBadHeader = errors.New("dmp: bad audience file header")
)

// AudienceRecord is one valid row of a third-party audience file: the
// person it names and the audiences they belong to until ExpiresAt.
type AudienceRecord struct {
	// Line is the 1-based physical line of the input the row starts on.
	Line int
	// IDType is one of the IDType constants.
	IDType string
	// ID is the normalised identifier: a cookie id as sent, a lower-case
	// UUID, or a lower-case hex SHA-256 digest.
	ID string
	// Audiences holds the audience names, trimmed, without blanks or
	// repeats, in the order first given. It is never empty.
	Audiences []string
	// ExpiresAt is when the memberships end, in UTC: the row's expires_at,
	// or the reader's now plus its default TTL.
	ExpiresAt time.Time
}

// RowError reports a bad row of a third-party audience file. Reading goes
// on with the next row after it.
type RowError struct {
	// Line is the 1-based physical line of the input the row starts on.
	Line int
	// Reason is one of the Reason constants.
	Reason string
	// Message says what was wrong, for people.
	Message string
}

// Error returns the line, reason and message in one string.
func (e *RowError) Error() string {
	return fmt.Sprintf("dmp: line %d: %s: %s", e.Line, e.Reason, e.Message)
}

// AudienceReader reads third-party audience records from a CSV or JSON
// Lines stream, one row at a time. It does not decompress: a caller with a
// gzip file wraps r in a gzip.Reader first.
//
// In both formats id_type is one of "cookie", "maid" and "email_sha256";
// audiences lists audience names separated by '|' (in JSON Lines it may
// instead be an array of strings); expires_at is optional, RFC 3339
// ("2026-03-01T08:30:00Z") or a date ("2026-03-01", meaning midnight UTC at
// the start of that day), and when empty or absent the record expires the
// default TTL after now. Blank lines are skipped. In CSV the header row
// names the columns, in any order; expires_at may be left out of it but an
// unknown column is an error. In JSON Lines unknown keys are ignored.
type AudienceReader struct {
	format string
	now    time.Time
	ttl    time.Duration
	err    error // sticky: returned by every Next after a fatal error

	// CSV.
	cr      *imports.CSVReader
	cols    map[string]int
	ncols   int
	started bool

	// JSON Lines.
	lr *imports.RecordReader
}

// NewAudienceReader returns a reader of r in format, FormatCSV ("csv") or
// FormatJSONL ("jsonl"), case and surrounding space ignored. now is the
// time expiries are judged against; defaultTTL is how long a row without
// expires_at lasts, DefaultTTL when it is zero or negative. An unknown
// format is reported by Next. Rows are read in bounded memory (a row longer
// than MaxRowBytes is a ReasonRowTooLarge row error), whatever the size of
// r.
func NewAudienceReader(r io.Reader, format string, now time.Time, defaultTTL time.Duration) *AudienceReader {
	return newAudienceReader(r, format, now, defaultTTL, 0)
}

// newAudienceReader is NewAudienceReader that also stops, with a fatal
// *imports.LimitError naming the line, after maxInput bytes (0: no limit).
func newAudienceReader(r io.Reader, format string, now time.Time, defaultTTL time.Duration, maxInput int64) *AudienceReader {
	if defaultTTL <= 0 {
		defaultTTL = DefaultTTL
	}
	ar := &AudienceReader{format: strings.ToLower(strings.TrimSpace(format)), now: now, ttl: defaultTTL}
	lim := imports.Limits{MaxRowBytes: MaxRowBytes, MaxInputBytes: maxInput}
	switch ar.format {
	case FormatCSV:
		// Rows may have any number of fields: checked against the header
		// here, as a row error.
		ar.cr, ar.err = imports.NewCSVReader(r, ',', lim)
	case FormatJSONL:
		ar.lr = imports.NewLineReader(r, lim)
	default:
		ar.err = fmt.Errorf("%w %q (want %q or %q)", ErrUnknownFormat, format, FormatCSV, FormatJSONL)
	}
	return ar
}

// Next returns the next valid record. At the end of the input it returns
// io.EOF. For a bad row it returns a *RowError, and the following call goes
// on with the next row; any other error (an unknown format, a bad CSV
// header, a failing reader) is final and every later call returns it again.
func (ar *AudienceReader) Next() (AudienceRecord, error) {
	if ar.err != nil {
		return AudienceRecord{}, ar.err
	}
	var rec AudienceRecord
	var err error
	if ar.format == FormatCSV {
		rec, err = ar.nextCSV()
	} else {
		rec, err = ar.nextJSONL()
	}
	if err != nil {
		var re *RowError
		if !errors.As(err, &re) {
			ar.err = err
		}
		return AudienceRecord{}, err
	}
	return rec, nil
}

// The CSV column names.
const (
	colIDType    = "id_type"
	colID        = "id"
	colAudiences = "audiences"
	colExpiresAt = "expires_at"
)

// readHeader reads and checks the CSV header row.
func (ar *AudienceReader) readHeader() error {
	hdr, _, err := ar.cr.Read()
	if err != nil {
		var pe *csv.ParseError
		var se *imports.RowSizeError
		if errors.As(err, &pe) || errors.As(err, &se) {
			return fmt.Errorf("%w: %v", ErrBadHeader, err)
		}
		return err // io.EOF for an empty file: no records
	}
	ar.cols = make(map[string]int, len(hdr))
	for i, name := range hdr {
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff") // a UTF-8 byte order mark
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case colIDType, colID, colAudiences, colExpiresAt:
		default:
			return fmt.Errorf("%w: unknown column %q (want id_type,id,audiences,expires_at)", ErrBadHeader, name)
		}
		if _, dup := ar.cols[name]; dup {
			return fmt.Errorf("%w: column %q repeated", ErrBadHeader, name)
		}
		ar.cols[name] = i
	}
	for _, need := range []string{colIDType, colID, colAudiences} {
		if _, ok := ar.cols[need]; !ok {
			return fmt.Errorf("%w: no %q column", ErrBadHeader, need)
		}
	}
	ar.ncols = len(hdr)
	return nil
}

// nextCSV returns the next valid CSV record or a row error.
func (ar *AudienceReader) nextCSV() (AudienceRecord, error) {
	if !ar.started {
		if err := ar.readHeader(); err != nil {
			return AudienceRecord{}, err
		}
		ar.started = true
	}
	for {
		fields, r, err := ar.cr.Read()
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return AudienceRecord{}, &RowError{Line: pe.StartLine, Reason: ReasonMalformedRow, Message: pe.Err.Error()}
			}
			return AudienceRecord{}, rowTooLarge(err)
		}
		line := r.Line
		if len(fields) == 1 && strings.TrimSpace(fields[0]) == "" {
			continue // a line of white space only
		}
		if len(fields) != ar.ncols {
			return AudienceRecord{}, &RowError{Line: line, Reason: ReasonMalformedRow,
				Message: fmt.Sprintf("row has %d fields, header has %d", len(fields), ar.ncols)}
		}
		rec := AudienceRecord{Line: line}
		var re *RowError
		if rec.IDType, re = checkIDType(line, fields[ar.cols[colIDType]]); re != nil {
			return AudienceRecord{}, re
		}
		if rec.ID, re = checkID(line, rec.IDType, fields[ar.cols[colID]]); re != nil {
			return AudienceRecord{}, re
		}
		names := strings.Split(fields[ar.cols[colAudiences]], audienceSeparator)
		if rec.Audiences, re = checkAudiences(line, names); re != nil {
			return AudienceRecord{}, re
		}
		expires := ""
		if i, ok := ar.cols[colExpiresAt]; ok {
			expires = fields[i]
		}
		if rec.ExpiresAt, re = ar.checkExpiry(line, expires); re != nil {
			return AudienceRecord{}, re
		}
		return rec, nil
	}
}

// nextJSONL returns the next valid JSON Lines record or a row error.
func (ar *AudienceReader) nextJSONL() (AudienceRecord, error) {
	for {
		r, err := ar.lr.Next()
		if err != nil {
			return AudienceRecord{}, rowTooLarge(err) // io.EOF at the end
		}
		raw := bytes.TrimSpace(r.Text)
		if len(raw) == 0 {
			continue
		}
		return ar.parseJSONLine(r.Line, raw)
	}
}

// rowTooLarge turns a row too large to read into a row error; any other
// error is returned as it is.
func rowTooLarge(err error) error {
	var se *imports.RowSizeError
	if errors.As(err, &se) {
		return &RowError{Line: se.Line, Reason: ReasonRowTooLarge, Message: se.Error()}
	}
	return err
}

// parseJSONLine checks one non-blank JSON line.
func (ar *AudienceReader) parseJSONLine(line int, raw []byte) (AudienceRecord, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		msg := "not a JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		return AudienceRecord{}, &RowError{Line: line, Reason: ReasonMalformedRow, Message: msg}
	}
	rec := AudienceRecord{Line: line}
	var re *RowError

	idType, ok := jsonString(obj[colIDType])
	if !ok {
		return AudienceRecord{}, &RowError{Line: line, Reason: ReasonInvalidIDType, Message: "id_type is not a string"}
	}
	if rec.IDType, re = checkIDType(line, idType); re != nil {
		return AudienceRecord{}, re
	}

	id, ok := jsonString(obj[colID])
	if !ok {
		return AudienceRecord{}, &RowError{Line: line, Reason: ReasonInvalidID, Message: "id is not a string"}
	}
	if rec.ID, re = checkID(line, rec.IDType, id); re != nil {
		return AudienceRecord{}, re
	}

	names, re := jsonAudiences(line, obj[colAudiences])
	if re != nil {
		return AudienceRecord{}, re
	}
	if rec.Audiences, re = checkAudiences(line, names); re != nil {
		return AudienceRecord{}, re
	}

	expires, ok := jsonString(obj[colExpiresAt])
	if !ok {
		return AudienceRecord{}, &RowError{Line: line, Reason: ReasonInvalidExpiry, Message: "expires_at is not a string"}
	}
	if rec.ExpiresAt, re = ar.checkExpiry(line, expires); re != nil {
		return AudienceRecord{}, re
	}
	return rec, nil
}

// jsonString decodes a JSON string; an absent value or null gives "", true
// and any other JSON type "", false.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonAudiences decodes audiences given as a '|'-separated string or an
// array of strings; absent or null gives no names.
func jsonAudiences(line int, raw json.RawMessage) ([]string, *RowError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return strings.Split(s, audienceSeparator), nil
		}
	case '[':
		var names []string
		if err := json.Unmarshal(raw, &names); err == nil {
			return names, nil
		}
	}
	return nil, &RowError{Line: line, Reason: ReasonMalformedRow,
		Message: "audiences is neither a string nor an array of strings"}
}

// checkIDType returns the id type in canonical (lower) case.
func checkIDType(line int, s string) (string, *RowError) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case IDTypeCookie, IDTypeMAID, IDTypeEmailSHA256:
		return t, nil
	case "":
		return "", &RowError{Line: line, Reason: ReasonInvalidIDType, Message: "id_type is empty"}
	}
	return "", &RowError{Line: line, Reason: ReasonInvalidIDType,
		Message: fmt.Sprintf("id_type %q is not cookie, maid or email_sha256", s)}
}

// checkID returns the id normalised for its type.
func checkID(line int, idType, s string) (string, *RowError) {
	id := strings.TrimSpace(s)
	bad := func(format string, args ...any) (string, *RowError) {
		return "", &RowError{Line: line, Reason: ReasonInvalidID, Message: fmt.Sprintf(format, args...)}
	}
	if id == "" {
		return bad("id is empty")
	}
	switch idType {
	case IDTypeCookie:
		if len(id) > maxCookieIDLen {
			return bad("cookie id is %d bytes, longer than %d", len(id), maxCookieIDLen)
		}
		if !utf8.ValidString(id) {
			return bad("cookie id is not valid UTF-8")
		}
		for _, r := range id {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				return bad("cookie id %q has white space or a control character", id)
			}
		}
		return id, nil
	case IDTypeMAID:
		m := strings.ToLower(id)
		if !isUUID(m) {
			return bad("maid %q is not a UUID", id)
		}
		if m == zeroMAID {
			return bad("maid is the all-zero id of a device that limits ad tracking")
		}
		return m, nil
	case IDTypeEmailSHA256:
		if IsSHA256Hex(id) {
			h := strings.ToLower(id)
			if h == emptySHA256 {
				return bad("email_sha256 is the digest of the empty string")
			}
			return h, nil
		}
		// Some partners send the e-mail address in the clear under
		// email_sha256. Hash it here, after the normalisation Meta and
		// Google share (trim, lower-case), so that it joins the hashes
		// partners send; the clear address is not kept.
		if strings.Contains(id, "@") {
			if e, ok := NormaliseEmail(id); ok {
				return HashSHA256(e), nil
			}
			return bad("email_sha256 holds something like an e-mail address that is not valid")
		}
		return bad("email_sha256 is neither 64 hex digits nor an e-mail address")
	}
	return bad("unknown id_type %q", idType)
}

// isUUID reports whether s is a UUID in the 8-4-4-4-12 hex digit form, in
// lower case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// checkAudiences trims the names and drops blanks and repeats; a name a
// store cannot hold rejects the row.
func checkAudiences(line int, names []string) ([]string, *RowError) {
	out := make([]string, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] {
			continue
		}
		if p := kith.TextProblem(n); p != "" {
			return nil, &RowError{Line: line, Reason: ReasonInvalidAudience, Message: fmt.Sprintf("audience name %s %s", kith.QuoteText(n), p)}
		}
		if len(n) > MaxAudienceNameBytes {
			return nil, &RowError{Line: line, Reason: ReasonInvalidAudience, Message: fmt.Sprintf("audience name of %d bytes, longer than %d", len(n), MaxAudienceNameBytes)}
		}
		seen[n] = true
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, &RowError{Line: line, Reason: ReasonNoAudiences, Message: "no audience names"}
	}
	return out, nil
}

// checkExpiry parses expires_at, or gives the default expiry for an empty
// one, and rejects a time that is not after now.
func (ar *AudienceReader) checkExpiry(line int, s string) (time.Time, *RowError) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ar.now.Add(ar.ttl).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
	}
	if err != nil {
		return time.Time{}, &RowError{Line: line, Reason: ReasonInvalidExpiry,
			Message: fmt.Sprintf("expires_at %q is neither RFC 3339 nor YYYY-MM-DD", s)}
	}
	if !t.After(ar.now) {
		return time.Time{}, &RowError{Line: line, Reason: ReasonExpired,
			Message: fmt.Sprintf("expires_at %s is not after %s", t.UTC().Format(time.RFC3339), ar.now.UTC().Format(time.RFC3339))}
	}
	return t.UTC(), nil
}
