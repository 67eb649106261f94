package match

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// Schema names the fields of a record, in order.
type Schema struct {
	// Fields are the field names, unique.
	Fields []string
}

// NewSchema returns a schema of the named fields.
func NewSchema(fields ...string) Schema {
	return Schema{Fields: append([]string(nil), fields...)}
}

// FieldIndex returns the position of the named field, or -1.
func (s Schema) FieldIndex(name string) int {
	for i, f := range s.Fields {
		if f == name {
			return i
		}
	}
	return -1
}

// Record is one input record: an identifier and its raw field values in
// schema order. Values are normalised with [Normalise] when the record is
// added; an empty value is missing.
type Record struct {
	// ID identifies the record to the caller; it is carried, not checked.
	ID string
	// Fields are the raw values, one per schema field.
	Fields []string
}

// Mode says which pairs a run considers.
type Mode uint8

const (
	// Dedupe compares records of one dataset (source 0) with each other.
	Dedupe Mode = iota
	// Link compares each record of source 0 with each record of source 1 and
	// never two records of the same source.
	Link
)

// Defaults used where a Settings field is zero.
const (
	DefaultMaxBlockPairs = 1 << 20
	DefaultAutoMerge     = 0.99
	DefaultReview        = 0.5
	DefaultUSamples      = 1_000_000
	DefaultMaxIterations = 100
	DefaultTolerance     = 1e-6
)

// Settings configure a deployment: what is compared and how, how candidate
// pairs are found, and the decision thresholds.
type Settings struct {
	// Mode is Dedupe (one source) or Link (source 0 against source 1).
	Mode Mode
	// Comparisons are the fields compared and their levels.
	Comparisons []Comparison
	// Blocking are the rules whose union gives the candidate pairs.
	Blocking []BlockingRule
	// Combined adds derived fields that comparisons and blocking rules can
	// name like schema fields.
	Combined []CombinedField
	// MaxBlockPairs bounds the pairs one block may generate; larger blocks
	// are skipped and counted in BlockingStats (default
	// DefaultMaxBlockPairs).
	MaxBlockPairs int64
	// AutoMerge is the match probability at and above which a pair merges
	// (default DefaultAutoMerge).
	AutoMerge float64
	// Review is the match probability at and above which a pair below
	// AutoMerge goes to a person (default DefaultReview).
	Review float64
	// USamples is the number of random pairs used to estimate u (default
	// DefaultUSamples).
	USamples int
	// MaxIterations bounds the EM iterations (default DefaultMaxIterations).
	MaxIterations int
	// Training lists EM training sessions, each the names of comparisons
	// that the session's pairs must agree on at their strongest level (see
	// Index.Train). Empty means one EM over all candidate pairs. Sessions
	// on identifying comparisons (date of birth; given name and surname)
	// keep EM from taking a frequent kind of non-match, such as members of
	// one household, for the match class.
	Training [][]string
	// Tolerance stops EM when no parameter moves by more (default
	// DefaultTolerance).
	Tolerance float64
	// TFMinimum is the floor of a value's term frequency in the TF
	// adjustment; zero means the frequency of a value seen once.
	TFMinimum float64
	// Seed seeds the random pair sampling, so that runs repeat.
	Seed uint64
	// Workers bounds the goroutines used (default GOMAXPROCS).
	Workers int
}

func (s Settings) withDefaults() Settings {
	if s.MaxBlockPairs <= 0 {
		s.MaxBlockPairs = DefaultMaxBlockPairs
	}
	if s.AutoMerge == 0 {
		s.AutoMerge = DefaultAutoMerge
	}
	if s.Review == 0 {
		s.Review = DefaultReview
	}
	if s.USamples <= 0 {
		s.USamples = DefaultUSamples
	}
	if s.MaxIterations <= 0 {
		s.MaxIterations = DefaultMaxIterations
	}
	if s.Tolerance <= 0 {
		s.Tolerance = DefaultTolerance
	}
	if s.Workers <= 0 {
		s.Workers = runtime.GOMAXPROCS(0)
	}
	return s
}

// CombinedField is a derived field: the normalised values of Fields joined
// by single spaces, missing parts left out (missing when all are). Use it
// to compare correlated fields as one, such as the parts of an address:
// compared apart, a household's shared street, suburb and postcode would
// count as independent evidence several times over.
type CombinedField struct {
	// Name is the field's name; it must differ from the schema's fields.
	Name string
	// Fields are the schema fields joined, in order.
	Fields []string
}

// dict interns the normalised values of one field; id 0 is "missing".
type dict struct {
	index map[string]uint32
	vals  []value
	count []int32
	total int64
}

func newDict() dict {
	return dict{index: map[string]uint32{}, vals: make([]value, 1), count: make([]int32, 1)}
}

// intern returns the id of a normalised value, adding it when new.
func (d *dict) intern(s string) uint32 {
	if s == "" {
		return 0
	}
	if id, ok := d.index[s]; ok {
		return id
	}
	id := uint32(len(d.vals))
	d.index[s] = id
	d.vals = append(d.vals, newValue(s))
	d.count = append(d.count, 0)
	return id
}

