package match

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Transform derives a blocking key part from a normalised value.
type Transform uint8

// The transforms.
const (
	// Whole uses the value as it is.
	Whole Transform = iota
	// Prefix uses the first Length runes (the whole value when shorter).
	Prefix
	// Suffix uses the last Length runes (the whole value when shorter).
	Suffix
	// SoundexCode uses the Soundex code of the value (see [Soundex]).
	SoundexCode
)

// BlockKey is one part of a blocking key: a field, possibly transformed.
type BlockKey struct {
	// Field names a schema or combined field.
	Field string
	// Transform derives the key part from the field's normalised value.
	Transform Transform
	// Length is the rune count of Prefix and Suffix.
	Length int
}

// Key returns the part that uses the whole value of field.
func Key(field string) BlockKey { return BlockKey{Field: field} }

// PrefixKey returns the part that uses the first n runes of field: with
// n = 4 on a YYYYMMDD date, the year of birth.
func PrefixKey(field string, n int) BlockKey {
	return BlockKey{Field: field, Transform: Prefix, Length: n}
}

// SuffixKey returns the part that uses the last n runes of field.
func SuffixKey(field string, n int) BlockKey {
	return BlockKey{Field: field, Transform: Suffix, Length: n}
}

// SoundexKey returns the part that uses the Soundex code of field.
func SoundexKey(field string) BlockKey {
	return BlockKey{Field: field, Transform: SoundexCode}
}

// String renders the part the way Splink writes it ("substr(surname,1,3)").
func (k BlockKey) String() string {
	switch k.Transform {
	case Prefix:
		return fmt.Sprintf("substr(%s,1,%d)", k.Field, k.Length)
	case Suffix:
		return fmt.Sprintf("right(%s,%d)", k.Field, k.Length)
	case SoundexCode:
		return "soundex(" + k.Field + ")"
	}
	return k.Field
}

// BlockingRule makes two records a candidate pair when all its key parts
// are present and equal. The candidate pairs of a run are the union over
// its rules.
type BlockingRule struct {
	// Name labels the rule in statistics; empty means one derived from Keys.
	Name string
	// Keys are the parts that must all agree.
	Keys []BlockKey
	// AnyOrder compares the parts as a set, so that (given, surname) also
	// meets (surname, given): a rule that finds swapped fields. The parts
	// should then use the same transform.
	AnyOrder bool
}

// On returns the rule that requires equal values on every named field.
func On(fields ...string) BlockingRule {
	r := BlockingRule{}
	for _, f := range fields {
		r.Keys = append(r.Keys, Key(f))
	}
	return r
}

// Rule returns the rule that requires every part to agree.
func Rule(keys ...BlockKey) BlockingRule {
	return BlockingRule{Keys: append([]BlockKey(nil), keys...)}
}

// Unordered returns r with AnyOrder set.
func (r BlockingRule) Unordered() BlockingRule {
	r.AnyOrder = true
	return r
}

// String returns the rule's name.
func (r BlockingRule) String() string {
	if r.Name != "" {
		return r.Name
	}
	parts := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		parts[i] = k.String()
	}
	sep := " & "
	if r.AnyOrder {
		sep = " ~ "
	}
	return strings.Join(parts, sep)
}

// derivedCol maps the value ids of one field to derived-key ids for one
// transform.
type derivedCol struct {
	field int
	tr    Transform
	n     int
	ids   []uint32
}

// derive applies a transform; "" means no key.
func derive(s string, tr Transform, n int) string {
	switch tr {
	case Prefix:
		i := 0
		for k := 0; k < n && i < len(s); k++ {
			_, w := utf8.DecodeRuneInString(s[i:])
			i += w
		}
		return s[:i]
	case Suffix:
		i := len(s)
		for k := 0; k < n && i > 0; k++ {
			_, w := utf8.DecodeLastRuneInString(s[:i])
			i -= w
		}
		return s[i:]
	case SoundexCode:
		return Soundex(s)
	}
	return s
}

