package match

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Normalise returns the form of a raw field value that comparisons and
// blocking see: Unicode lower case, leading and trailing white space
// removed, and every inner run of white space collapsed to one space. An
// empty result means the value is missing. Punctuation and digits are kept,
// since they carry meaning in house numbers, postcodes and dates.
func Normalise(s string) string {
	clean := true
	prevSpace := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || (c >= 'A' && c <= 'Z') {
			clean = false
			break
		}
		sp := c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
		if sp && (prevSpace || c != ' ') {
			clean = false
			break
		}
		prevSpace = sp
	}
	if clean && !prevSpace {
		return s
	}
	if clean && len(s) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// Soundex returns the American Soundex code of s (a letter and three
// digits, "r163" for "robert"), lower-cased like every normalised value, or
// "" when s holds no ASCII letter. Characters other than ASCII letters are
// ignored.
func Soundex(s string) string {
	const codes = "01230120022455012623010202" // a..z
	var out [4]byte
	n := 0
	var last byte
	for i := 0; i < len(s) && n < 4; i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c < 'a' || c > 'z' {
			continue
		}
		code := codes[c-'a']
		if n == 0 {
			out[0] = c
			n = 1
			last = code
			continue
		}
		switch {
		case c == 'h' || c == 'w':
			// h and w do not separate letters with the same code.
		case code == '0':
			last = 0
		case code != last:
			out[n] = code
			n++
			last = code
		}
	}
	if n == 0 {
		return ""
	}
	for ; n < 4; n++ {
		out[n] = '0'
	}
	return string(out[:])
}

// JaroWinklerSimilarity returns the Jaro–Winkler similarity of a and b, in
// [0, 1], with the usual prefix scale 0.1 and a common prefix of at most
// four characters. It works on Unicode code points and gives 0 when either
// string is empty. It agrees with go-edlib's JaroWinklerSimilarity but
// computes in float64 and does not allocate for strings up to 64 runes.
func JaroWinklerSimilarity(a, b string) float64 {
	return jaroWinkler([]rune(a), []rune(b))
}

// LevenshteinDistance returns the number of single-rune insertions,
// deletions and substitutions that turn a into b.
func LevenshteinDistance(a, b string) int {
	return levenshtein([]rune(a), []rune(b))
}

// DamerauLevenshteinDistance returns the optimal string alignment distance
// between a and b: Levenshtein distance where swapping two adjacent runes
// also costs one edit.
func DamerauLevenshteinDistance(a, b string) int {
	return osa([]rune(a), []rune(b))
}

func runesEqual(a, b []rune) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// jaroWinkler is the Jaro–Winkler similarity on rune slices.
func jaroWinkler(a, b []rune) float64 {
	j := jaro(a, b)
	if j == 0 || j == 1 {
		return j
	}
	p := 0
	for p < len(a) && p < len(b) && p < 4 && a[p] == b[p] {
		p++
	}
	return j + 0.1*float64(p)*(1-j)
}

// jaro is the Jaro similarity; matching is greedy from a's side, as in
// go-edlib and most implementations.
func jaro(a, b []rune) float64 {
	la, lb := len(a), len(b)
	if la == 0 || lb == 0 {
		return 0
	}
	if runesEqual(a, b) {
		return 1
	}
	window := max(la, lb)/2 - 1
	if window < 0 {
		window = 0
	}
	if la <= 64 && lb <= 64 {
		var ma, mb uint64
		matches := 0
		for i := 0; i < la; i++ {
			lo, hi := max(0, i-window), min(lb, i+window+1)
			for j := lo; j < hi; j++ {
				if mb&(1<<uint(j)) == 0 && a[i] == b[j] {
					ma |= 1 << uint(i)
					mb |= 1 << uint(j)
					matches++
					break
				}
			}
		}
		if matches == 0 {
			return 0
		}
		t := 0
		p := 0
		for i := 0; i < la; i++ {
			if ma&(1<<uint(i)) == 0 {
				continue
			}
			for mb&(1<<uint(p)) == 0 {
				p++
			}
			if a[i] != b[p] {
				t++
			}
			p++
		}
		m := float64(matches)
		return (m/float64(la) + m/float64(lb) + (m-float64(t)/2)/m) / 3
	}
	ma := make([]bool, la)
	mb := make([]bool, lb)
	matches := 0
	for i := 0; i < la; i++ {
		lo, hi := max(0, i-window), min(lb, i+window+1)
		for j := lo; j < hi; j++ {
			if !mb[j] && a[i] == b[j] {
				ma[i], mb[j] = true, true
				matches++
				break
			}
		}
	}
	if matches == 0 {
		return 0
	}
	t := 0
	p := 0
	for i := 0; i < la; i++ {
		if !ma[i] {
			continue
		}
		for !mb[p] {
			p++
		}
		if a[i] != b[p] {
			t++
		}
		p++
	}
	m := float64(matches)
	return (m/float64(la) + m/float64(lb) + (m-float64(t)/2)/m) / 3
}

