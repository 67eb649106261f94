package match

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// Decision is what happens to a scored pair.
type Decision uint8

// The decisions.
const (
	// Reject: the match probability is below the review threshold.
	Reject Decision = iota
	// Review: between the review and auto-merge thresholds; a person
	// decides.
	Review
	// Merge: at or above the auto-merge threshold.
	Merge
)

// String names the decision.
func (d Decision) String() string {
	switch d {
	case Review:
		return "review"
	case Merge:
		return "merge"
	}
	return "reject"
}

// Decide returns the decision for a match probability under the model's
// thresholds.
func (m *Model) Decide(probability float64) Decision {
	switch {
	case probability >= m.AutoMerge:
		return Merge
	case probability >= m.Review:
		return Review
	}
	return Reject
}

// ScoredPair is a candidate pair with its score. Model.Explain gives the
// per-comparison breakdown behind Weight.
type ScoredPair struct {
	// A and B are record positions in the index.
	A, B int32
	// Weight is the match weight: the prior log2-odds plus the log2 Bayes
	// factor of every comparison, TF adjustments included.
	Weight float64
	// Probability is the match probability, 1/(1+2^-Weight).
	Probability float64
	// Decision follows from Probability and the model's thresholds.
	Decision Decision
}

// Contribution is the part one comparison plays in a pair's weight.
type Contribution struct {
	// Comparison names the comparison and Field the field it compares.
	Comparison string `json:"comparison"`
	Field      string `json:"field"`
	// Level is the label of the level the pair is at.
	Level string `json:"level"`
	// LevelIndex is the level's index in the model (0 null, last else).
	LevelIndex int `json:"levelIndex"`
	// ValueA and ValueB are the normalised values compared.
	ValueA string `json:"valueA"`
	ValueB string `json:"valueB"`
	// M and U are the level's probabilities among matches and non-matches.
	M float64 `json:"m"`
	U float64 `json:"u"`
	// Weight is log2(M/U), 0 on the null level.
	Weight float64 `json:"weight"`
	// TFAdjustment is added to Weight when the pair agrees exactly on a
	// TF-enabled field: log2(U / term frequency of the value).
	TFAdjustment float64 `json:"tfAdjustment"`
}

// Explanation is the evidence for one pair, for a person to review.
type Explanation struct {
	// A and B are the records' identifiers.
	A string `json:"a"`
	B string `json:"b"`
	// PriorWeight is log2(λ/(1-λ)).
	PriorWeight float64 `json:"priorWeight"`
	// Weight is PriorWeight plus every contribution's Weight and
	// TFAdjustment.
	Weight float64 `json:"weight"`
	// Probability is 1/(1+2^-Weight).
	Probability float64 `json:"probability"`
	// Decision follows from Probability and the model's thresholds.
	Decision Decision `json:"decision"`
	// Comparisons break the weight down, one per comparison, in order.
	Comparisons []Contribution `json:"comparisons"`
}

// Match is an indexed record scored against a new one.
type Match struct {
	// Index is the indexed record's position.
	Index int
	Explanation
}

// probability turns a match weight into a probability.
func probability(w float64) float64 { return 1 / (1 + math.Exp2(-w)) }

// PriorWeight returns log2(λ/(1-λ)).
func (m *Model) PriorWeight() float64 { return math.Log2(m.Lambda / (1 - m.Lambda)) }

// check verifies that the model fits the index's comparisons.
func (m *Model) check(ix *Index) error {
	if len(m.Comparisons) != len(ix.comps) {
		return fmt.Errorf("match: model has %d comparisons, the index %d", len(m.Comparisons), len(ix.comps))
	}
	if !(m.Lambda > 0 && m.Lambda < 1) {
		return fmt.Errorf("match: model lambda %g is not in (0, 1)", m.Lambda)
	}
	for k := range ix.comps {
		c, cm := &ix.comps[k], &m.Comparisons[k]
		if cm.Name != c.name() || len(cm.M) != int(c.radix) || len(cm.U) != int(c.radix) {
			return fmt.Errorf("match: model comparison %q (%d levels) does not fit index comparison %q (%d levels)", cm.Name, len(cm.M), c.name(), c.radix)
		}
	}
	return nil
}

