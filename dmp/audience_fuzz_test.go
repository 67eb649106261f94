package dmp

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kithcdp/kith"
)

// fuzzNow is the reader's now in the fuzz targets.
var fuzzNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// readOne reads the single row of an audience file: its record, or its
// row error. fatal is any other error.
func readOne(t *testing.T, in []byte, format string) (rec AudienceRecord, rowErr *RowError, fatal error) {
	t.Helper()
	ar := NewAudienceReader(bytes.NewReader(in), format, fuzzNow, 0)
	rec, err := ar.Next()
	if err == nil {
		if _, err := ar.Next(); err != io.EOF {
			t.Fatalf("%s %q: a second row: %v", format, in, err)
		}
		return rec, nil, nil
	}
	if errors.As(err, &rowErr) {
		return AudienceRecord{}, rowErr, nil
	}
	return AudienceRecord{}, nil, err
}

// checkRecord asserts what an accepted record promises: a known id type,
// the id in its normalised form, trimmed, unique audience names that a
// store can hold, an expiry in UTC after now.
func checkRecord(t *testing.T, in []byte, rec AudienceRecord) {
	t.Helper()
	bad := func(what string) {
		t.Helper()
		t.Fatalf("%q: record %+v: %s", in, rec, what)
	}
	switch rec.IDType {
	case IDTypeCookie:
		if len(rec.ID) == 0 || len(rec.ID) > maxCookieIDLen || !utf8.ValidString(rec.ID) {
			bad("cookie id of a bad length or not UTF-8")
		}
		for _, r := range rec.ID {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				bad("cookie id with space or a control character")
			}
		}
	case IDTypeMAID:
		if !isUUID(rec.ID) || rec.ID == zeroMAID {
			bad("not a lower-case, non-zero UUID")
		}
	case IDTypeEmailSHA256:
		if !IsSHA256Hex(rec.ID) || rec.ID != strings.ToLower(rec.ID) || rec.ID == emptySHA256 {
			bad("not a lower-case SHA-256 digest of something")
		}
	default:
		bad("unknown id type")
	}
	if len(rec.Audiences) == 0 {
		bad("no audiences")
	}
	seen := map[string]bool{}
	for _, a := range rec.Audiences {
		if a == "" || a != strings.TrimSpace(a) || seen[a] {
			bad("audience names not trimmed, empty or repeated")
		}
		if kith.TextProblem(a) != "" || len(a) > MaxAudienceNameBytes {
			bad("an audience name a store cannot hold")
		}
		seen[a] = true
	}
	if rec.ExpiresAt.Location() != time.UTC || !rec.ExpiresAt.After(fuzzNow) {
		bad("expiry not in UTC or not after now")
	}
}

// FuzzAudienceFormatsAgree writes one row as CSV and as JSON Lines and
// checks that both readers agree: the same record (but for its line), or
// a row error with the same reason on each side; and that a record keeps
// the promises of AudienceRecord.
func FuzzAudienceFormatsAgree(f *testing.F) {
	for _, s := range [][4]string{
		{"cookie", "c-1", "a|b| a |", ""},
		{" MAID ", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "x", "2026-02-01"},
		{"maid", "00000000-0000-0000-0000-000000000000", "x", ""},
		{"email_sha256", " Ada@Example.com ", "vip", "2026-01-15T12:00:01+01:00"},
		{"email_sha256", strings.Repeat("A", 64), "vip", "2030-01-01T00:00:00Z"},
		{"email_sha256", emptySHA256, "x", ""},
		{"cookie", "has space", "x", ""},
		{"cookie", "c", "|||", ""},
		{"cookie", "c", "x", "yesterday"},
		{"cookie", "c", "x\x00y", ""},
		{"sms", "c", "x", ""},
		{"", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, idType, id, audiences, expires string) {
		for _, s := range []string{idType, id, audiences, expires} {
			// JSON would carry invalid UTF-8 as U+FFFD, and CSV reads a
			// quoted \r\n as \n: the two files would not say the same.
			if !utf8.ValidString(s) || strings.ContainsRune(s, '\r') {
				return
			}
		}
		var c bytes.Buffer
		w := csv.NewWriter(&c)
		_ = w.Write([]string{"id_type", "id", "audiences", "expires_at"})
		_ = w.Write([]string{idType, id, audiences, expires})
		w.Flush()
		j, _ := json.Marshal(map[string]string{"id_type": idType, "id": id, "audiences": audiences, "expires_at": expires})

		cr, cerr, cfatal := readOne(t, c.Bytes(), FormatCSV)
		jr, jerr, jfatal := readOne(t, j, FormatJSONL)
		if cfatal != nil || jfatal != nil {
			t.Fatalf("row %q: fatal errors %v / %v", []string{idType, id, audiences, expires}, cfatal, jfatal)
		}
		switch {
		case cerr != nil || jerr != nil:
			if cerr == nil || jerr == nil || cerr.Reason != jerr.Reason {
				t.Fatalf("row %q: CSV gives %+v %v, JSON Lines %+v %v", []string{idType, id, audiences, expires}, cr, cerr, jr, jerr)
			}
			if cerr.Line != 2 || jerr.Line != 1 || cerr.Message == "" {
				t.Fatalf("row %q: row errors %+v / %+v", []string{idType, id, audiences, expires}, cerr, jerr)
			}
		default:
			if cr.Line != 2 || jr.Line != 1 {
				t.Fatalf("row %q: lines %d / %d", []string{idType, id, audiences, expires}, cr.Line, jr.Line)
			}
			cr.Line, jr.Line = 0, 0
			if !reflect.DeepEqual(cr, jr) {
				t.Fatalf("row %q: CSV gives %+v, JSON Lines %+v", []string{idType, id, audiences, expires}, cr, jr)
			}
			checkRecord(t, c.Bytes(), cr)
		}
	})
}

