package match

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Clusters assign every record of an index to an entity.
type Clusters struct {
	// Labels gives each record's cluster, numbered 0..Count-1 in order of
	// the cluster's first record.
	Labels []int32
	// Count is the number of clusters, singletons included.
	Count int
}

// Cluster joins the records of pairs whose probability is at least
// threshold into connected components (union–find) over n records.
func Cluster(n int, pairs []ScoredPair, threshold float64) Clusters {
	parent := make([]int32, n)
	size := make([]int32, n)
	for i := range parent {
		parent[i] = int32(i)
		size[i] = 1
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for _, p := range pairs {
		if p.Probability < threshold {
			continue
		}
		a, b := find(p.A), find(p.B)
		if a == b {
			continue
		}
		if size[a] < size[b] {
			a, b = b, a
		}
		parent[b] = a
		size[a] += size[b]
	}
	c := Clusters{Labels: make([]int32, n)}
	label := make([]int32, n)
	for i := range label {
		label[i] = -1
	}
	for i := range parent {
		r := find(int32(i))
		if label[r] < 0 {
			label[r] = int32(c.Count)
			c.Count++
		}
		c.Labels[i] = label[r]
	}
	return c
}

// Groups returns the clusters of two or more records, each as ascending
// record positions, in order of their first record.
func (c Clusters) Groups() [][]int32 {
	members := make([][]int32, c.Count)
	for i, l := range c.Labels {
		members[l] = append(members[l], int32(i))
	}
	var out [][]int32
	for _, m := range members {
		if len(m) > 1 {
			out = append(out, m)
		}
	}
	return out
}

// Pairs returns every pair of records in the same cluster (A < B), for
// evaluation against true pairs.
func (c Clusters) Pairs() [][2]int32 {
	var out [][2]int32
	for _, g := range c.Groups() {
		for x := 0; x < len(g); x++ {
			for y := x + 1; y < len(g); y++ {
				out = append(out, [2]int32{g[x], g[y]})
			}
		}
	}
	return out
}

// Timings are the durations of the stages of a batch run.
type Timings struct {
	// Block is candidate pair generation, Train the estimation of u, m and
	// λ, Score the scoring of every candidate pair and Cluster the
	// connected components.
	Block, Train, Score, Cluster time.Duration
}

// Total returns the sum of the stages.
func (t Timings) Total() time.Duration { return t.Block + t.Train + t.Score + t.Cluster }

// Result is the outcome of a batch run.
type Result struct {
	// Blocking describes the candidate pairs.
	Blocking BlockingStats
	// Model is the estimated model.
	Model *Model
	// Training says how the estimation went.
	Training TrainingReport
	// Pairs are the scored pairs at or above the review threshold, sorted by
	// position; each carries its Decision.
	Pairs []ScoredPair
	// Clusters join the pairs at or above the auto-merge threshold.
	Clusters Clusters
	// Timings are the durations of the stages.
	Timings Timings
}

// Run is the batch job: it generates the candidate pairs, estimates the
// model, scores the pairs and clusters those above the auto-merge
// threshold.
func (ix *Index) Run() (*Result, error) {
	res := &Result{}
	t := time.Now()
	cands := ix.CandidatePairs()
	res.Blocking = cands.Stats
	res.Timings.Block = time.Since(t)
	if len(cands.Pairs) == 0 {
		return nil, errors.New("match: run: the blocking rules found no candidate pairs")
	}
	t = time.Now()
	model, rep, err := ix.Train(cands)
	if err != nil {
		return nil, fmt.Errorf("match: run: %w", err)
	}
	res.Model, res.Training = model, rep
	res.Timings.Train = time.Since(t)
	t = time.Now()
	res.Pairs, err = model.Score(ix, cands, ix.set.Review)
	if err != nil {
		return nil, fmt.Errorf("match: run: %w", err)
	}
	res.Timings.Score = time.Since(t)
	t = time.Now()
	res.Clusters = Cluster(ix.Len(), res.Pairs, ix.set.AutoMerge)
	res.Timings.Cluster = time.Since(t)
	return res, nil
}

// Metrics are pairwise precision, recall and F1 against known true pairs.
type Metrics struct {
	// TruePositives are found pairs that are true, FalsePositives found
	// pairs that are not, FalseNegatives true pairs not found.
	TruePositives, FalsePositives, FalseNegatives int
	// Precision is TP/(TP+FP), Recall TP/(TP+FN) and F1 their harmonic mean.
	Precision, Recall, F1 float64
}

// String formats the metrics on one line.
func (m Metrics) String() string {
	return fmt.Sprintf("precision %.4f recall %.4f F1 %.4f (tp %d fp %d fn %d)",
		m.Precision, m.Recall, m.F1, m.TruePositives, m.FalsePositives, m.FalseNegatives)
}

// EvaluatePairs compares found pairs with true pairs; the order within a
// pair and duplicate pairs do not matter.
func EvaluatePairs(found, truth [][2]int32) Metrics {
	key := func(p [2]int32) uint64 {
		a, b := p[0], p[1]
		if a > b {
			a, b = b, a
		}
		return uint64(uint32(a))<<32 | uint64(uint32(b))
	}
	norm := func(ps [][2]int32) []uint64 {
		ks := make([]uint64, len(ps))
		for i, p := range ps {
			ks[i] = key(p)
		}
		slices.Sort(ks)
		return slices.Compact(ks)
	}
	f, t := norm(found), norm(truth)
	var m Metrics
	i, j := 0, 0
	for i < len(f) && j < len(t) {
		switch {
		case f[i] == t[j]:
			m.TruePositives++
			i++
			j++
		case f[i] < t[j]:
			i++
		default:
			j++
		}
	}
	m.FalsePositives = len(f) - m.TruePositives
	m.FalseNegatives = len(t) - m.TruePositives
	if len(f) > 0 {
		m.Precision = float64(m.TruePositives) / float64(len(f))
	}
	if len(t) > 0 {
		m.Recall = float64(m.TruePositives) / float64(len(t))
	}
	if m.Precision+m.Recall > 0 {
		m.F1 = 2 * m.Precision * m.Recall / (m.Precision + m.Recall)
	}
	return m
}

// PairsAbove returns the positions of the scored pairs whose probability is
// at least threshold.
func PairsAbove(pairs []ScoredPair, threshold float64) [][2]int32 {
	var out [][2]int32
	for _, p := range pairs {
		if p.Probability >= threshold {
			out = append(out, [2]int32{p.A, p.B})
		}
	}
	return out
}

// TruePairs returns the pairs of indexed records that belong to the same
// entity, as entityOf reads it from a record ID; in Link mode only pairs
// across the two sources count. Records whose entity is "" match nothing.
func TruePairs(ix *Index, entityOf func(id string) string) [][2]int32 {
	groups := map[string][]int32{}
	for i, id := range ix.ids {
		if e := entityOf(id); e != "" {
			groups[e] = append(groups[e], int32(i))
		}
	}
	var out [][2]int32
	for _, g := range groups {
		for x := 0; x < len(g); x++ {
			for y := x + 1; y < len(g); y++ {
				a, b := g[x], g[y]
				if ix.set.Mode == Link && ix.src[a] == ix.src[b] {
					continue
				}
				out = append(out, [2]int32{a, b})
			}
		}
	}
	return out
}

// ReadCSV reads records from CSV with a header line. The column named
// idColumn gives the record ID and the others, in order, the fields; all
// values stay strings (leading zeros matter in postcodes and identifiers).
// Spaces after a comma are skipped, as the Febrl files need.
func ReadCSV(r io.Reader, idColumn string) (Schema, []Record, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return Schema{}, nil, fmt.Errorf("match: read csv header: %w", err)
	}
	idc := -1
	var fields []string
	for i, h := range header {
		if h == idColumn {
			idc = i
			continue
		}
		fields = append(fields, h)
	}
	if idc < 0 {
		return Schema{}, nil, fmt.Errorf("match: read csv: no column %q in header", idColumn)
	}
	var recs []Record
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Schema{}, nil, fmt.Errorf("match: read csv: %w", err)
		}
		rec := Record{ID: row[idc], Fields: make([]string, 0, len(row)-1)}
		for i, v := range row {
			if i != idc {
				rec.Fields = append(rec.Fields, v)
			}
		}
		recs = append(recs, rec)
	}
	return NewSchema(fields...), recs, nil
}
