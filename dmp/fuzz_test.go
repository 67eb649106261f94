package dmp

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzNormalisePhone checks that any input either fails or gives E.164
// digits, the same for both platforms but for Google's leading '+'.
func FuzzNormalisePhone(f *testing.F) {
	for _, s := range []string{"+31 6 12345678", "06-12345678", "(650) 555-1234", "1-800-FLOWERS", "+", "00", "0", "+0", "ext. 1", "\x00"} {
		f.Add(s, "NL")
		f.Add(s, "US")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, s, region string) {
		g, gok := NormalisePhone(s, region, PlatformGoogle)
		m, mok := NormalisePhone(s, region, PlatformMeta)
		if gok != mok {
			t.Fatalf("NormalisePhone(%q, %q): google ok %v, meta ok %v", s, region, gok, mok)
		}
		if !gok {
			return
		}
		if g != "+"+m {
			t.Fatalf("NormalisePhone(%q, %q): google %q, meta %q", s, region, g, m)
		}
		if len(m) < 2 || len(m) > 15 || m[0] == '0' || strings.Trim(m, "0123456789") != "" {
			t.Fatalf("NormalisePhone(%q, %q) = %q, not E.164 digits", s, region, m)
		}
	})
}

// FuzzAudienceReader checks that the reader ends on any input, never
// panics, and gives records and row errors with sane lines and fields.
func FuzzAudienceReader(f *testing.F) {
	f.Add("csv", "id_type,id,audiences,expires_at\ncookie,c1,a|b,\nmaid,x,y,\n")
	f.Add("csv", "id_type,id,audiences\n\"cookie\",\"c\nd\",a\n")
	f.Add("jsonl", `{"id_type":"cookie","id":"c1","audiences":["a"]}`+"\n{\n")
	f.Add("jsonl", `{"id_type":"email_sha256","id":"a@b.co","audiences":"x|y","expires_at":"2030-01-01"}`)
	f.Fuzz(func(t *testing.T, format, in string) {
		if format != FormatCSV {
			format = FormatJSONL
		}
		ar := NewAudienceReader(strings.NewReader(in), format, now, 0)
		maxLines := strings.Count(in, "\n") + 1
		for i := 0; i <= len(in)+1; i++ {
			rec, err := ar.Next()
			if err == io.EOF {
				return
			}
			var re *RowError
			if errors.As(err, &re) {
				if re.Line < 1 || re.Line > maxLines || re.Reason == "" {
					t.Fatalf("bad row error %+v for %q", re, in)
				}
				continue
			}
			if err != nil {
				return // a fatal header error
			}
			if rec.Line < 1 || rec.Line > maxLines || rec.ID == "" || len(rec.Audiences) == 0 || !rec.ExpiresAt.After(now) {
				t.Fatalf("bad record %+v for %q", rec, in)
			}
		}
		t.Fatalf("reader did not end on %q", in)
	})
}