// partial returns log2(m/u) of comparison k at level l (0 for null).
func (m *Model) partial(k, l int) float64 {
	if l == 0 {
		return 0
	}
	c := &m.Comparisons[k]
	return math.Log2(c.M[l] / c.U[l])
}

// tfAdjust returns the TF adjustment of comparison k for an exact agreement
// on a value seen count times among total present values.
func (m *Model) tfAdjust(k int, count int32, total int64) float64 {
	c := &m.Comparisons[k]
	if c.TFLevel == 0 || total == 0 {
		return 0
	}
	floor := m.TFMinimum
	if floor <= 0 {
		floor = 1 / float64(total)
	}
	tf := max(float64(count)/float64(total), floor)
	return math.Log2(c.U[c.TFLevel] / tf)
}

// Score scores the candidate pairs in parallel and returns those whose
// match probability is at least minProbability, sorted by position.
func (m *Model) Score(ix *Index, c *Candidates, minProbability float64) ([]ScoredPair, error) {
	if err := m.check(ix); err != nil {
		return nil, err
	}
	prior := m.PriorWeight()
	// Weight of every pattern, without TF adjustments.
	pw := make(map[uint32]float64, len(c.Patterns))
	var dense []float64
	if ix.space <= 1<<20 {
		dense = make([]float64, ix.space)
	}
	for _, pc := range c.Patterns {
		w := prior
		for k := range ix.comps {
			w += m.partial(k, ix.levelOf(pc.Pattern, k))
		}
		if dense != nil {
			dense[pc.Pattern] = w
		} else {
			pw[pc.Pattern] = w
		}
	}
	// TF adjustment per comparison and value.
	type tfc struct {
		k     int
		level uint32
		col   []uint32
		adj   []float64
	}
	var tfs []tfc
	for k := range ix.comps {
		cc := &ix.comps[k]
		if m.Comparisons[k].TFLevel == 0 {
			continue
		}
		d := &ix.dict[cc.field]
		adj := make([]float64, len(d.count))
		for id := 1; id < len(adj); id++ {
			adj[id] = m.tfAdjust(k, d.count[id], d.total)
		}
		tfs = append(tfs, tfc{k: k, level: uint32(m.Comparisons[k].TFLevel), col: ix.cols[cc.field], adj: adj})
	}
	minW := math.Inf(-1)
	if minProbability > 0 {
		minW = math.Log2(minProbability / (1 - minProbability))
	}
	// The largest TF adjustment bounds how much a pattern can gain.
	maxTF := 0.0
	for _, t := range tfs {
		best := 0.0
		for _, a := range t.adj {
			best = max(best, a)
		}
		maxTF += best
	}
	const chunk = 1 << 16
	nChunks := (len(c.Pairs) + chunk - 1) / chunk
	outs := make([][]ScoredPair, nChunks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < ix.set.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ci := int(next.Add(1)) - 1
				if ci >= nChunks {
					return
				}
				var out []ScoredPair
				for _, p := range c.Pairs[ci*chunk : min((ci+1)*chunk, len(c.Pairs))] {
					var w float64
					if dense != nil {
						w = dense[p.Pattern]
					} else {
						w = pw[p.Pattern]
					}
					if w+maxTF < minW {
						continue
					}
					for i := range tfs {
						t := &tfs[i]
						if ix.levelOf(p.Pattern, t.k) == int(t.level) {
							w += t.adj[t.col[p.A]]
						}
					}
					if w < minW {
						continue
					}
					pr := probability(w)
					out = append(out, ScoredPair{A: p.A, B: p.B, Weight: w, Probability: pr, Decision: m.Decide(pr)})
				}
				outs[ci] = out
			}
		}()
	}
	wg.Wait()
	var res []ScoredPair
	for _, o := range outs {
		res = append(res, o...)
	}
	slices.SortFunc(res, func(x, y ScoredPair) int {
		return cmp.Or(cmp.Compare(x.A, y.A), cmp.Compare(x.B, y.B))
	})
	return res, nil
}

