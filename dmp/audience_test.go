package dmp

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// now is the time the fixtures are read at.
var now = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// defaultExpiry is now plus DefaultTTL.
var defaultExpiry = time.Date(2026, 4, 15, 12, 0, 0, 0, time.UTC)

// readAll drains ar, collecting records and row errors; it fails the test
// on any other error.
func readAll(t *testing.T, ar *AudienceReader) ([]AudienceRecord, []*RowError) {
	t.Helper()
	var recs []AudienceRecord
	var errs []*RowError
	for range 10000 {
		rec, err := ar.Next()
		if err == io.EOF {
			// io.EOF again after the end.
			if _, err := ar.Next(); err != io.EOF {
				t.Errorf("Next after EOF = %v, want io.EOF", err)
			}
			return recs, errs
		}
		var re *RowError
		if errors.As(err, &re) {
			errs = append(errs, re)
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		recs = append(recs, rec)
	}
	t.Fatal("reader did not end")
	return nil, nil
}

func openFixture(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type rowErr struct {
	line   int
	reason string
}

func TestAudienceReaderFixtures(t *testing.T) {
	tests := []struct {
		file, format string
		records      []AudienceRecord
		errors       []rowErr
		reasons      map[string]int
	}{
		{
			file:   "audiences.csv",
			format: FormatCSV,
			records: []AudienceRecord{
				{Line: 2, IDType: IDTypeCookie, ID: "ck_0001", Audiences: []string{"sports", "travel"}, ExpiresAt: defaultExpiry},
				{Line: 3, IDType: IDTypeMAID, ID: "6d92078a-8246-4ba4-ae5b-76104861e7dc", Audiences: []string{"auto"},
					ExpiresAt: time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)},
				{Line: 4, IDType: IDTypeEmailSHA256, ID: "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
					Audiences: []string{"finance"}, ExpiresAt: time.Date(2026, 3, 1, 7, 30, 0, 0, time.UTC)},
				// A clear e-mail under email_sha256 is normalised and hashed.
				{Line: 5, IDType: IDTypeEmailSHA256, ID: "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
					Audiences: []string{"finance", "luxury"}, ExpiresAt: defaultExpiry},
				// A quoted field across lines 15 and 16.
				{Line: 15, IDType: IDTypeCookie, ID: "ck_0006", Audiences: []string{"news", "weather"}, ExpiresAt: defaultExpiry},
				{Line: 19, IDType: IDTypeCookie, ID: "ck_0009", Audiences: []string{"sports", "Sports"}, ExpiresAt: defaultExpiry},
			},
			errors: []rowErr{
				{6, ReasonInvalidIDType},
				{7, ReasonInvalidID},
				{8, ReasonInvalidID},
				{9, ReasonInvalidID},
				{10, ReasonNoAudiences},
				{11, ReasonInvalidExpiry},
				{12, ReasonExpired},
				{13, ReasonMalformedRow},
				{17, ReasonMalformedRow},
				{18, ReasonExpired}, // expires exactly now
			},
			reasons: map[string]int{
				ReasonInvalidIDType: 1, ReasonInvalidID: 3, ReasonNoAudiences: 1,
				ReasonInvalidExpiry: 1, ReasonExpired: 2, ReasonMalformedRow: 2,
			},
		},
		{
			file:   "audiences.jsonl",
			format: FormatJSONL,
			records: []AudienceRecord{
				{Line: 1, IDType: IDTypeCookie, ID: "ck_1001", Audiences: []string{"sports", "travel"}, ExpiresAt: defaultExpiry},
				{Line: 2, IDType: IDTypeMAID, ID: "6d92078a-8246-4ba4-ae5b-76104861e7dc", Audiences: []string{"auto"},
					ExpiresAt: time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)},
				// printf '%s' jane.doe@example.com | sha256sum
				{Line: 4, IDType: IDTypeEmailSHA256, ID: "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d",
					Audiences: []string{"finance"}, ExpiresAt: defaultExpiry},
				{Line: 13, IDType: IDTypeCookie, ID: "ck_1008", Audiences: []string{"news"}, ExpiresAt: defaultExpiry},
			},
			errors: []rowErr{
				{5, ReasonNoAudiences},
				{6, ReasonInvalidIDType},
				{7, ReasonInvalidID},
				{8, ReasonInvalidExpiry},
				{9, ReasonExpired},
				{10, ReasonMalformedRow},
				{11, ReasonMalformedRow},
				{12, ReasonMalformedRow},
				{14, ReasonInvalidID}, // digest of the empty string
			},
			reasons: map[string]int{
				ReasonInvalidIDType: 1, ReasonInvalidID: 2, ReasonNoAudiences: 1,
				ReasonInvalidExpiry: 1, ReasonExpired: 1, ReasonMalformedRow: 3,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			ar := NewAudienceReader(openFixture(t, tc.file), tc.format, now, DefaultTTL)
			recs, errs := readAll(t, ar)

			if len(recs) != len(tc.records) {
				t.Errorf("got %d records, want %d", len(recs), len(tc.records))
			}
			for i := range min(len(recs), len(tc.records)) {
				if !reflect.DeepEqual(recs[i], tc.records[i]) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, recs[i], tc.records[i])
				}
			}

			if len(errs) != len(tc.errors) {
				t.Errorf("got %d row errors, want %d", len(errs), len(tc.errors))
			}
			for i := range min(len(errs), len(tc.errors)) {
				if errs[i].Line != tc.errors[i].line || errs[i].Reason != tc.errors[i].reason {
					t.Errorf("row error %d = line %d %s (%s), want line %d %s",
						i, errs[i].Line, errs[i].Reason, errs[i].Message, tc.errors[i].line, tc.errors[i].reason)
				}
				if errs[i].Message == "" {
					t.Errorf("row error %d has no message", i)
				}
			}

			counts := map[string]int{}
			for _, e := range errs {
				counts[e.Reason]++
			}
			if !reflect.DeepEqual(counts, tc.reasons) {
				t.Errorf("reason counts = %v, want %v", counts, tc.reasons)
			}
		})
	}
}