// tag prefixes derived values so that different transforms never collide.
func tag(tr Transform, n int) string {
	switch tr {
	case Prefix:
		return "p" + strconv.Itoa(n) + "\x00"
	case Suffix:
		return "s" + strconv.Itoa(n) + "\x00"
	case SoundexCode:
		return "x\x00"
	}
	return "=\x00"
}

// extendDerived derives the keys of values interned since the last call.
func (ix *Index) extendDerived() {
	for i := range ix.dcols {
		dc := &ix.dcols[i]
		vals := ix.dict[dc.field].vals
		t := tag(dc.tr, dc.n)
		for id := len(dc.ids); id < len(vals); id++ {
			var k uint32
			if id != 0 {
				if s := derive(vals[id].s, dc.tr, dc.n); s != "" {
					full := t + s
					var ok bool
					if k, ok = ix.derived[full]; !ok {
						k = uint32(len(ix.derived) + 1)
						ix.derived[full] = k
					}
				}
			}
			dc.ids = append(dc.ids, k)
		}
	}
}

// derivedLookup returns the derived id of a value that may not be interned
// (0 when no indexed value has that key).
func (ix *Index) derivedLookup(dc int, s string) uint32 {
	d := &ix.dcols[dc]
	if s == "" {
		return 0
	}
	if id, ok := ix.dict[d.field].index[s]; ok && int(id) < len(d.ids) {
		return d.ids[id]
	}
	ds := derive(s, d.tr, d.n)
	if ds == "" {
		return 0
	}
	return ix.derived[tag(d.tr, d.n)+ds]
}

// compiledRule is a blocking rule resolved against the index, with its
// block structure once built.
type compiledRule struct {
	BlockingRule
	name  string
	parts []int // derived column per key part
	// combos interns tuples of part ids (multi-part rules).
	combos map[uint64]uint32
	// CSR blocks per source, built by build; keys beyond len(off)-1 or
	// added later live in late.
	off  [2][]int32
	mem  [2][]int32
	skip []uint64
	late map[uint32][]int32
}

func (ix *Index) compileRule(r BlockingRule) (compiledRule, error) {
	cr := compiledRule{BlockingRule: r, name: r.String()}
	if len(r.Keys) == 0 {
		return cr, fmt.Errorf("blocking rule %q has no keys", cr.name)
	}
	for _, k := range r.Keys {
		f := ix.fields.FieldIndex(k.Field)
		if f < 0 {
			return cr, fmt.Errorf("blocking rule %q: field %q is not in the schema", cr.name, k.Field)
		}
		if (k.Transform == Prefix || k.Transform == Suffix) && k.Length <= 0 {
			return cr, fmt.Errorf("blocking rule %q: %s needs a positive length", cr.name, k)
		}
		if k.Transform > SoundexCode {
			return cr, fmt.Errorf("blocking rule %q: unknown transform %d", cr.name, k.Transform)
		}
		n := k.Length
		if k.Transform == Whole || k.Transform == SoundexCode {
			n = 0
		}
		dc := -1
		for i, d := range ix.dcols {
			if d.field == f && d.tr == k.Transform && d.n == n {
				dc = i
			}
		}
		if dc < 0 {
			dc = len(ix.dcols)
			ix.dcols = append(ix.dcols, derivedCol{field: f, tr: k.Transform, n: n})
		}
		cr.parts = append(cr.parts, dc)
	}
	if len(cr.parts) > 1 {
		cr.combos = map[uint64]uint32{}
	}
	return cr, nil
}

// combine folds part ids into one key id; with insert false an unknown
// tuple gives 0.
func (r *compiledRule) combine(ids []uint32, insert bool) uint32 {
	if len(ids) == 1 {
		return ids[0]
	}
	if r.AnyOrder {
		slices.Sort(ids)
	}
	k := ids[0]
	for _, id := range ids[1:] {
		t := uint64(k)<<32 | uint64(id)
		v, ok := r.combos[t]
		if !ok {
			if !insert {
				return 0
			}
			v = uint32(len(r.combos) + 1)
			r.combos[t] = v
		}
		k = v
	}
	return k
}