// overlap counts the runes of a whose hash bit is in b's mask, and the
// runes of b whose bit is in a's: upper bounds on the runes each string can
// share with the other.
func overlap(a, b *value) (ia, ib int) {
	for _, r := range a.r {
		ia += int(b.mask >> (uint32(r) & 63) & 1)
	}
	for _, r := range b.r {
		ib += int(a.mask >> (uint32(r) & 63) & 1)
	}
	return ia, ib
}

// jwUpperBound bounds the Jaro–Winkler similarity from above given the
// overlap counts: at most min(ia, ib) runes match, transpositions are taken
// as none, and the common prefix is exact.
func jwUpperBound(a, b *value, ia, ib int) float64 {
	la, lb := len(a.r), len(b.r)
	m := float64(min(ia, ib))
	if m == 0 || la == 0 || lb == 0 {
		return 0
	}
	j := (m/float64(la) + m/float64(lb) + 1) / 3
	p := 0
	for p < la && p < lb && p < 4 && a.r[p] == b.r[p] {
		p++
	}
	return j + 0.1*float64(p)*(1-j)
}

// editLowerBound bounds edit distances (Levenshtein and optimal string
// alignment) from below given the overlap counts: every rune absent from
// the other string needs an edit of its own.
func editLowerBound(a, b *value, ia, ib int) int {
	return max(len(a.r)-ia, len(b.r)-ib)
}

// levenshteinBounded returns the edit distance when it is at most k, and
// k+1 otherwise. It fills only the diagonal band |i-j| <= k of the
// dynamic programme and stops as soon as a row exceeds k.
func levenshteinBounded(a, b []rune, k int) int {
	return bandedDistance(a, b, k, false)
}

// osaBounded returns the optimal string alignment distance when it is at
// most k, and k+1 otherwise, in the same banded way; since a transposition
// reaches back two rows, it stops when two consecutive rows exceed k.
func osaBounded(a, b []rune, k int) int {
	return bandedDistance(a, b, k, true)
}

func bandedDistance(a, b []rune, k int, transpose bool) int {
	big := k + 1
	if d := len(a) - len(b); d > k || -d > k {
		return big
	}
	if len(b) == 0 {
		return len(a)
	}
	if len(a) == 0 {
		return len(b)
	}
	n := len(b) + 1
	var buf [3 * 65]int
	var mem []int
	if n <= 65 {
		mem = buf[:3*n]
	} else {
		mem = make([]int, 3*n)
	}
	prev2, prev, cur := mem[:n], mem[n:2*n], mem[2*n:]
	for j := range prev {
		prev[j] = min(j, big)
	}
	prevLo := 0
	for i := 1; i <= len(a); i++ {
		lo, hi := max(1, i-k), min(len(b), i+k)
		cur[0] = min(i, big)
		rowLo := big
		if lo == 1 {
			rowLo = cur[0]
		} else {
			cur[lo-1] = big
		}
		ai := a[i-1]
		for j := lo; j <= hi; j++ {
			v := prev[j-1]
			if ai != b[j-1] {
				v++
			}
			if prev[j]+1 < v {
				v = prev[j] + 1
			}
			if cur[j-1]+1 < v {
				v = cur[j-1] + 1
			}
			if transpose && i > 1 && j > 1 && ai == b[j-2] && a[i-2] == b[j-1] && prev2[j-2]+1 < v {
				v = prev2[j-2] + 1
			}
			v = min(v, big)
			cur[j] = v
			rowLo = min(rowLo, v)
		}
		if hi < len(b) {
			cur[hi+1] = big
		}
		if rowLo > k && (!transpose || prevLo > k) {
			return big
		}
		prevLo = rowLo
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// levenshtein is the edit distance on rune slices, using one row of the
// dynamic programme (on the stack for short strings).
func levenshtein(a, b []rune) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(b) == 0 {
		return len(a)
	}
	var buf [65]int
	var row []int
	if len(b) < len(buf) {
		row = buf[:len(b)+1]
	} else {
		row = make([]int, len(b)+1)
	}
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0]
		row[0] = i
		ai := a[i-1]
		for j := 1; j <= len(b); j++ {
			up := row[j]
			cost := 1
			if ai == b[j-1] {
				cost = 0
			}
			v := diag + cost
			if up+1 < v {
				v = up + 1
			}
			if row[j-1]+1 < v {
				v = row[j-1] + 1
			}
			row[j] = v
			diag = up
		}
	}
	return row[len(b)]
}

// osa is the optimal string alignment (restricted Damerau–Levenshtein)
// distance on rune slices.
func osa(a, b []rune) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(b) == 0 {
		return len(a)
	}
	n := len(b) + 1
	var buf [3 * 65]int
	var mem []int
	if n <= 65 {
		mem = buf[:3*n]
	} else {
		mem = make([]int, 3*n)
	}
	prev2, prev, cur := mem[:n], mem[n:2*n], mem[2*n:]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := prev[j-1] + cost
			if prev[j]+1 < v {
				v = prev[j] + 1
			}
			if cur[j-1]+1 < v {
				v = cur[j-1] + 1
			}
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] && prev2[j-2]+1 < v {
				v = prev2[j-2] + 1
			}
			cur[j] = v
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