// Index holds normalised, interned records column by column, with their
// blocking keys. Build it once with Add or AddAll; Run, Train and Score use
// it in batch, Candidates and ScoreRecord for one new record at a time.
//
// An Index is not safe for concurrent use while records are added; reads
// (Candidates, ScoreRecord, Explain) may run concurrently with each other.
type Index struct {
	schema Schema
	fields Schema  // schema fields, then combined fields
	parts  [][]int // per combined field, its schema fields
	set    Settings
	comps  []compiledComparison
	space  uint64 // number of distinct patterns
	rules  []compiledRule

	ids  []string
	src  []uint8
	cols [][]uint32
	dict []dict
	n    [2]int

	derived  map[string]uint32 // derived blocking values, tagged by transform
	dcols    []derivedCol
	keys     [][]uint32 // per rule, per record
	built    bool
	tfCache  [][]float32
	tfCached []int
	mu       sync.Mutex // guards tfCache
}

// NewIndex validates the settings against the schema and returns an empty
// index.
func NewIndex(schema Schema, settings Settings) (*Index, error) {
	if len(schema.Fields) == 0 {
		return nil, errors.New("match: schema has no fields")
	}
	seen := map[string]bool{}
	for _, f := range schema.Fields {
		if seen[f] {
			return nil, fmt.Errorf("match: field %q appears twice in the schema", f)
		}
		seen[f] = true
	}
	set := settings.withDefaults()
	if set.Mode != Dedupe && set.Mode != Link {
		return nil, fmt.Errorf("match: unknown mode %d", set.Mode)
	}
	if len(set.Comparisons) == 0 {
		return nil, errors.New("match: no comparisons")
	}
	if len(set.Blocking) == 0 {
		return nil, errors.New("match: no blocking rules")
	}
	if !(set.Review > 0 && set.Review <= set.AutoMerge && set.AutoMerge < 1) {
		return nil, fmt.Errorf("match: thresholds must satisfy 0 < review (%g) <= auto-merge (%g) < 1", set.Review, set.AutoMerge)
	}
	ix := &Index{
		schema:  NewSchema(schema.Fields...),
		fields:  NewSchema(schema.Fields...),
		set:     set,
		derived: map[string]uint32{},
	}
	for _, c := range set.Combined {
		if c.Name == "" || ix.fields.FieldIndex(c.Name) >= 0 {
			return nil, fmt.Errorf("match: combined field %q: empty or already a field", c.Name)
		}
		if len(c.Fields) == 0 {
			return nil, fmt.Errorf("match: combined field %q has no parts", c.Name)
		}
		var parts []int
		for _, f := range c.Fields {
			i := ix.schema.FieldIndex(f)
			if i < 0 {
				return nil, fmt.Errorf("match: combined field %q: part %q is not in the schema", c.Name, f)
			}
			parts = append(parts, i)
		}
		ix.fields.Fields = append(ix.fields.Fields, c.Name)
		ix.parts = append(ix.parts, parts)
	}
	ix.cols = make([][]uint32, len(ix.fields.Fields))
	ix.dict = make([]dict, len(ix.fields.Fields))
	for i := range ix.dict {
		ix.dict[i] = newDict()
	}
	names := map[string]bool{}
	ix.space = 1
	for _, c := range set.Comparisons {
		cc, err := compileComparison(c, ix.fields)
		if err != nil {
			return nil, fmt.Errorf("match: %w", err)
		}
		if names[cc.name()] {
			return nil, fmt.Errorf("match: comparison %q appears twice; rename one with Named", cc.name())
		}
		names[cc.name()] = true
		cc.stride = uint32(ix.space)
		ix.space *= uint64(cc.radix)
		if ix.space > math.MaxUint32 {
			return nil, errors.New("match: too many comparison levels: the pattern space exceeds 2^32")
		}
		ix.comps = append(ix.comps, cc)
	}
	for _, r := range set.Blocking {
		cr, err := ix.compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("match: %w", err)
		}
		ix.rules = append(ix.rules, cr)
	}
	ix.keys = make([][]uint32, len(ix.rules))
	ix.tfCache = make([][]float32, len(ix.comps))
	ix.tfCached = make([]int, len(ix.comps))
	return ix, nil
}

// Schema returns the index's schema.
func (ix *Index) Schema() Schema { return NewSchema(ix.schema.Fields...) }

// Settings returns the settings in force, defaults filled in.
func (ix *Index) Settings() Settings { return ix.set }

// Len returns the number of records.
func (ix *Index) Len() int { return len(ix.ids) }

// ID returns the identifier of record i.
func (ix *Index) ID(i int) string { return ix.ids[i] }

// Source returns the source (0 or 1) of record i.
func (ix *Index) Source(i int) int { return int(ix.src[i]) }

// Value returns the normalised value of field f of record i ("" when
// missing); combined fields follow the schema fields.
func (ix *Index) Value(i, f int) string { return ix.dict[f].vals[ix.cols[f][i]].s }

// TotalPairs returns the number of pairs the mode allows: n(n-1)/2 for
// Dedupe, n0·n1 for Link.
func (ix *Index) TotalPairs() float64 {
	if ix.set.Mode == Link {
		return float64(ix.n[0]) * float64(ix.n[1])
	}
	n := float64(len(ix.ids))
	return n * (n - 1) / 2
}