// key returns record pos's key under the rule (0: a part is missing).
func (r *compiledRule) key(ix *Index, pos int, insert bool) uint32 {
	var buf [8]uint32
	ids := buf[:0]
	for _, dc := range r.parts {
		d := &ix.dcols[dc]
		id := d.ids[ix.cols[d.field][pos]]
		if id == 0 {
			return 0
		}
		ids = append(ids, id)
	}
	return r.combine(ids, insert)
}

// probeKey returns the key of a record that is not in the index (0 when it
// can meet no indexed record under this rule).
func (r *compiledRule) probeKey(ix *Index, norm []string) uint32 {
	var buf [8]uint32
	ids := buf[:0]
	for _, dc := range r.parts {
		id := ix.derivedLookup(dc, norm[ix.dcols[dc].field])
		if id == 0 {
			return 0
		}
		ids = append(ids, id)
	}
	return r.combine(ids, false)
}

func (r *compiledRule) addLate(k uint32, pos int32) {
	if k == 0 {
		return
	}
	if r.late == nil {
		r.late = map[uint32][]int32{}
	}
	r.late[k] = append(r.late[k], pos)
}

func (r *compiledRule) skipped(k uint32) bool {
	w := int(k >> 6)
	return w < len(r.skip) && r.skip[w]&(1<<(k&63)) != 0
}

// build lays out the rule's blocks and marks those over the pair bound.
func (ix *Index) buildRule(ri int, st *RuleStats) {
	r := &ix.rules[ri]
	keys := ix.keys[ri]
	var space uint32
	for _, k := range keys {
		space = max(space, k)
	}
	r.late = nil
	for s := 0; s < 2; s++ {
		off := make([]int32, space+2)
		for i, k := range keys {
			if k != 0 && int(ix.src[i]) == s {
				off[k+1]++
			}
		}
		for k := 1; k < len(off); k++ {
			off[k] += off[k-1]
		}
		mem := make([]int32, off[len(off)-1])
		fill := append([]int32(nil), off[:len(off)-1]...)
		for i, k := range keys {
			if k != 0 && int(ix.src[i]) == s {
				mem[fill[k]] = int32(i)
				fill[k]++
			}
		}
		r.off[s], r.mem[s] = off, mem
		if ix.set.Mode != Link {
			r.off[1], r.mem[1] = make([]int32, space+2), nil
			break
		}
	}
	r.skip = make([]uint64, space/64+1)
	for k := uint32(1); k <= space; k++ {
		p := r.blockPairs(ix.set.Mode, k)
		if p == 0 {
			continue
		}
		st.Blocks++
		n := int(r.off[0][k+1]-r.off[0][k]) + int(r.off[1][k+1]-r.off[1][k])
		st.LargestBlock = max(st.LargestBlock, n)
		if p > ix.set.MaxBlockPairs {
			r.skip[k>>6] |= 1 << (k & 63)
			st.SkippedBlocks++
			st.SkippedPairs += p
		}
	}
}

// blockPairs returns the pairs block k generates.
func (r *compiledRule) blockPairs(mode Mode, k uint32) int64 {
	n0 := int64(r.off[0][k+1] - r.off[0][k])
	if mode == Link {
		return n0 * int64(r.off[1][k+1]-r.off[1][k])
	}
	return n0 * (n0 - 1) / 2
}

// Pair is a candidate pair: record positions (A < B in Dedupe mode, A from
// source 0 and B from source 1 in Link mode) and their comparison pattern.
type Pair struct {
	// A and B are record positions in the index.
	A, B int32
	// Pattern numbers the pair's comparison levels (mixed radix, first
	// comparison least significant).
	Pattern uint32
}

