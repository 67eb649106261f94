package main

import (
	"io"
	"strings"
	"testing"
)

// A KITH_* value that does not parse refuses to start, naming the
// variable, instead of silently becoming the default — unless the flag it
// is the default of is given.
func TestServeConfigBadEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		args       []string
		want       string // "" = starts
	}{
		{"KITH_MAX_BACKLOG", "2m", nil, `KITH_MAX_BACKLOG="2m" is not a whole number`},
		{"KITH_INDEX_BATCH", "lots", nil, `KITH_INDEX_BATCH="lots" is not a whole number`},
		{"KITH_DEDUP_WINDOW", "7 days", nil, `KITH_DEDUP_WINDOW="7 days" is not a duration`},
		{"KITH_RETENTION_EVERY", "1", nil, `KITH_RETENTION_EVERY="1" is not a duration`},
		{"KITH_MAX_BACKLOG", "2m", []string{"--max-backlog", "5"}, ""},
		{"KITH_MAX_BACKLOG", "2000", nil, ""},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			_, err := ParseServeFlags(tc.args, io.Discard)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
