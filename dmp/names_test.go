package dmp

import (
	"errors"
	"strings"
	"testing"
)

// An audience name a store cannot hold (PostgreSQL refuses a NUL or
// invalid UTF-8, and one such row failed the whole import) or a very long
// one rejects its row, with its line, in both formats.
func TestAudienceReaderNames(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		format     string
		wantReason string
	}{
		{"plain", "id_type,id,audiences\ncookie,c1,coffee|tea\n", FormatCSV, ""},
		{"NUL in CSV", "id_type,id,audiences\ncookie,c1,cof\x00fee\n", FormatCSV, ReasonInvalidAudience},
		{"invalid UTF-8 in CSV", "id_type,id,audiences\ncookie,c1,tea|\xff\n", FormatCSV, ReasonInvalidAudience},
		{"too long", "id_type,id,audiences\ncookie,c1," + strings.Repeat("a", MaxAudienceNameBytes+1) + "\n", FormatCSV, ReasonInvalidAudience},
		{"longest", "id_type,id,audiences\ncookie,c1," + strings.Repeat("a", MaxAudienceNameBytes) + "\n", FormatCSV, ""},
		{"NUL in JSON Lines", `{"id_type":"cookie","id":"c1","audiences":["cof\u0000fee"]}` + "\n", FormatJSONL, ReasonInvalidAudience},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := NewAudienceReader(strings.NewReader(tc.in), tc.format, now, 0).Next()
			if tc.wantReason == "" {
				if err != nil || len(rec.Audiences) == 0 {
					t.Fatalf("%+v %v", rec, err)
				}
				return
			}
			var re *RowError
			if !errors.As(err, &re) || re.Reason != tc.wantReason || re.Line == 0 {
				t.Fatalf("err = %v, want %s with its line", err, tc.wantReason)
			}
		})
	}
}
