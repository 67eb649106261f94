package match

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// ComparisonModel holds the estimated parameters of one comparison. The
// slices are indexed by level: 0 is the null level (no parameters), 1 to
// len(Levels)-2 the configured levels strongest first, and the last one
// "else".
type ComparisonModel struct {
	// Name and Field are the comparison's name and field.
	Name  string `json:"name"`
	Field string `json:"field"`
	// Levels are the level labels.
	Levels []string `json:"levels"`
	// M is the probability of each level among matching pairs.
	M []float64 `json:"m"`
	// U is the probability of each level among non-matching pairs.
	U []float64 `json:"u"`
	// TFLevel is the level the term-frequency adjustment applies to (0:
	// none).
	TFLevel int `json:"tf_level,omitempty"`
}

// Model is an estimated Fellegi–Sunter model. It can be stored (it
// marshals to JSON) and reused on an index built with the same
// comparisons, which is how new records are scored incrementally.
type Model struct {
	// Lambda is the prior probability that two records of a pair the mode
	// allows match.
	Lambda float64 `json:"lambda"`
	// Comparisons hold the m and u probabilities per comparison level.
	Comparisons []ComparisonModel `json:"comparisons"`
	// TFMinimum is the floor of a term frequency (0: one occurrence).
	TFMinimum float64 `json:"tf_minimum,omitempty"`
	// AutoMerge is the match probability at and above which a pair merges.
	AutoMerge float64 `json:"auto_merge"`
	// Review is the match probability at and above which a pair below
	// AutoMerge goes to a person.
	Review float64 `json:"review"`
}

// TrainingReport describes an estimation.
type TrainingReport struct {
	// USamples is the number of random pairs u was estimated from.
	USamples int `json:"uSamples"`
	// Patterns is the number of distinct comparison patterns EM ran on.
	Patterns int `json:"patterns"`
	// Pairs is the number of candidate pairs the patterns stand for.
	Pairs int64 `json:"pairs"`
	// Iterations is the number of EM iterations run.
	Iterations int `json:"iterations"`
	// Converged says whether the largest parameter change fell below the
	// tolerance.
	Converged bool `json:"converged"`
	// MaxChange is the largest change in the last iteration: absolute for
	// m, relative for Lambda.
	MaxChange float64 `json:"maxChange"`
	// ExpectedMatches is Lambda times the pairs the mode allows: the number
	// of matching pairs the model believes in.
	ExpectedMatches float64 `json:"expectedMatches"`
	// Sessions describe the training sessions, when Settings.Training has
	// any; Iterations and Converged then describe the final estimation of
	// Lambda with m fixed.
	Sessions []SessionReport `json:"sessions"`
}

// SessionReport describes one EM training session.
type SessionReport struct {
	// Agree names the comparisons the session's pairs agree on (at their
	// strongest level); their m probabilities are not estimated in it.
	Agree []string `json:"agree"`
	// Pairs is the number of candidate pairs in the session.
	Pairs int64 `json:"pairs"`
	// Lambda is the match share among the session's pairs.
	Lambda float64 `json:"lambda"`
	// Iterations, Converged and MaxChange are as in TrainingReport.
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
	MaxChange  float64 `json:"maxChange"`
}