func (ix *Index) checkRecord(source int, r Record) error {
	if len(r.Fields) != len(ix.schema.Fields) {
		return fmt.Errorf("match: record %q has %d fields, the schema %d", r.ID, len(r.Fields), len(ix.schema.Fields))
	}
	if source < 0 || source > 1 || (source == 1 && ix.set.Mode != Link) {
		return fmt.Errorf("match: record %q: source %d is not valid in this mode", r.ID, source)
	}
	if len(ix.ids) >= math.MaxInt32 {
		return errors.New("match: index full")
	}
	return nil
}

// Add normalises one record, adds it to the index under source (0, or 1 in
// Link mode) and returns its position. A record added after candidate pairs
// were generated is findable by Candidates at once.
func (ix *Index) Add(source int, r Record) (int, error) {
	if err := ix.checkRecord(source, r); err != nil {
		return 0, err
	}
	pos := len(ix.ids)
	ix.ids = append(ix.ids, r.ID)
	ix.src = append(ix.src, uint8(source))
	ix.n[source]++
	for f, raw := range r.Fields {
		ix.addValue(f, Normalise(raw))
	}
	for c := range ix.parts {
		ix.addValue(len(r.Fields)+c, ix.combinedValue(c, pos))
	}
	ix.extendDerived()
	for ri := range ix.rules {
		k := ix.rules[ri].key(ix, pos, true)
		ix.keys[ri] = append(ix.keys[ri], k)
		if ix.built {
			ix.rules[ri].addLate(k, int32(pos))
		}
	}
	return pos, nil
}

// AddAll adds records in bulk under source, normalising and interning the
// fields in parallel. On error nothing is added.
func (ix *Index) AddAll(source int, recs []Record) error {
	for _, r := range recs {
		if err := ix.checkRecord(source, r); err != nil {
			return err
		}
	}
	if len(ix.ids)+len(recs) >= math.MaxInt32 {
		return errors.New("match: index full")
	}
	start := len(ix.ids)
	for _, r := range recs {
		ix.ids = append(ix.ids, r.ID)
		ix.src = append(ix.src, uint8(source))
	}
	ix.n[source] += len(recs)
	for f := range ix.cols {
		ix.cols[f] = slices.Grow(ix.cols[f], len(recs))
	}
	for ri := range ix.keys {
		ix.keys[ri] = slices.Grow(ix.keys[ri], len(recs))
	}
	parallel(ix.set.Workers, len(ix.schema.Fields), func(f int) {
		for _, r := range recs {
			ix.addValue(f, Normalise(r.Fields[f]))
		}
	})
	parallel(ix.set.Workers, len(ix.parts), func(c int) {
		for pos := start; pos < len(ix.ids); pos++ {
			ix.addValue(len(ix.schema.Fields)+c, ix.combinedValue(c, pos))
		}
	})
	ix.extendDerived()
	parallel(ix.set.Workers, len(ix.rules), func(ri int) {
		r := &ix.rules[ri]
		for pos := start; pos < len(ix.ids); pos++ {
			ix.keys[ri] = append(ix.keys[ri], r.key(ix, pos, true))
		}
	})
	if ix.built {
		for ri := range ix.rules {
			for pos := start; pos < len(ix.ids); pos++ {
				ix.rules[ri].addLate(ix.keys[ri][pos], int32(pos))
			}
		}
	}
	return nil
}

// addValue interns a normalised value of field f and appends it to the
// field's column.
func (ix *Index) addValue(f int, s string) {
	d := &ix.dict[f]
	id := d.intern(s)
	if id != 0 {
		d.count[id]++
		d.total++
	}
	ix.cols[f] = append(ix.cols[f], id)
}

// combinedValue joins the present parts of combined field c for record pos.
func (ix *Index) combinedValue(c, pos int) string {
	return joinParts(ix.parts[c], func(f int) string { return ix.dict[f].vals[ix.cols[f][pos]].s })
}

// joinParts joins the non-empty values of fields with single spaces.
func joinParts(fields []int, get func(f int) string) string {
	var buf [128]byte
	b := buf[:0]
	for _, f := range fields {
		if v := get(f); v != "" {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, v...)
		}
	}
	return string(b)
}

// parallel runs fn(0..n-1) on up to workers goroutines.
func parallel(workers, n int, fn func(i int)) {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// pattern computes the comparison vector of records i and j as one number.
func (ix *Index) pattern(i, j int32) uint32 {
	var p uint32
	for k := range ix.comps {
		c := &ix.comps[k]
		col := ix.cols[c.field]
		a, b := col[i], col[j]
		if a == 0 || b == 0 {
			continue
		}
		vals := ix.dict[c.field].vals
		p += c.level(&vals[a], &vals[b], a == b) * c.stride
	}
	return p
}

// levelOf extracts the level of comparison k from a pattern.
func (ix *Index) levelOf(p uint32, k int) int {
	c := &ix.comps[k]
	return int(p / c.stride % c.radix)
}
