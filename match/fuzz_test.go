package match

import (
	"math"
	"testing"
	"unicode/utf8"
)

// FuzzCompare checks the string comparators on any pair of trait values:
// Normalise is idempotent; Jaro–Winkler is in [0, 1], 1 exactly for equal
// strings; the edit distances are symmetric, 0 exactly for equal strings,
// at most the longer length, and Damerau never above Levenshtein; the
// banded (bounded) distances equal the full ones cut at k+1; the pruning
// bounds hold (an upper bound on Jaro–Winkler, a lower bound on the edit
// distances); and a comparison gives a pair the same level with pruning
// as the plain definition of its levels does.
func FuzzCompare(f *testing.F) {
	for _, s := range [][2]string{
		{"martha", "marhta"}, {"dwayne", "duane"}, {"dixon", "dicksonx"}, {"", "a"}, {"abc", "abc"},
		{"Zoë  Müller", "zoe muller"}, {"19851210", "19851012"}, {"1985-12-10", "1985/12/11"},
		{"ab", "ba"}, {"ca", "abc"}, {"\xff\xfe", "\ufffd"}, {"ÅSTRÖM", "åström"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"},
		{"12.5", "1.25e1"}, {"-0", "0"},
	} {
		f.Add(s[0], s[1], int8(2), int8(85))
	}
	f.Add("same", "same", int8(-3), int8(120))
	f.Fuzz(func(t *testing.T, a, b string, k8, jw8 int8) {
		if len(a) > 300 || len(b) > 300 {
			return // trait values are short; the full distances are quadratic
		}
		for _, s := range []string{a, b} {
			n := Normalise(s)
			if Normalise(n) != n {
				t.Fatalf("Normalise(%q) = %q, which normalises to %q", s, n, Normalise(n))
			}
			if sx := Soundex(s); sx != "" && (len(sx) != 4 || sx[0] < 'a' || sx[0] > 'z' || sx[1] < '0' || sx[1] > '9' || sx[2] < '0' || sx[2] > '9' || sx[3] < '0' || sx[3] > '9') {
				t.Fatalf("Soundex(%q) = %q", s, sx)
			}
		}
		ra, rb := []rune(a), []rune(b)
		equal := runesEqual(ra, rb)
		jw := JaroWinklerSimilarity(a, b)
		if math.IsNaN(jw) || jw < 0 || jw > 1 || equal && len(ra) > 0 && jw != 1 || (len(ra) == 0 || len(rb) == 0) && jw != 0 {
			t.Fatalf("JaroWinklerSimilarity(%q, %q) = %v", a, b, jw)
		}
		lev, dl := LevenshteinDistance(a, b), DamerauLevenshteinDistance(a, b)
		if lev != LevenshteinDistance(b, a) || dl != DamerauLevenshteinDistance(b, a) {
			t.Fatalf("distances of %q, %q are not symmetric", a, b)
		}
		if (lev == 0) != equal || (dl == 0) != equal || dl > lev || lev > max(len(ra), len(rb)) || lev < abs(len(ra)-len(rb)) {
			t.Fatalf("distances of %q, %q: levenshtein %d, damerau %d", a, b, lev, dl)
		}
		k := int(uint8(k8) % 12)
		if got := levenshteinBounded(ra, rb, k); got != min(lev, k+1) {
			t.Fatalf("levenshteinBounded(%q, %q, %d) = %d, levenshtein %d", a, b, k, got, lev)
		}
		if got := osaBounded(ra, rb, k); got != min(dl, k+1) {
			t.Fatalf("osaBounded(%q, %q, %d) = %d, damerau %d", a, b, k, got, dl)
		}
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			return // interned values are normalised, hence valid UTF-8
		}
		na, nb := Normalise(a), Normalise(b)
		if na == "" || nb == "" {
			return // a missing value: the null level, never compared
		}
		va, vb := newValue(na), newValue(nb)
		ia, ib := overlap(&va, &vb)
		if ub := jwUpperBound(&va, &vb, ia, ib); ub < jaroWinkler(va.r, vb.r) {
			t.Fatalf("jwUpperBound(%q, %q) = %v, below %v", na, nb, ub, jaroWinkler(va.r, vb.r))
		}
		if lb := editLowerBound(&va, &vb, ia, ib); lb > levenshtein(va.r, vb.r) || lb > osa(va.r, vb.r) {
			t.Fatalf("editLowerBound(%q, %q) = %d, above a distance", na, nb, lb)
		}
		// Thresholds as a configuration file may give them, out of range
		// included (profilematch.ParseConfig takes any number).
		th, d := float64(jw8)/100, float64(k8)/4
		c := Comparison{Field: "f", Levels: []Level{
			{Kind: Exact}, {Kind: JaroWinkler, Threshold: th}, {Kind: Levenshtein, Threshold: d},
			{Kind: Damerau, Threshold: d}, {Kind: DateDays, Threshold: d}, {Kind: DateTransposed},
			{Kind: DateYears, Threshold: d}, {Kind: NumericAbs, Threshold: d}, {Kind: NumericRel, Threshold: th},
		}}
		for skip := range c.Levels {
			// Each level as the first that can hold: the others before it
			// are left out, so every pruning path is reached.
			cc, err := compileComparison(Comparison{Field: "f", Levels: c.Levels[skip:]}, NewSchema("f"))
			if err != nil {
				t.Fatal(err)
			}
			got := cc.level(&va, &vb, na == nb)
			want := plainLevel(cc.Levels, &va, &vb, na == nb)
			if got != want {
				t.Fatalf("levels %v on %q, %q: level %d, by definition %d", cc.Levels, na, nb, got, want)
			}
		}
	})
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// plainLevel is the level a pair gets by the definition of each level
// kind, computed without any bound or shortcut.
func plainLevel(levels []Level, a, b *value, same bool) uint32 {
	for i, l := range levels {
		ok := false
		switch l.Kind {
		case Exact:
			ok = same
		case JaroWinkler:
			ok = jaroWinkler(a.r, b.r) >= l.Threshold
		case Levenshtein:
			ok = float64(levenshtein(a.r, b.r)) <= l.Threshold
		case Damerau:
			ok = float64(osa(a.r, b.r)) <= l.Threshold
		case DateDays:
			ok = a.date && b.date && math.Abs(float64(a.day-b.day)) <= l.Threshold
		case DateTransposed:
			ok = a.ymd && b.ymd && a.y == b.y && a.m == b.d && a.d == b.m && a.m != a.d
		case DateYears:
			ok = a.ymd && b.ymd && math.Abs(float64(a.y-b.y)) <= l.Threshold
		case NumericAbs:
			ok = a.isNum && b.isNum && math.Abs(a.num-b.num) <= l.Threshold
		case NumericRel:
			ok = a.isNum && b.isNum && math.Abs(a.num-b.num) <= l.Threshold*math.Max(math.Abs(a.num), math.Abs(b.num))
		}
		if ok {
			return uint32(i + 1)
		}
	}
	return uint32(len(levels) + 1)
}