// Train estimates a model on the candidate pairs: u from random pairs (as
// Splink's estimate_u_using_random_sampling), then m and λ by EM on the
// candidate pairs aggregated by comparison pattern, with u held fixed.
// Non-candidate pairs are taken to be non-matches, so λ is the expected
// number of matches among the candidates over all the pairs the mode
// allows.
//
// Without Settings.Training, one EM runs over all candidate pairs and
// estimates m and λ together. With it, each session runs EM on the
// candidate pairs that agree on the session's comparisons and estimates m
// for the others (Splink's training sessions); each comparison's m is the
// mean over the sessions that estimate it, and λ is then estimated over all
// candidate pairs with m held fixed.
func (ix *Index) Train(c *Candidates) (*Model, TrainingReport, error) {
	var rep TrainingReport
	if c == nil || len(c.Patterns) == 0 {
		return nil, rep, errors.New("match: train: no candidate pairs")
	}
	total := ix.TotalPairs()
	if total < 1 {
		return nil, rep, errors.New("match: train: fewer than two records")
	}
	nc := len(ix.comps)
	sessions := make([][]bool, len(ix.set.Training))
	for s, names := range ix.set.Training {
		if len(names) == 0 {
			return nil, rep, fmt.Errorf("match: train: training session %d names no comparison", s)
		}
		sessions[s] = make([]bool, nc)
		for _, n := range names {
			k := ix.comparisonIndex(n)
			if k < 0 {
				return nil, rep, fmt.Errorf("match: train: training session %d: no comparison %q", s, n)
			}
			sessions[s][k] = true
		}
	}
	u, samples, err := ix.estimateU()
	if err != nil {
		return nil, rep, fmt.Errorf("match: train: %w", err)
	}
	rep.USamples = samples
	rep.Patterns = len(c.Patterns)

	e := &em{nc: nc, counts: make([]float64, len(c.Patterns)), lv: make([]uint8, len(c.Patterns)*nc),
		maxIter: ix.set.MaxIterations, tol: ix.set.Tolerance}
	for i, pc := range c.Patterns {
		rep.Pairs += pc.Count
		e.counts[i] = float64(pc.Count)
		for k := range ix.comps {
			e.lv[i*nc+k] = uint8(ix.levelOf(pc.Pattern, k))
		}
	}
	e.logU = make([][]float64, nc)
	for k := range u {
		e.logU[k] = make([]float64, len(u[k]))
		for l := 1; l < len(u[k]); l++ {
			e.logU[k][l] = math.Log(u[k][l])
		}
	}
	m := make([][]float64, nc)
	for k, cc := range ix.comps {
		m[k] = initialM(len(cc.Levels))
	}
	lam := 0.5 * float64(min(ix.n[0], max(ix.n[1], 1))) / total
	if ix.set.Mode == Dedupe {
		lam = 0.5 * float64(ix.n[0]) / total
	}
	lam = min(lam, 0.5)
	all := make([]int, len(c.Patterns))
	for i := range all {
		all[i] = i
	}
	none := make([]bool, nc)
	if len(sessions) == 0 {
		lam, rep.Iterations, rep.Converged, rep.MaxChange = e.run(all, m, lam, total, none, false)
	} else {
		sum := make([][]float64, nc)
		runs := make([]int, nc)
		for k := range sum {
			sum[k] = make([]float64, len(m[k]))
		}
		for s, held := range sessions {
			var sub []int
			var n float64
			for i := range c.Patterns {
				ok := true
				for k, h := range held {
					if h && e.lv[i*nc+k] != 1 {
						ok = false
						break
					}
				}
				if ok {
					sub = append(sub, i)
					n += e.counts[i]
				}
			}
			sr := SessionReport{Agree: ix.set.Training[s], Pairs: int64(n)}
			if len(sub) > 0 {
				ms := make([][]float64, nc)
				for k, cc := range ix.comps {
					ms[k] = initialM(len(cc.Levels))
				}
				sr.Lambda, sr.Iterations, sr.Converged, sr.MaxChange = e.run(sub, ms, 0.5, n, held, true)
				for k := range ms {
					if held[k] {
						continue
					}
					runs[k]++
					for l := range ms[k] {
						sum[k][l] += ms[k][l]
					}
				}
			}
			rep.Sessions = append(rep.Sessions, sr)
		}
		for k := range m {
			if runs[k] == 0 {
				return nil, rep, fmt.Errorf("match: train: no training session with pairs estimates comparison %q", ix.comps[k].name())
			}
			for l := range m[k] {
				m[k][l] = sum[k][l] / float64(runs[k])
			}
		}
		fixed := make([]bool, nc)
		for k := range fixed {
			fixed[k] = true
		}
		e.fixed = fixed
		lam, rep.Iterations, rep.Converged, rep.MaxChange = e.run(all, m, lam, total, none, false)
	}
	rep.ExpectedMatches = lam * total
	model := &Model{Lambda: lam, TFMinimum: ix.set.TFMinimum, AutoMerge: ix.set.AutoMerge, Review: ix.set.Review}
	for k := range ix.comps {
		cc := &ix.comps[k]
		cm := ComparisonModel{Name: cc.name(), Field: cc.Field, M: m[k], U: u[k], TFLevel: int(cc.tfLevel)}
		for l := 0; l < int(cc.radix); l++ {
			cm.Levels = append(cm.Levels, cc.levelLabel(l))
		}
		model.Comparisons = append(model.Comparisons, cm)
	}
	return model, rep, nil
}

// comparisonIndex returns the position of the named comparison, or -1.
func (ix *Index) comparisonIndex(name string) int {
	for k := range ix.comps {
		if ix.comps[k].name() == name {
			return k
		}
	}
	return -1
}

// em runs expectation–maximisation over aggregated comparison patterns.
type em struct {
	nc      int
	counts  []float64 // pairs per pattern
	lv      []uint8   // level of comparison k in pattern i at i*nc+k
	logU    [][]float64
	fixed   []bool // comparisons whose m is not updated (nil: none)
	maxIter int
	tol     float64
}

