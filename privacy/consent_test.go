package privacy

import (
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestConsentEnforcement(t *testing.T) {
	at := func(d int) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	c := func(profile, cat string, granted bool, day int, seq int64) kith.Consent {
		return kith.Consent{ProfileID: profile, Category: cat, Granted: granted, At: at(day), Seq: seq}
	}
	cases := []struct {
		name    string
		history []kith.Consent
		need    []string
		want    bool
	}{
		{"nothing decided", nil, []string{"Advertising"}, false},
		{"granted", []kith.Consent{c("p1", "Advertising", true, 1, 1)}, []string{"Advertising"}, true},
		{"withdrawn later", []kith.Consent{c("p1", "Advertising", true, 1, 1), c("p1", "Advertising", false, 2, 2)}, []string{"Advertising"}, false},
		{"granted again", []kith.Consent{c("p1", "Advertising", false, 1, 1), c("p1", "Advertising", true, 3, 5)}, []string{"Advertising"}, true},
		// On a merged profile the most recent decision per category wins,
		// whichever member it came from.
		{"merged: the other member decided later", []kith.Consent{c("p1", "Advertising", true, 1, 9), c("p2", "Advertising", false, 2, 3)}, []string{"Advertising"}, false},
		{"same time: the later log position", []kith.Consent{c("p1", "Advertising", false, 1, 4), c("p2", "Advertising", true, 1, 7)}, []string{"Advertising"}, true},
		{"every category needed", []kith.Consent{c("p1", "Advertising", true, 1, 1), c("p1", "Marketing", false, 1, 1)}, []string{"Advertising", "Marketing"}, false},
		{"a missing category is not granted", []kith.Consent{c("p1", "Advertising", true, 1, 1)}, []string{"Advertising", "Analytics"}, false},
		{"no category needed", nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Allowed(Current(tc.history), tc.need...); got != tc.want {
				t.Fatalf("Allowed = %v, want %v", got, tc.want)
			}
		})
	}
}