func TestAudienceReaderExpiry(t *testing.T) {
	tests := []struct {
		name    string
		expires string
		ttl     time.Duration
		want    time.Time
		reason  string
	}{
		{"empty uses default TTL", "", 0, now.Add(90 * 24 * time.Hour), ""},
		{"blank uses default TTL", "   ", DefaultTTL, defaultExpiry, ""},
		{"custom TTL", "", 48 * time.Hour, time.Date(2026, 1, 17, 12, 0, 0, 0, time.UTC), ""},
		{"negative TTL means default", "", -time.Hour, defaultExpiry, ""},
		{"RFC 3339 UTC", "2026-02-01T00:00:00Z", 0, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ""},
		{"RFC 3339 offset", "2026-02-01T02:00:00+02:00", 0, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ""},
		{"RFC 3339 fraction", "2026-02-01T00:00:00.5Z", 0, time.Date(2026, 2, 1, 0, 0, 0, 5e8, time.UTC), ""},
		{"date", "2026-02-01", 0, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ""},
		{"one second left", "2026-01-15T12:00:01Z", 0, time.Date(2026, 1, 15, 12, 0, 1, 0, time.UTC), ""},
		{"exactly now", "2026-01-15T12:00:00Z", 0, time.Time{}, ReasonExpired},
		{"today's date is past", "2026-01-15", 0, time.Time{}, ReasonExpired},
		{"past", "2025-06-01", 0, time.Time{}, ReasonExpired},
		{"not a date", "soon", 0, time.Time{}, ReasonInvalidExpiry},
		{"bad month", "2026-13-01", 0, time.Time{}, ReasonInvalidExpiry},
		{"epoch seconds", "1767225600", 0, time.Time{}, ReasonInvalidExpiry},
		{"US date", "02/01/2026", 0, time.Time{}, ReasonInvalidExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{FormatCSV, FormatJSONL} {
				var in string
				if format == FormatCSV {
					in = "id_type,id,audiences,expires_at\ncookie,c1,a," + tc.expires + "\n"
				} else {
					in = `{"id_type":"cookie","id":"c1","audiences":"a","expires_at":"` + tc.expires + "\"}\n"
				}
				ar := NewAudienceReader(strings.NewReader(in), format, now, tc.ttl)
				rec, err := ar.Next()
				if tc.reason != "" {
					var re *RowError
					if !errors.As(err, &re) || re.Reason != tc.reason || re.Line != 2-btoi(format == FormatJSONL) {
						t.Errorf("%s: err = %v, want %s row error", format, err, tc.reason)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", format, err)
				}
				if !rec.ExpiresAt.Equal(tc.want) || rec.ExpiresAt.Location() != time.UTC {
					t.Errorf("%s: ExpiresAt = %v, want %v UTC", format, rec.ExpiresAt, tc.want)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestAudienceReaderIDs(t *testing.T) {
	tests := []struct {
		idType, id string
		wantType   string
		wantID     string
		wantReason string
	}{
		{"cookie", "AbC-123_x", IDTypeCookie, "AbC-123_x", ""},
		{" Cookie ", " ck ", IDTypeCookie, "ck", ""},
		{"cookie", "a b", "", "", ReasonInvalidID},
		{"cookie", strings.Repeat("x", 257), "", "", ReasonInvalidID},
		{"cookie", strings.Repeat("x", 256), IDTypeCookie, strings.Repeat("x", 256), ""},
		{"cookie", "", "", "", ReasonInvalidID},
		{"maid", "6D92078A-8246-4BA4-AE5B-76104861E7DC", IDTypeMAID, "6d92078a-8246-4ba4-ae5b-76104861e7dc", ""},
		{"MAID", "cdda802e-fb9c-47ad-9866-0794d394c912", IDTypeMAID, "cdda802e-fb9c-47ad-9866-0794d394c912", ""},
		{"maid", "6D92078A82464BA4AE5B76104861E7DC", "", "", ReasonInvalidID},
		{"maid", "{6D92078A-8246-4BA4-AE5B-76104861E7DC}", "", "", ReasonInvalidID},
		{"maid", "6D92078A-8246-4BA4-AE5B-76104861E7DG", "", "", ReasonInvalidID},
		{"maid", "00000000-0000-0000-0000-000000000000", "", "", ReasonInvalidID},
		{"email_sha256", "973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B", IDTypeEmailSHA256,
			"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b", ""},
		{"email_sha256", "  TEST@example.com ", IDTypeEmailSHA256,
			"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b", ""},
		// Clear e-mails get the shared normalisation only: gmail dots stay.
		{"email_sha256", "Jane.Doe@gmail.com", IDTypeEmailSHA256,
			"831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982", ""},
		{"email_sha256", "a@b", "", "", ReasonInvalidID},
		{"email_sha256", "d41d8cd98f00b204e9800998ecf8427e", "", "", ReasonInvalidID}, // MD5 length
		{"email_sha256", emptySHA256, "", "", ReasonInvalidID},
		{"email", "test@example.com", "", "", ReasonInvalidIDType},
		{"", "x", "", "", ReasonInvalidIDType},
	}
	for _, tc := range tests {
		in := "id_type,id,audiences\n\"" + tc.idType + "\",\"" + tc.id + "\",a\n"
		rec, err := NewAudienceReader(strings.NewReader(in), FormatCSV, now, 0).Next()
		if tc.wantReason != "" {
			var re *RowError
			if !errors.As(err, &re) || re.Reason != tc.wantReason {
				t.Errorf("(%q, %q): err = %v, want %s", tc.idType, tc.id, err, tc.wantReason)
			}
			continue
		}
		if err != nil {
			t.Errorf("(%q, %q): %v", tc.idType, tc.id, err)
			continue
		}
		if rec.IDType != tc.wantType || rec.ID != tc.wantID {
			t.Errorf("(%q, %q) = (%q, %q), want (%q, %q)", tc.idType, tc.id, rec.IDType, rec.ID, tc.wantType, tc.wantID)
		}
	}
}

func TestAudienceReaderCSVVariants(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lines []int // lines of the records
		errs  []rowErr
	}{
		{"CRLF and BOM", "\ufeffid_type,id,audiences,expires_at\r\ncookie,c1,a,\r\ncookie,c2,b,\r\n", []int{2, 3}, nil},
		{"columns reordered, no expires_at", "audiences,ID_TYPE,id\na|b,cookie,c1\n", []int{2}, nil},
		{"no trailing newline", "id_type,id,audiences\ncookie,c1,a", []int{2}, nil},
		{"blank and space-only lines", "id_type,id,audiences\n\n   \ncookie,c1,a\n", []int{4}, nil},
		{"too many fields", "id_type,id,audiences\ncookie,c1,a,extra\ncookie,c2,b\n", []int{3}, []rowErr{{2, ReasonMalformedRow}}},
		{"unterminated quote swallows the rest", "id_type,id,audiences\ncookie,c1,a\ncookie,\"c2,b\ncookie,c3,c\n", []int{2}, []rowErr{{3, ReasonMalformedRow}}},
		{"header only", "id_type,id,audiences,expires_at\n", nil, nil},
		{"empty file", "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, errs := readAll(t, NewAudienceReader(strings.NewReader(tc.in), "CSV", now, 0))
			var lines []int
			for _, r := range recs {
				lines = append(lines, r.Line)
			}
			if !reflect.DeepEqual(lines, tc.lines) {
				t.Errorf("record lines = %v, want %v", lines, tc.lines)
			}
			var got []rowErr
			for _, e := range errs {
				got = append(got, rowErr{e.Line, e.Reason})
			}
			if !reflect.DeepEqual(got, tc.errs) {
				t.Errorf("row errors = %v, want %v", got, tc.errs)
			}
		})
	}
}

func TestAudienceReaderJSONLVariants(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lines []int
		errs  []rowErr
	}{
		{"CRLF, BOM and no trailing newline",
			"\ufeff{\"id_type\":\"cookie\",\"id\":\"c1\",\"audiences\":\"a\"}\r\n{\"id_type\":\"cookie\",\"id\":\"c2\",\"audiences\":[\"b\"]}",
			[]int{1, 2}, nil},
		{"null line", "null\n", nil, []rowErr{{1, ReasonMalformedRow}}},
		{"id_type not a string", `{"id_type":1,"id":"c1","audiences":"a"}`, nil, []rowErr{{1, ReasonInvalidIDType}}},
		{"id not a string", `{"id_type":"cookie","id":12345,"audiences":"a"}`, nil, []rowErr{{1, ReasonInvalidID}}},
		{"audiences missing", `{"id_type":"cookie","id":"c1"}`, nil, []rowErr{{1, ReasonNoAudiences}}},
		{"audiences null", `{"id_type":"cookie","id":"c1","audiences":null}`, nil, []rowErr{{1, ReasonNoAudiences}}},
		{"audiences a number", `{"id_type":"cookie","id":"c1","audiences":7}`, nil, []rowErr{{1, ReasonMalformedRow}}},
		{"expires_at a number", `{"id_type":"cookie","id":"c1","audiences":"a","expires_at":1767225600}`, nil, []rowErr{{1, ReasonInvalidExpiry}}},
		{"blank lines counted", "\n\n" + `{"id_type":"cookie","id":"c1","audiences":"a"}` + "\n", []int{3}, nil},
		{"empty file", "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, errs := readAll(t, NewAudienceReader(strings.NewReader(tc.in), " jsonl ", now, 0))
			var lines []int
			for _, r := range recs {
				lines = append(lines, r.Line)
			}
			if !reflect.DeepEqual(lines, tc.lines) {
				t.Errorf("record lines = %v, want %v", lines, tc.lines)
			}
			var got []rowErr
			for _, e := range errs {
				got = append(got, rowErr{e.Line, e.Reason})
			}
			if !reflect.DeepEqual(got, tc.errs) {
				t.Errorf("row errors = %v, want %v", got, tc.errs)
			}
		})
	}
}

func TestAudienceReaderFatal(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             error
	}{
		{"unknown format", "xml", "id_type,id,audiences\n", ErrUnknownFormat},
		{"missing column", FormatCSV, "id_type,id,expires_at\ncookie,c1,\n", ErrBadHeader},
		{"unknown column", FormatCSV, "id_type,id,audiences,expiry\ncookie,c1,a,\n", ErrBadHeader},
		{"repeated column", FormatCSV, "id_type,id,audiences,id\ncookie,c1,a,c2\n", ErrBadHeader},
		{"broken header", FormatCSV, "id_type,\"id,audiences\n", ErrBadHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ar := NewAudienceReader(strings.NewReader(tc.in), tc.format, now, 0)
			for range 2 { // the error sticks
				_, err := ar.Next()
				if !errors.Is(err, tc.want) {
					t.Errorf("Next error = %v, want %v", err, tc.want)
				}
				var re *RowError
				if errors.As(err, &re) {
					t.Errorf("fatal error is a RowError: %v", err)
				}
			}
		})
	}

	// A reader failure is returned as is and sticks.
	boom := errors.New("boom")
	for _, format := range []string{FormatCSV, FormatJSONL} {
		ar := NewAudienceReader(iotest.ErrReader(boom), format, now, 0)
		for range 2 {
			if _, err := ar.Next(); !errors.Is(err, boom) {
				t.Errorf("%s: Next error = %v, want %v", format, err, boom)
			}
		}
	}
}

func TestRowErrorMessage(t *testing.T) {
	e := &RowError{Line: 7, Reason: ReasonExpired, Message: "expires_at 2025-01-01T00:00:00Z is not after 2026-01-15T12:00:00Z"}
	want := "dmp: line 7: expired: expires_at 2025-01-01T00:00:00Z is not after 2026-01-15T12:00:00Z"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}