// run iterates over the patterns sub, updating m in place (except for
// comparisons in skip, which are also left out of the Bayes factor, and
// fixed ones) and returns λ = expected matches / total. local says that
// total is the session's own pair count.
func (e *em) run(sub []int, m [][]float64, lam, total float64, skip []bool, local bool) (float64, int, bool, float64) {
	nc := e.nc
	acc := make([][]float64, nc)
	logM := make([][]float64, nc)
	for k := range acc {
		acc[k] = make([]float64, len(m[k]))
		logM[k] = make([]float64, len(m[k]))
	}
	maxLam := 0.5
	if local {
		maxLam = 1 - 1e-9
	}
	change := math.Inf(1)
	for it := 1; it <= e.maxIter; it++ {
		for k := range m {
			for l := 1; l < len(m[k]); l++ {
				logM[k][l] = math.Log(m[k][l])
			}
			clear(acc[k])
		}
		prior := math.Log(lam / (1 - lam))
		sumW := 0.0
		for _, i := range sub {
			row := e.lv[i*nc : (i+1)*nc]
			s := prior
			for k, l := range row {
				if l != 0 && !skip[k] {
					s += logM[k][l] - e.logU[k][l]
				}
			}
			w := e.counts[i] / (1 + math.Exp(-s))
			sumW += w
			for k, l := range row {
				if l != 0 {
					acc[k][l] += w
				}
			}
		}
		newLam := min(max(sumW/total, 1e-300), maxLam)
		change = math.Abs(newLam-lam) / lam
		lam = newLam
		for k := range m {
			if skip[k] || (e.fixed != nil && e.fixed[k]) {
				continue
			}
			den := 0.0
			for l := 1; l < len(acc[k]); l++ {
				den += acc[k][l]
			}
			if den <= 0 {
				continue
			}
			for l := 1; l < len(acc[k]); l++ {
				v := max(acc[k][l]/den, 1e-9)
				change = max(change, math.Abs(v-m[k][l]))
				m[k][l] = v
			}
		}
		if change < e.tol {
			return lam, it, true, change
		}
		if it == e.maxIter {
			return lam, it, false, change
		}
	}
	return lam, 0, false, change
}

// initialM returns starting m probabilities for a comparison with n
// configured levels: most matches agree exactly, a few fuzzily, few not.
func initialM(n int) []float64 {
	m := make([]float64, n+2)
	if n == 1 {
		m[1], m[2] = 0.9, 0.1
		return m
	}
	m[1] = 0.85
	for l := 2; l <= n; l++ {
		m[l] = 0.1 / float64(n-1)
	}
	m[n+1] = 0.05
	return m
}

// estimateU compares random pairs (of the kind the mode allows) and returns
// the level frequencies per comparison, with a floor for levels never seen.
func (ix *Index) estimateU() ([][]float64, int, error) {
	var pool [2][]int32
	if ix.set.Mode == Link {
		for i, s := range ix.src {
			pool[s] = append(pool[s], int32(i))
		}
		if len(pool[0]) == 0 || len(pool[1]) == 0 {
			return nil, 0, errors.New("link mode needs records in both sources")
		}
	} else if len(ix.ids) < 2 {
		return nil, 0, errors.New("dedupe needs at least two records")
	}
	samples := ix.set.USamples
	if tp := ix.TotalPairs(); float64(samples) > tp {
		samples = int(tp)
	}
	workers := ix.set.Workers
	counts := make([][][]int64, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(ix.set.Seed, uint64(w)+1))
			cnt := make([][]int64, len(ix.comps))
			for k, cc := range ix.comps {
				cnt[k] = make([]int64, cc.radix)
			}
			n := samples / workers
			if w < samples%workers {
				n++
			}
			for s := 0; s < n; s++ {
				var a, b int32
				if ix.set.Mode == Link {
					a = pool[0][rng.IntN(len(pool[0]))]
					b = pool[1][rng.IntN(len(pool[1]))]
				} else {
					a = int32(rng.IntN(len(ix.ids)))
					b = int32(rng.IntN(len(ix.ids) - 1))
					if b >= a {
						b++
					}
				}
				p := ix.pattern(a, b)
				for k := range ix.comps {
					cnt[k][ix.levelOf(p, k)]++
				}
			}
			counts[w] = cnt
		}(w)
	}
	wg.Wait()
	u := make([][]float64, len(ix.comps))
	for k, cc := range ix.comps {
		tot := make([]int64, cc.radix)
		for w := range counts {
			for l, n := range counts[w][k] {
				tot[l] += n
			}
		}
		var present int64
		for l := 1; l < len(tot); l++ {
			present += tot[l]
		}
		u[k] = make([]float64, cc.radix)
		for l := 1; l < len(tot); l++ {
			if present == 0 {
				u[k][l] = 1 / float64(cc.radix-1)
				continue
			}
			u[k][l] = max(float64(tot[l]), 0.5) / float64(present)
		}
	}
	return u, samples, nil
}
