package match

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hbollon/go-edlib"
)

func TestNormalise(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{"smith", "smith"},
		{"Smith", "smith"},
		{"  O'Brien  ", "o'brien"},
		{"van  der\tBerg", "van der berg"},
		{"MÜLLER", "müller"},
		{"elk i", "elk i"},
		{"0420", "0420"},
		{"trailing ", "trailing"},
	} {
		if got := Normalise(tc.in); got != tc.want {
			t.Errorf("Normalise(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSoundex(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"robert", "r163"},
		{"Rupert", "r163"},
		{"ashcraft", "a261"},
		{"tymczak", "t522"},
		{"pfister", "p236"},
		{"lee", "l000"},
		{"o'hara", "o600"},
		{"", ""},
		{"123", ""},
	} {
		if got := Soundex(tc.in); got != tc.want {
			t.Errorf("Soundex(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStringMetrics(t *testing.T) {
	for _, tc := range []struct {
		a, b     string
		jw       float64
		lev, osa int
	}{
		{"martha", "marhta", 0.9611, 2, 1},
		{"dwayne", "duane", 0.84, 2, 2},
		{"dixon", "dicksonx", 0.8133, 4, 4},
		{"smith", "smith", 1, 0, 0},
		{"", "smith", 0, 5, 5},
		{"", "", 0, 0, 0},
		{"a", "b", 0, 1, 1},
		{"ca", "abc", 0, 3, 3},
		{"jürgen", "jurgen", 0.9, 1, 1},
	} {
		if got := JaroWinklerSimilarity(tc.a, tc.b); math.Abs(got-tc.jw) > 5e-4 {
			t.Errorf("JaroWinklerSimilarity(%q, %q) = %.4f, want %.4f", tc.a, tc.b, got, tc.jw)
		}
		if got := LevenshteinDistance(tc.a, tc.b); got != tc.lev {
			t.Errorf("LevenshteinDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.lev)
		}
		if got := DamerauLevenshteinDistance(tc.a, tc.b); got != tc.osa {
			t.Errorf("DamerauLevenshteinDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.osa)
		}
	}
}

// randomWord draws a short word from a small alphabet so that random pairs
// are often similar.
func randomWord(r *rand.Rand) string {
	const alpha = "abcdeé"
	runes := []rune(alpha)
	n := r.IntN(9)
	out := make([]rune, n)
	for i := range out {
		out[i] = runes[r.IntN(len(runes))]
	}
	return string(out)
}

// TestStringMetricsAgainstEdlib checks the allocation-free metrics, their
// bounded variants and the cheap bounds against go-edlib on random pairs.
func TestStringMetricsAgainstEdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	long := string(make([]rune, 70)) // the >64-rune paths
	for i := 0; i < 5000; i++ {
		a, b := randomWord(r), randomWord(r)
		if i%500 == 0 {
			a, b = long+a, long+b
		}
		ra, rb := []rune(a), []rune(b)
		if got, want := jaroWinkler(ra, rb), float64(edlib.JaroWinklerSimilarity(a, b)); math.Abs(got-want) > 1e-5 {
			t.Fatalf("jaroWinkler(%q, %q) = %v, edlib %v", a, b, got, want)
		}
		lev := edlib.LevenshteinDistance(a, b)
		if got := levenshtein(ra, rb); got != lev {
			t.Fatalf("levenshtein(%q, %q) = %d, edlib %d", a, b, got, lev)
		}
		dl := edlib.OSADamerauLevenshteinDistance(a, b)
		if got := osa(ra, rb); got != dl {
			t.Fatalf("osa(%q, %q) = %d, edlib %d", a, b, got, dl)
		}
		for k := 0; k <= 3; k++ {
			if got := levenshteinBounded(ra, rb, k); got != min(lev, k+1) {
				t.Fatalf("levenshteinBounded(%q, %q, %d) = %d, want %d", a, b, k, got, min(lev, k+1))
			}
			if got := osaBounded(ra, rb, k); got != min(dl, k+1) {
				t.Fatalf("osaBounded(%q, %q, %d) = %d, want %d", a, b, k, got, min(dl, k+1))
			}
		}
		va, vb := newValue(a), newValue(b)
		ia, ib := overlap(&va, &vb)
		if ub := jwUpperBound(&va, &vb, ia, ib); ub+1e-12 < jaroWinkler(ra, rb) {
			t.Fatalf("jwUpperBound(%q, %q) = %v below %v", a, b, ub, jaroWinkler(ra, rb))
		}
		if lb := editLowerBound(&va, &vb, ia, ib); lb > dl {
			t.Fatalf("editLowerBound(%q, %q) = %d above %d", a, b, lb, dl)
		}
	}
}

// levelLabel compares two raw values under c and returns the level label.
func levelLabel(t *testing.T, c Comparison, a, b string) string {
	t.Helper()
	cc, err := compileComparison(c, NewSchema(c.Field))
	if err != nil {
		t.Fatal(err)
	}
	a, b = Normalise(a), Normalise(b)
	if a == "" || b == "" {
		return cc.levelLabel(0)
	}
	va, vb := newValue(a), newValue(b)
	return cc.levelLabel(int(cc.level(&va, &vb, a == b)))
}

func TestComparisonLevels(t *testing.T) {
	name := NameComparison("name")
	date := DateComparison("dob")
	num := NumericComparison("amount", 1, 10)
	rel := Comparison{Field: "amount", Levels: []Level{{Kind: NumericRel, Threshold: 0.1}}}
	ssn := DamerauAtThresholds("ssn", 1, 2)
	lev := LevenshteinAtThresholds("postcode", 1)
	years := Comparison{Field: "dob", Levels: []Level{{Kind: DateYears, Threshold: 5}, {Label: "custom", Kind: DateDays, Threshold: 3650}}}
	for _, tc := range []struct {
		c    Comparison
		a, b string
		want string
	}{
		{name, "Smith", "smith", "exact"},
		{name, "smith", "smyth", "jaro-winkler >= 0.88"},
		{name, "martha", "marhta", "jaro-winkler >= 0.92"},
		{name, "dixon", "dicksonx", "jaro-winkler >= 0.7"},
		{name, "smith", "jones", "else"},
		{name, "", "jones", "null"},
		{date, "19650113", "1965-01-13", "within 1 days"},
		{date, "19650113", "19650113", "exact"},
		{date, "19650113", "19650114", "within 1 days"},
		{date, "19651231", "19660101", "within 1 days"},
		{date, "19650312", "19651203", "month/day transposed"},
		{date, "19650113", "19850113", "one typo"},
		{date, "19650113", "19650131", "one typo"},
		{date, "19650113", "19651020", "same year"},
		{date, "19650113", "19701020", "else"},
		{date, "19651332", "19651333", "one typo"}, // invalid dates still have digits
		{date, "19650113", "", "null"},
		{years, "19650113", "19690101", "within 5 years"},
		{years, "19650113", "1972-01-01", "custom"},
		{years, "19650113", "19800101", "else"},
		{num, "10", "10", "exact"},
		{num, "10", "10.5", "difference <= 1"},
		{num, "10", "19", "difference <= 10"},
		{num, "10", "30", "else"},
		{num, "10", "ten", "else"},
		{rel, "100", "95", "relative difference <= 0.1"},
		{rel, "100", "85", "else"},
		{ssn, "1234567", "1234576", "damerau-levenshtein <= 1"},
		{ssn, "1234567", "1243576", "damerau-levenshtein <= 2"},
		{ssn, "1234567", "7654321", "else"},
		{lev, "2602", "2603", "levenshtein <= 1"},
		{lev, "2602", "6202", "else"},
	} {
		if got := levelLabel(t, tc.c, tc.a, tc.b); got != tc.want {
			t.Errorf("%s(%q, %q) = %q, want %q", tc.c.Field, tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCompileComparisonErrors(t *testing.T) {
	s := NewSchema("name")
	for _, c := range []Comparison{
		{Field: "nope", Levels: []Level{{Kind: Exact}}},
		{Field: "name"},
		{Field: "name", Levels: []Level{{Kind: 99}}},
		{Field: "name", Levels: []Level{{Kind: JaroWinkler, Threshold: 0.9}}, TF: true},
	} {
		if _, err := compileComparison(c, s); err == nil {
			t.Errorf("compileComparison(%+v) succeeded", c)
		}
	}
}