// PatternCount is how many candidate pairs share one comparison pattern.
type PatternCount struct {
	// Pattern is the comparison pattern, as in Pair.
	Pattern uint32
	// Count is the number of candidate pairs with that pattern.
	Count int64
}

// RuleStats describe what one blocking rule contributed.
type RuleStats struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Blocks is the number of keys that generate at least one pair.
	Blocks int `json:"blocks"`
	// LargestBlock is the record count of the largest block.
	LargestBlock int `json:"largestBlock"`
	// Pairs is the number of new pairs the rule found (pairs found by an
	// earlier rule are not counted again).
	Pairs int64 `json:"pairs"`
	// SkippedBlocks and SkippedPairs count the blocks over MaxBlockPairs and
	// the pairs they would have generated (before removing pairs other
	// rules find).
	SkippedBlocks int `json:"skippedBlocks"`
	// SkippedPairs is documented with SkippedBlocks.
	SkippedPairs int64 `json:"skippedPairs"`
}

// BlockingStats describe a candidate pair generation.
type BlockingStats struct {
	// Rules describe each rule, in order.
	Rules []RuleStats `json:"rules"`
	// Pairs is the number of distinct candidate pairs.
	Pairs int64 `json:"pairs"`
	// TotalPairs is the number of pairs without blocking.
	TotalPairs float64 `json:"totalPairs"`
}

// Candidates are the candidate pairs of a batch run with their comparison
// patterns.
type Candidates struct {
	// Pairs are the candidate pairs, in no particular order.
	Pairs []Pair
	// Patterns count the pairs per comparison pattern, by pattern.
	Patterns []PatternCount
	// Stats describe the blocking.
	Stats BlockingStats
}

// CandidatePairs builds the blocking index over all records and generates
// every candidate pair once, with its comparison pattern, in parallel.
func (ix *Index) CandidatePairs() *Candidates {
	st := ix.buildBlocks()

	type chunk struct {
		rule   int
		lo, hi uint32
	}
	var chunks []chunk
	for ri := range ix.rules {
		space := uint32(len(ix.rules[ri].off[0]) - 2)
		const step = 2048
		for lo := uint32(1); lo <= space; lo += step {
			chunks = append(chunks, chunk{ri, lo, min(lo+step-1, space)})
		}
	}
	workers := ix.set.Workers
	dense := ix.space <= 1<<20
	type out struct {
		pairs  []Pair
		dense  []uint32
		sparse map[uint32]int64
		per    []int64
	}
	outs := make([]out, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(o *out) {
			defer wg.Done()
			o.per = make([]int64, len(ix.rules))
			if dense {
				o.dense = make([]uint32, ix.space)
			} else {
				o.sparse = map[uint32]int64{}
			}
			emit := func(ri int, a, b int32) {
				for e := 0; e < ri; e++ {
					ke := ix.keys[e][a]
					if ke != 0 && ke == ix.keys[e][b] && !ix.rules[e].skipped(ke) {
						return
					}
				}
				p := ix.pattern(a, b)
				o.pairs = append(o.pairs, Pair{A: a, B: b, Pattern: p})
				o.per[ri]++
				if dense {
					o.dense[p]++
				} else {
					o.sparse[p]++
				}
			}
			for {
				ci := int(next.Add(1)) - 1
				if ci >= len(chunks) {
					return
				}
				c := chunks[ci]
				r := &ix.rules[c.rule]
				for k := c.lo; k <= c.hi; k++ {
					if r.skipped(k) {
						continue
					}
					m0 := r.mem[0][r.off[0][k]:r.off[0][k+1]]
					if ix.set.Mode == Link {
						m1 := r.mem[1][r.off[1][k]:r.off[1][k+1]]
						if len(m1) == 0 {
							continue
						}
						for _, a := range m0 {
							for _, b := range m1 {
								emit(c.rule, a, b)
							}
						}
						continue
					}
					for x := 0; x < len(m0); x++ {
						for y := x + 1; y < len(m0); y++ {
							emit(c.rule, m0[x], m0[y])
						}
					}
				}
			}
		}(&outs[w])
	}
	wg.Wait()

	total := 0
	for _, o := range outs {
		total += len(o.pairs)
	}
	cands := &Candidates{Pairs: make([]Pair, 0, total)}
	counts := map[uint32]int64{}
	var merged []int64
	if dense {
		merged = make([]int64, ix.space)
	}
	for _, o := range outs {
		cands.Pairs = append(cands.Pairs, o.pairs...)
		for ri, n := range o.per {
			st.Rules[ri].Pairs += n
		}
		if dense {
			for p, n := range o.dense {
				merged[p] += int64(n)
			}
		} else {
			for p, n := range o.sparse {
				counts[p] += n
			}
		}
	}
	if dense {
		for p, n := range merged {
			if n != 0 {
				cands.Patterns = append(cands.Patterns, PatternCount{uint32(p), n})
			}
		}
	} else {
		for p, n := range counts {
			cands.Patterns = append(cands.Patterns, PatternCount{p, n})
		}
		slices.SortFunc(cands.Patterns, func(a, b PatternCount) int { return int(a.Pattern) - int(b.Pattern) })
	}
	st.Pairs = int64(total)
	cands.Stats = st
	return cands
}

