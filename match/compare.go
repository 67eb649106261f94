package match

import (
	"fmt"
	"math"
	"strconv"
)

// Kind is the predicate of one comparison level.
type Kind uint8

// The level kinds. Each holds for a pair of present values or not; the
// first level of a comparison that holds gives the pair its level.
const (
	// Exact holds when the normalised values are equal.
	Exact Kind = iota + 1
	// JaroWinkler holds when the Jaro–Winkler similarity is at least
	// Threshold.
	JaroWinkler
	// Levenshtein holds when the edit distance is at most Threshold.
	Levenshtein
	// Damerau holds when the optimal string alignment distance (Levenshtein
	// with adjacent transpositions) is at most Threshold.
	Damerau
	// DateDays holds when both values are valid dates at most Threshold days
	// apart.
	DateDays
	// DateTransposed holds when the values are different dates of the same
	// year with month and day swapped (3 December against 12 March).
	DateTransposed
	// DateYears holds when the years of both dates are at most Threshold
	// apart (0: the same year). The day and month need not be valid.
	DateYears
	// NumericAbs holds when both values are numbers at most Threshold apart.
	NumericAbs
	// NumericRel holds when both values are numbers whose difference is at
	// most Threshold times the larger magnitude.
	NumericRel
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Exact:
		return "exact"
	case JaroWinkler:
		return "jaro-winkler"
	case Levenshtein:
		return "levenshtein"
	case Damerau:
		return "damerau-levenshtein"
	case DateDays:
		return "date-days"
	case DateTransposed:
		return "date-transposed"
	case DateYears:
		return "date-years"
	case NumericAbs:
		return "numeric-abs"
	case NumericRel:
		return "numeric-rel"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Level is one agreement level of a comparison.
type Level struct {
	// Label is shown to people; empty means a label derived from Kind and
	// Threshold ("jaro-winkler >= 0.92").
	Label string
	// Kind is the predicate.
	Kind Kind
	// Threshold parameterises the predicate (see the Kind constants).
	Threshold float64
}

// label returns the level's label, deriving one when it has none.
func (l Level) label() string {
	if l.Label != "" {
		return l.Label
	}
	t := strconv.FormatFloat(l.Threshold, 'g', -1, 64)
	switch l.Kind {
	case Exact:
		return "exact"
	case JaroWinkler:
		return "jaro-winkler >= " + t
	case Levenshtein:
		return "levenshtein <= " + t
	case Damerau:
		return "damerau-levenshtein <= " + t
	case DateDays:
		return "within " + t + " days"
	case DateTransposed:
		return "month/day transposed"
	case DateYears:
		if l.Threshold == 0 {
			return "same year"
		}
		return "within " + t + " years"
	case NumericAbs:
		return "difference <= " + t
	case NumericRel:
		return "relative difference <= " + t
	}
	return l.Kind.String()
}

// Labels of the two implicit levels of every comparison.
const (
	NullLabel = "null"
	ElseLabel = "else"
)

// Comparison compares one field of a pair and maps it to a level. Levels
// are tried strongest first; a pair for which none holds gets the implicit
// "else" level, and a pair with a missing value on either side the implicit
// "null" level, which contributes no weight.
type Comparison struct {
	// Name identifies the comparison in models and explanations; empty means
	// Field.
	Name string
	// Field is the schema field compared.
	Field string
	// Levels are the agreement levels, strongest first.
	Levels []Level
	// TF turns on the term-frequency adjustment: on the Exact level, the u
	// probability is replaced by the frequency of the agreed value, so that
	// agreeing on a common value weighs less than on a rare one.
	TF bool
}

// WithTF returns c with the term-frequency adjustment turned on.
func (c Comparison) WithTF() Comparison {
	c.TF = true
	return c
}

// Named returns c under another name, so that one field can be compared in
// two ways.
func (c Comparison) Named(name string) Comparison {
	c.Name = name
	return c
}

// name returns the comparison's name.
func (c Comparison) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Field
}

// ExactMatch compares field for equality only.
func ExactMatch(field string) Comparison {
	return Comparison{Field: field, Levels: []Level{{Kind: Exact}}}
}

// JaroWinklerAtThresholds compares field for equality, then for
// Jaro–Winkler similarity at each threshold (highest first).
func JaroWinklerAtThresholds(field string, thresholds ...float64) Comparison {
	c := ExactMatch(field)
	for _, t := range thresholds {
		c.Levels = append(c.Levels, Level{Kind: JaroWinkler, Threshold: t})
	}
	return c
}