// FuzzAudienceRecords reads any input in either format and checks every
// record it gives against the promises of AudienceRecord (FuzzAudienceReader
// checks lines and termination).
func FuzzAudienceRecords(f *testing.F) {
	f.Add(true, []byte("id_type,id,audiences,expires_at\ncookie,c1,a|b,\nmaid,6D92078A-8246-4BA4-AE5B-76104861E7DC,y,2026-02-01\nemail_sha256, A@B.co ,x,\n"))
	f.Add(false, []byte(`{"id_type":"cookie","id":"c1","audiences":["a"," a ","b"]}`+"\n"+`{"id_type":"email_sha256","id":"a@b.co","audiences":"x|y","expires_at":"2030-01-01"}`))
	f.Add(false, []byte("\xef\xbb\xbf{\"id_type\":\"cookie\",\"id\":\"c\",\"audiences\":\"a\x00b\"}"))
	f.Add(true, []byte("\xef\xbb\xbfID_TYPE , Id,AUDIENCES\ncookie,c,\"a\nb\"\n"))
	f.Fuzz(func(t *testing.T, isCSV bool, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		format := FormatJSONL
		if isCSV {
			format = FormatCSV
		}
		ar := NewAudienceReader(bytes.NewReader(in), format, fuzzNow, 0)
		for i := 0; i <= len(in)+1; i++ {
			rec, err := ar.Next()
			if err == io.EOF {
				return
			}
			var re *RowError
			if errors.As(err, &re) {
				if !reasonKnown(re.Reason) {
					t.Fatalf("%q: row error with reason %q", in, re.Reason)
				}
				continue
			}
			if err != nil {
				if format == FormatJSONL {
					t.Fatalf("%q: a JSON Lines file cannot fail as a whole: %v", in, err)
				}
				if !errors.Is(err, ErrBadHeader) {
					t.Fatalf("%q: fatal error %v is not about the header", in, err)
				}
				return
			}
			checkRecord(t, in, rec)
		}
		t.Fatalf("%q: the reader did not end", in)
	})
}

func reasonKnown(r string) bool {
	switch r {
	case ReasonInvalidIDType, ReasonInvalidID, ReasonNoAudiences, ReasonInvalidExpiry, ReasonExpired, ReasonMalformedRow, ReasonInvalidAudience:
		return true
	}
	return false
}

// FuzzHashEmail checks e-mail normalisation and hashing: normalising is
// idempotent, a normalised address hashes to 64 lower-case hex digits for
// either platform, a digest passes through (lower-cased), and Google's
// form only differs by dots in a Gmail local part.
func FuzzHashEmail(f *testing.F) {
	for _, s := range []string{" Ada.Lovelace@Example.COM ", "a.b@gmail.com", "...@googlemail.com", strings.Repeat("F", 64), "a@b", "a@@b.c", "İ@x.tr", "\xff@a.bc", "a b@c.de", "x@ünicode.de", "x@-a.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := NormaliseEmail(s)
		if ok {
			if again, ok2 := NormaliseEmail(e); !ok2 || again != e {
				t.Fatalf("NormaliseEmail(%q) = %q, which normalises to %q, %v", s, e, again, ok2)
			}
			if p := strings.TrimSpace(e); p != e || strings.Count(e, "@") != 1 {
				t.Fatalf("NormaliseEmail(%q) = %q", s, e)
			}
		} else if e != "" {
			t.Fatalf("NormaliseEmail(%q) = %q with false", s, e)
		}
		for _, p := range []Platform{PlatformMeta, PlatformGoogle} {
			h, hok := HashEmail(s, p)
			if t2 := strings.TrimSpace(s); IsSHA256Hex(t2) {
				if !hok || h != strings.ToLower(t2) {
					t.Fatalf("HashEmail(%q, %v) = %q, %v; want the digest passed through", s, p, h, hok)
				}
				continue
			}
			ge, gok := NormaliseEmailFor(s, p)
			if hok != gok || (hok && (h != HashSHA256(ge) || !IsSHA256Hex(h) || h != strings.ToLower(h))) {
				t.Fatalf("HashEmail(%q, %v) = %q, %v; normalised %q, %v", s, p, h, hok, ge, gok)
			}
			if gok && p == PlatformMeta && ge != e {
				t.Fatalf("NormaliseEmailFor(%q, meta) = %q, NormaliseEmail %q", s, ge, e)
			}
			if gok && p == PlatformGoogle && strings.ReplaceAll(ge, ".", "") != strings.ReplaceAll(e, ".", "") {
				t.Fatalf("NormaliseEmailFor(%q, google) = %q, NormaliseEmail %q", s, ge, e)
			}
		}
	})
}