// side is one record of a pair being explained: indexed or new.
type side struct {
	id   string
	ids  []uint32 // value id per field; unseen marks a value not interned
	vals []*value
}

const unseen = math.MaxUint32

func (ix *Index) recordSide(i int) side {
	s := side{id: ix.ids[i], ids: make([]uint32, len(ix.cols)), vals: make([]*value, len(ix.cols))}
	for f := range ix.cols {
		id := ix.cols[f][i]
		s.ids[f] = id
		s.vals[f] = &ix.dict[f].vals[id]
	}
	return s
}

func (ix *Index) probeSide(id string, norm []string) side {
	s := side{id: id, ids: make([]uint32, len(norm)), vals: make([]*value, len(norm))}
	for f, v := range norm {
		d := &ix.dict[f]
		if v == "" {
			s.vals[f] = &d.vals[0]
			continue
		}
		if vid, ok := d.index[v]; ok {
			s.ids[f], s.vals[f] = vid, &d.vals[vid]
			continue
		}
		nv := newValue(v)
		s.ids[f], s.vals[f] = unseen, &nv
	}
	return s
}

// explain scores and breaks down one pair.
func (m *Model) explain(ix *Index, a, b side) Explanation {
	e := Explanation{A: a.id, B: b.id, PriorWeight: m.PriorWeight()}
	e.Weight = e.PriorWeight
	for k := range ix.comps {
		cc := &ix.comps[k]
		cm := &m.Comparisons[k]
		f := cc.field
		ia, ib := a.ids[f], b.ids[f]
		l := 0
		if ia != 0 && ib != 0 {
			l = int(cc.level(a.vals[f], b.vals[f], ia == ib && ia != unseen))
		}
		ct := Contribution{
			Comparison: cm.Name, Field: cc.Field, Level: cm.Levels[l], LevelIndex: l,
			ValueA: a.vals[f].s, ValueB: b.vals[f].s, Weight: m.partial(k, l),
		}
		if l != 0 {
			ct.M, ct.U = cm.M[l], cm.U[l]
		}
		if cm.TFLevel != 0 && l == cm.TFLevel {
			var count int32
			if ia != unseen {
				count = ix.dict[f].count[ia]
			}
			ct.TFAdjustment = m.tfAdjust(k, count, ix.dict[f].total)
		}
		e.Weight += ct.Weight + ct.TFAdjustment
		e.Comparisons = append(e.Comparisons, ct)
	}
	e.Probability = probability(e.Weight)
	e.Decision = m.Decide(e.Probability)
	return e
}

// Explain returns the evidence for the pair of indexed records a and b: the
// per-comparison levels, values, partial weights and TF adjustments behind
// its match weight.
func (m *Model) Explain(ix *Index, a, b int) (Explanation, error) {
	if err := m.check(ix); err != nil {
		return Explanation{}, err
	}
	if a < 0 || b < 0 || a >= ix.Len() || b >= ix.Len() {
		return Explanation{}, fmt.Errorf("match: explain: positions %d, %d out of range", a, b)
	}
	return m.explain(ix, ix.recordSide(a), ix.recordSide(b)), nil
}

// ScoreRecord scores a new record (one not in the index) against its
// blocking candidates in the index with an already estimated model, and
// returns those with a match probability of at least minProbability, best
// first, each with its explanation. The record is not added; call Add for
// that once it has been dealt with.
func (m *Model) ScoreRecord(ix *Index, r Record, minProbability float64) ([]Match, error) {
	if err := m.check(ix); err != nil {
		return nil, err
	}
	norm, err := ix.normalise(r)
	if err != nil {
		return nil, err
	}
	probe := ix.probeSide(r.ID, norm)
	var out []Match
	for _, c := range ix.candidates(norm) {
		e := m.explain(ix, probe, ix.recordSide(c))
		if e.Probability >= minProbability {
			out = append(out, Match{Index: c, Explanation: e})
		}
	}
	slices.SortStableFunc(out, func(x, y Match) int { return cmp.Compare(y.Weight, x.Weight) })
	return out, nil
}

// MarshalText writes the decision's name ("reject", "review", "merge") in
// JSON evidence.
func (d Decision) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