// NameComparison is the comparison Splink suggests for personal names:
// exact, then Jaro–Winkler at 0.92, 0.88 and 0.7.
func NameComparison(field string) Comparison {
	return JaroWinklerAtThresholds(field, 0.92, 0.88, 0.7)
}

// LevenshteinAtThresholds compares field for equality, then for edit
// distance at most each of distances (smallest first).
func LevenshteinAtThresholds(field string, distances ...int) Comparison {
	c := ExactMatch(field)
	for _, d := range distances {
		c.Levels = append(c.Levels, Level{Kind: Levenshtein, Threshold: float64(d)})
	}
	return c
}

// DamerauAtThresholds compares field for equality, then for optimal string
// alignment distance at most each of distances (smallest first); it suits
// identifiers typed by hand, where swapped digits are common.
func DamerauAtThresholds(field string, distances ...int) Comparison {
	c := ExactMatch(field)
	for _, d := range distances {
		c.Levels = append(c.Levels, Level{Kind: Damerau, Threshold: float64(d)})
	}
	return c
}

// DateComparison compares a date field (YYYYMMDD or YYYY-MM-DD): exact,
// within one day, month and day transposed, one typo in the digits, the
// same year, else.
func DateComparison(field string) Comparison {
	return Comparison{Field: field, Levels: []Level{
		{Kind: Exact},
		{Kind: DateDays, Threshold: 1},
		{Kind: DateTransposed},
		{Label: "one typo", Kind: Damerau, Threshold: 1},
		{Kind: DateYears, Threshold: 0},
	}}
}

// NumericComparison compares a numeric field: exact, then an absolute
// difference at most each of differences (smallest first).
func NumericComparison(field string, differences ...float64) Comparison {
	c := ExactMatch(field)
	for _, d := range differences {
		c.Levels = append(c.Levels, Level{Kind: NumericAbs, Threshold: d})
	}
	return c
}

// value is one interned, normalised field value with everything the
// comparators need precomputed.
type value struct {
	s     string
	r     []rune
	mask  uint64 // bit r%64 set for every rune r of s
	y     int32  // year, month and day when s holds eight date digits
	m, d  int8
	ymd   bool  // y, m, d were read (the date may still be invalid)
	day   int32 // days since 1970-01-01 when date
	date  bool  // a valid calendar date
	num   float64
	isNum bool
}

// newValue precomputes a normalised, non-empty value.
func newValue(s string) value {
	v := value{s: s, r: []rune(s)}
	for _, r := range v.r {
		v.mask |= 1 << (uint32(r) & 63)
	}
	if y, m, d, ok := parseYMD(s); ok {
		v.y, v.m, v.d, v.ymd = int32(y), int8(m), int8(d), true
		if m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m) {
			v.date = true
			v.day = int32(daysFromCivil(y, m, d))
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		v.num, v.isNum = f, true
	}
	return v
}