// buildBlocks lays out the blocks of every rule over all records.
func (ix *Index) buildBlocks() BlockingStats {
	st := BlockingStats{Rules: make([]RuleStats, len(ix.rules)), TotalPairs: ix.TotalPairs()}
	for ri := range ix.rules {
		st.Rules[ri].Rule = ix.rules[ri].name
	}
	parallel(ix.set.Workers, len(ix.rules), func(ri int) { ix.buildRule(ri, &st.Rules[ri]) })
	ix.built = true
	return st
}

// Candidates returns the positions of the indexed records that share a
// blocking key with r (a record not in the index), ascending, skipping
// blocks over the pair bound. The first call after records were added in
// bulk lays out the blocking index. In Link mode r plays the part of a source 1
// record and only source 0 records are returned.
func (ix *Index) Candidates(r Record) ([]int, error) {
	norm, err := ix.normalise(r)
	if err != nil {
		return nil, err
	}
	return ix.candidates(norm), nil
}

func (ix *Index) normalise(r Record) ([]string, error) {
	if len(r.Fields) != len(ix.schema.Fields) {
		return nil, fmt.Errorf("match: record %q has %d fields, the schema %d", r.ID, len(r.Fields), len(ix.schema.Fields))
	}
	norm := make([]string, len(ix.fields.Fields))
	for i, f := range r.Fields {
		norm[i] = Normalise(f)
	}
	for c, parts := range ix.parts {
		norm[len(r.Fields)+c] = joinParts(parts, func(f int) string { return norm[f] })
	}
	return norm, nil
}

func (ix *Index) candidates(norm []string) []int {
	if !ix.built {
		ix.buildBlocks()
	}
	seen := map[int32]bool{}
	var out []int
	add := func(m int32) {
		if ix.set.Mode == Link && ix.src[m] != 0 {
			return
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, int(m))
		}
	}
	for ri := range ix.rules {
		r := &ix.rules[ri]
		k := r.probeKey(ix, norm)
		if k == 0 {
			continue
		}
		var block []int32
		if int(k)+1 < len(r.off[0]) {
			if r.skipped(k) {
				continue
			}
			block = r.mem[0][r.off[0][k]:r.off[0][k+1]]
		}
		late := r.late[k]
		if int64(len(block)+len(late)) > ix.set.MaxBlockPairs {
			continue
		}
		for _, m := range block {
			add(m)
		}
		for _, m := range late {
			add(m)
		}
	}
	slices.Sort(out)
	return out
}