// parseYMD reads YYYYMMDD or YYYY?MM?DD with any one-byte separator.
func parseYMD(s string) (y, m, d int, ok bool) {
	var digits [8]byte
	switch len(s) {
	case 8:
		copy(digits[:], s)
	case 10:
		sep := s[4]
		if s[7] != sep || (sep >= '0' && sep <= '9') {
			return 0, 0, 0, false
		}
		copy(digits[:4], s[:4])
		copy(digits[4:6], s[5:7])
		copy(digits[6:], s[8:])
	default:
		return 0, 0, 0, false
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, 0, 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n / 10000, n / 100 % 100, n % 100, true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// compiledComparison is a Comparison resolved against a schema.
type compiledComparison struct {
	Comparison
	field  int
	radix  uint32 // levels + null + else
	stride uint32 // place value in the pattern number
	// identLevel is the level of two identical values, or 0 when it has to
	// be worked out.
	identLevel uint8
	// tfLevel is the level the TF adjustment applies to (0: none).
	tfLevel uint8
	// minJW is the lowest Jaro–Winkler threshold (pairs that cannot reach
	// it skip the computation); maxLev and maxDL the largest edit distance
	// thresholds (distances beyond are not computed exactly).
	minJW         float64
	maxLev, maxDL int
}

func compileComparison(c Comparison, schema Schema) (compiledComparison, error) {
	f := schema.FieldIndex(c.Field)
	if f < 0 {
		return compiledComparison{}, fmt.Errorf("comparison %q: field %q is not in the schema", c.name(), c.Field)
	}
	if len(c.Levels) == 0 {
		return compiledComparison{}, fmt.Errorf("comparison %q: no levels", c.name())
	}
	if len(c.Levels) > 62 {
		return compiledComparison{}, fmt.Errorf("comparison %q: %d levels, at most 62", c.name(), len(c.Levels))
	}
	cc := compiledComparison{Comparison: c, field: f, radix: uint32(len(c.Levels) + 2)}
	cc.Levels = append([]Level(nil), c.Levels...)
	// Two identical values are at the first level when it holds for them
	// whatever they are: not for a Jaro–Winkler threshold above 1 or a
	// negative edit distance, which nothing reaches.
	switch l := c.Levels[0]; {
	case l.Kind == Exact,
		l.Kind == JaroWinkler && l.Threshold <= 1,
		(l.Kind == Levenshtein || l.Kind == Damerau) && l.Threshold >= 0:
		cc.identLevel = 1
	}
	for i, l := range c.Levels {
		if l.Kind < Exact || l.Kind > NumericRel {
			return compiledComparison{}, fmt.Errorf("comparison %q level %d: unknown kind %d", c.name(), i, l.Kind)
		}
		switch l.Kind {
		case JaroWinkler:
			if cc.minJW == 0 || l.Threshold < cc.minJW {
				cc.minJW = l.Threshold
			}
		case Levenshtein:
			cc.maxLev = max(cc.maxLev, int(math.Floor(l.Threshold)))
		case Damerau:
			cc.maxDL = max(cc.maxDL, int(math.Floor(l.Threshold)))
		}
		if l.Kind == Exact && c.TF && cc.tfLevel == 0 {
			cc.tfLevel = uint8(i + 1)
		}
	}
	if c.TF && cc.tfLevel == 0 {
		return compiledComparison{}, fmt.Errorf("comparison %q: TF adjustment needs an Exact level", c.name())
	}
	return cc, nil
}

// levelLabel returns the label of level l (0 null, len+1 else).
func (c *compiledComparison) levelLabel(l int) string {
	switch {
	case l == 0:
		return NullLabel
	case l > len(c.Levels):
		return ElseLabel
	}
	return c.Levels[l-1].label()
}

// level compares two present values; same reports that they are the same
// interned value (values are interned, so different ids mean different
// strings).
func (c *compiledComparison) level(a, b *value, same bool) uint32 {
	if same && c.identLevel != 0 {
		return uint32(c.identLevel)
	}
	jw, lev, dl := -1.0, -1, -1
	ia := -1
	var ib int
	for i := range c.Levels {
		l := &c.Levels[i]
		ok := false
		switch l.Kind {
		case Exact:
			ok = same
		case JaroWinkler:
			if jw < 0 {
				if ia < 0 {
					ia, ib = overlap(a, b)
				}
				if jwUpperBound(a, b, ia, ib) < c.minJW {
					jw = 0
				} else {
					jw = jaroWinkler(a.r, b.r)
				}
			}
			ok = jw >= l.Threshold
		case Levenshtein:
			if lev < 0 {
				if ia < 0 {
					ia, ib = overlap(a, b)
				}
				if editLowerBound(a, b, ia, ib) > c.maxLev {
					lev = c.maxLev + 1
				} else {
					lev = levenshteinBounded(a.r, b.r, c.maxLev)
				}
			}
			ok = float64(lev) <= l.Threshold
		case Damerau:
			if dl < 0 {
				if ia < 0 {
					ia, ib = overlap(a, b)
				}
				if editLowerBound(a, b, ia, ib) > c.maxDL {
					dl = c.maxDL + 1
				} else {
					dl = osaBounded(a.r, b.r, c.maxDL)
				}
			}
			ok = float64(dl) <= l.Threshold
		case DateDays:
			if a.date && b.date {
				diff := a.day - b.day
				if diff < 0 {
					diff = -diff
				}
				ok = float64(diff) <= l.Threshold
			}
		case DateTransposed:
			ok = a.ymd && b.ymd && a.y == b.y && a.m == b.d && a.d == b.m && a.m != a.d
		case DateYears:
			if a.ymd && b.ymd {
				diff := a.y - b.y
				if diff < 0 {
					diff = -diff
				}
				ok = float64(diff) <= l.Threshold
			}
		case NumericAbs:
			ok = a.isNum && b.isNum && math.Abs(a.num-b.num) <= l.Threshold
		case NumericRel:
			if a.isNum && b.isNum {
				m := math.Max(math.Abs(a.num), math.Abs(b.num))
				ok = math.Abs(a.num-b.num) <= l.Threshold*m
			}
		}
		if ok {
			return uint32(i + 1)
		}
	}
	return uint32(len(c.Levels) + 1)
}
