package match

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestEMRecoversParameters feeds EM the exact pattern counts of a known
// model (three comparisons, u known as it would be from random sampling,
// one comparison sometimes missing) and checks that it recovers λ and m.
func TestEMRecoversParameters(t *testing.T) {
	trueM := [][]float64{{0, .80, .15, .05}, {0, .70, .20, .10}, {0, .90, .05, .05}}
	u := [][]float64{{0, .010, .040, .950}, {0, .002, .020, .978}, {0, .050, .100, .850}}
	const lam, total, nullShare = 0.05, 1e6, 0.1
	e := &em{nc: 3, maxIter: 1000, tol: 1e-10}
	e.logU = make([][]float64, 3)
	for k := range u {
		e.logU[k] = make([]float64, 4)
		for l := 1; l < 4; l++ {
			e.logU[k][l] = math.Log(u[k][l])
		}
	}
	for l0 := 0; l0 < 4; l0++ {
		for l1 := 1; l1 < 4; l1++ {
			for l2 := 1; l2 < 4; l2++ {
				pm, pu := lam*trueM[1][l1]*trueM[2][l2], (1-lam)*u[1][l1]*u[2][l2]
				share := nullShare // comparison 0 is missing at random
				if l0 != 0 {
					pm, pu = pm*trueM[0][l0], pu*u[0][l0]
					share = 1 - nullShare
				}
				e.counts = append(e.counts, total*share*(pm+pu))
				e.lv = append(e.lv, uint8(l0), uint8(l1), uint8(l2))
			}
		}
	}
	all := make([]int, len(e.counts))
	for i := range all {
		all[i] = i
	}
	m := [][]float64{initialM(2), initialM(2), initialM(2)}
	gotLam, it, conv, change := e.run(all, m, 0.3, total, make([]bool, 3), false)
	t.Logf("λ %.6f after %d iterations (converged %v, max change %.2g)", gotLam, it, conv, change)
	if !conv || math.Abs(gotLam-lam) > 1e-4 {
		t.Errorf("λ = %.6f (converged %v), want %.2f", gotLam, conv, lam)
	}
	for k := range m {
		for l := 1; l < 4; l++ {
			if math.Abs(m[k][l]-trueM[k][l]) > 1e-3 {
				t.Errorf("m[%d][%d] = %.4f, want %.2f", k, l, m[k][l], trueM[k][l])
			}
		}
	}
}

// TestEstimateU checks u from random sampling: a field uniform over ten
// values agrees exactly in a tenth of random pairs.
func TestEstimateU(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ix, err := NewIndex(NewSchema("x"), Settings{
		Comparisons: []Comparison{ExactMatch("x")},
		Blocking:    []BlockingRule{On("x")},
		USamples:    200000,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if _, err := ix.Add(0, Record{ID: fmt.Sprint(i), Fields: []string{fmt.Sprint(r.IntN(10))}}); err != nil {
			t.Fatal(err)
		}
	}
	u, n, err := ix.estimateU()
	if err != nil {
		t.Fatal(err)
	}
	if n != 200000 || math.Abs(u[0][1]-0.1) > 0.005 || math.Abs(u[0][1]+u[0][2]-1) > 1e-9 {
		t.Errorf("u = %v from %d samples, want about [0 0.1 0.9]", u[0], n)
	}
}

// tfIndex has 1,000 records: 50 smiths, 2 zwickys, the rest unique.
func tfIndex(t *testing.T) *Index {
	ix, err := NewIndex(NewSchema("surname"), Settings{
		Comparisons: []Comparison{ExactMatch("surname").WithTF()},
		Blocking:    []BlockingRule{On("surname")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := 0; i < 1000; i++ {
		s := fmt.Sprintf("unique%d", i)
		switch {
		case i < 50:
			s = "smith"
		case i < 52:
			s = "zwicky"
		}
		recs = append(recs, Record{ID: fmt.Sprint(i), Fields: []string{s}})
	}
	if err := ix.AddAll(0, recs); err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestTFAdjustment(t *testing.T) {
	ix := tfIndex(t)
	model := &Model{Lambda: 0.001, AutoMerge: 0.99, Review: 0.5, Comparisons: []ComparisonModel{{
		Name: "surname", Field: "surname", Levels: []string{"null", "exact", "else"},
		M: []float64{0, 0.9, 0.1}, U: []float64{0, 0.01, 0.99}, TFLevel: 1,
	}}}
	smith, err := model.Explain(ix, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	zwicky, err := model.Explain(ix, 50, 51)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Explanation{smith, zwicky} {
		c := e.Comparisons[0]
		t.Logf("%s: level %s, weight %.3f + TF %.3f, total %.3f, p %.4f", c.ValueA, c.Level, c.Weight, c.TFAdjustment, e.Weight, e.Probability)
	}
	// tf(smith) = 0.05 and tf(zwicky) = 0.002 against u = 0.01.
	if got, want := smith.Comparisons[0].TFAdjustment, math.Log2(0.01/0.05); math.Abs(got-want) > 1e-9 {
		t.Errorf("smith TF adjustment %.4f, want %.4f", got, want)
	}
	if got, want := zwicky.Comparisons[0].TFAdjustment, math.Log2(0.01/0.002); math.Abs(got-want) > 1e-9 {
		t.Errorf("zwicky TF adjustment %.4f, want %.4f", got, want)
	}
	if smith.Weight >= zwicky.Weight {
		t.Errorf("agreeing on smith weighs %.3f, on zwicky %.3f: want less", smith.Weight, zwicky.Weight)
	}
	// Score applies the same adjustment as Explain.
	cands := ix.CandidatePairs()
	scored, err := model.Score(ix, cands, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := 50*49/2 + 1; len(scored) != want {
		t.Fatalf("%d scored pairs, want %d", len(scored), want)
	}
	for _, p := range scored {
		e, _ := model.Explain(ix, int(p.A), int(p.B))
		if math.Abs(e.Weight-p.Weight) > 1e-9 || e.Decision != p.Decision {
			t.Fatalf("pair %d-%d: Score %.6f %v, Explain %.6f %v", p.A, p.B, p.Weight, p.Decision, e.Weight, e.Decision)
		}
	}
	// A TF floor caps how much a rare value can gain.
	model.TFMinimum = 0.02
	zwicky, _ = model.Explain(ix, 50, 51)
	if got, want := zwicky.Comparisons[0].TFAdjustment, math.Log2(0.01/0.02); math.Abs(got-want) > 1e-9 {
		t.Errorf("floored zwicky TF adjustment %.4f, want %.4f", got, want)
	}
}

func TestCluster(t *testing.T) {
	pairs := []ScoredPair{
		{A: 0, B: 1, Probability: 0.995},
		{A: 1, B: 2, Probability: 0.999},
		{A: 3, B: 4, Probability: 0.5},
		{A: 4, B: 5, Probability: 0.999},
		{A: 5, B: 6, Probability: 0.99},
	}
	for _, tc := range []struct {
		threshold float64
		labels    []int32
		groups    [][]int32
		pairs     int
	}{
		{0.99, []int32{0, 0, 0, 1, 2, 2, 2, 3}, [][]int32{{0, 1, 2}, {4, 5, 6}}, 6},
		{0.996, []int32{0, 1, 1, 2, 3, 3, 4, 5}, [][]int32{{1, 2}, {4, 5}}, 2},
		{0.4, []int32{0, 0, 0, 1, 1, 1, 1, 2}, [][]int32{{0, 1, 2}, {3, 4, 5, 6}}, 9},
		{1, []int32{0, 1, 2, 3, 4, 5, 6, 7}, nil, 0},
	} {
		c := Cluster(8, pairs, tc.threshold)
		if !slices.Equal(c.Labels, tc.labels) {
			t.Errorf("threshold %g: labels %v, want %v", tc.threshold, c.Labels, tc.labels)
		}
		if c.Count != int(slices.Max(tc.labels))+1 {
			t.Errorf("threshold %g: count %d", tc.threshold, c.Count)
		}
		if g := c.Groups(); fmt.Sprint(g) != fmt.Sprint(tc.groups) {
			t.Errorf("threshold %g: groups %v, want %v", tc.threshold, g, tc.groups)
		}
		if n := len(c.Pairs()); n != tc.pairs {
			t.Errorf("threshold %g: %d pairs, want %d", tc.threshold, n, tc.pairs)
		}
	}
}

// TestBlocking compares candidate generation with brute force: every pair
// that shares a key of some rule, once, except in blocks over the bound.
func TestBlocking(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     Mode
		maxPairs int64
	}{
		{"dedupe", Dedupe, 0},
		{"dedupe bounded", Dedupe, 3},
		{"link", Link, 0},
		{"link bounded", Link, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			ix, err := NewIndex(NewSchema("a", "b"), Settings{
				Mode:          tc.mode,
				Comparisons:   []Comparison{ExactMatch("a"), ExactMatch("b")},
				Blocking:      []BlockingRule{On("a"), On("b")},
				MaxBlockPairs: tc.maxPairs,
			})
			if err != nil {
				t.Fatal(err)
			}
			val := func(n int) string {
				if v := r.IntN(n + 1); v < n {
					return fmt.Sprint(v)
				}
				return "" // missing
			}
			for i := 0; i < 300; i++ {
				src := 0
				if tc.mode == Link {
					src = i % 2
				}
				if _, err := ix.Add(src, Record{ID: fmt.Sprint(i), Fields: []string{val(40), val(25)}}); err != nil {
					t.Fatal(err)
				}
			}
			cands := ix.CandidatePairs()
			// Brute force, with block sizes for the bound.
			size := func(f int, v string) (n [2]int64) {
				for i := 0; i < ix.Len(); i++ {
					if ix.Value(i, f) == v {
						n[ix.Source(i)]++
					}
				}
				return n
			}
			ok := func(f int, v string) bool {
				if tc.maxPairs == 0 {
					return true
				}
				n := size(f, v)
				if tc.mode == Link {
					return n[0]*n[1] <= tc.maxPairs
				}
				return n[0]*(n[0]-1)/2 <= tc.maxPairs
			}
			want := map[[2]int32]bool{}
			for i := 0; i < ix.Len(); i++ {
				for j := i + 1; j < ix.Len(); j++ {
					a, b := i, j
					if tc.mode == Link {
						if ix.Source(i) == ix.Source(j) {
							continue
						}
						if ix.Source(a) == 1 {
							a, b = b, a
						}
					}
					for f := 0; f < 2; f++ {
						if v := ix.Value(i, f); v != "" && v == ix.Value(j, f) && ok(f, v) {
							want[[2]int32{int32(a), int32(b)}] = true
						}
					}
				}
			}
			got := map[[2]int32]bool{}
			for _, p := range cands.Pairs {
				k := [2]int32{p.A, p.B}
				if got[k] {
					t.Fatalf("pair %v generated twice", k)
				}
				got[k] = true
				if p.Pattern != ix.pattern(p.A, p.B) {
					t.Fatalf("pair %v: pattern %d, want %d", k, p.Pattern, ix.pattern(p.A, p.B))
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d candidate pairs, brute force %d", len(got), len(want))
			}
			for k := range want {
				if !got[k] {
					t.Errorf("pair %v missing", k)
					break
				}
			}
			var sum, skipped int64
			for _, rs := range cands.Stats.Rules {
				sum += rs.Pairs
				skipped += rs.SkippedPairs
			}
			var counted int64
			for _, pc := range cands.Patterns {
				counted += pc.Count
			}
			if sum != int64(len(got)) || counted != sum || cands.Stats.Pairs != sum {
				t.Errorf("rule pairs %d, pattern counts %d, stats %d, pairs %d", sum, counted, cands.Stats.Pairs, len(got))
			}
			if (tc.maxPairs > 0) != (skipped > 0) {
				t.Errorf("skipped %d pairs with bound %d", skipped, tc.maxPairs)
			}
			t.Logf("%d pairs, stats %+v", len(got), cands.Stats.Rules)
		})
	}
}

func TestBlockingKeys(t *testing.T) {
	for _, tc := range []struct {
		rule BlockingRule
		a, b [2]string
		want bool
	}{
		{On("given", "surname"), [2]string{"john", "smith"}, [2]string{"john", "smith"}, true},
		{On("given", "surname"), [2]string{"john", "smith"}, [2]string{"smith", "john"}, false},
		{On("given", "surname").Unordered(), [2]string{"john", "smith"}, [2]string{"smith", "john"}, true},
		{On("given", "surname").Unordered(), [2]string{"john", "smith"}, [2]string{"john", "smyth"}, false},
		{Rule(PrefixKey("surname", 3)), [2]string{"", "smith"}, [2]string{"", "smithers"}, true},
		{Rule(PrefixKey("surname", 3)), [2]string{"", "smith"}, [2]string{"", "smyth"}, false},
		{Rule(SuffixKey("surname", 2)), [2]string{"", "smith"}, [2]string{"", "keith"}, true},
		{Rule(SoundexKey("given")), [2]string{"robert", ""}, [2]string{"rupert", ""}, true},
		{Rule(SoundexKey("given")), [2]string{"robert", ""}, [2]string{"", ""}, false},
		{Rule(Key("given"), PrefixKey("surname", 1)), [2]string{"ann", "lee"}, [2]string{"ann", "long"}, true},
		{Rule(Key("given"), PrefixKey("surname", 1)), [2]string{"ann", ""}, [2]string{"ann", ""}, false},
	} {
		ix, err := NewIndex(NewSchema("given", "surname"), Settings{
			Comparisons: []Comparison{ExactMatch("given")},
			Blocking:    []BlockingRule{tc.rule},
		})
		if err != nil {
			t.Fatal(err)
		}
		ix.Add(0, Record{ID: "a", Fields: tc.a[:]})
		ix.Add(0, Record{ID: "b", Fields: tc.b[:]})
		got := len(ix.CandidatePairs().Pairs) == 1
		if got != tc.want {
			t.Errorf("%s on %v, %v: candidate %v, want %v", tc.rule, tc.a, tc.b, got, tc.want)
		}
		// A probe finds the same as the batch.
		probe, err := ix.Candidates(Record{ID: "c", Fields: tc.b[:]})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(probe, 0) != tc.want {
			t.Errorf("%s: probe %v finds %v, want record a: %v", tc.rule, tc.b, probe, tc.want)
		}
	}
}

func TestCombinedField(t *testing.T) {
	ix, err := NewIndex(NewSchema("no", "street", "town"), Settings{
		Combined:    []CombinedField{{Name: "address", Fields: []string{"no", "street", "town"}}},
		Comparisons: []Comparison{JaroWinklerAtThresholds("address", 0.9)},
		Blocking:    []BlockingRule{On("town")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ix.Add(0, Record{ID: "a", Fields: []string{"12", "Main  Street", "Bega"}})
	ix.AddAll(0, []Record{{ID: "b", Fields: []string{"12", "main streat", "bega"}}, {ID: "c", Fields: []string{"", "", ""}}, {ID: "d", Fields: []string{"", "Main street", "bega"}}})
	for i, want := range []string{"12 main street bega", "12 main streat bega", "", "main street bega"} {
		if got := ix.Value(i, 3); got != want {
			t.Errorf("record %d address %q, want %q", i, got, want)
		}
	}
	if l := ix.levelOf(ix.pattern(0, 1), 0); l != 2 {
		t.Errorf("address level %d, want 2 (jaro-winkler >= 0.9)", l)
	}
	if l := ix.levelOf(ix.pattern(0, 2), 0); l != 0 {
		t.Errorf("address level %d against a record with no address, want null", l)
	}
}

func TestExplainMatchesScore(t *testing.T) {
	ix := febrlIndex(t, "dataset1.csv")
	res, err := ix.Run()
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range res.Pairs {
		if i%10 != 0 {
			continue
		}
		e, err := res.Model.Explain(ix, int(p.A), int(p.B))
		if err != nil {
			t.Fatal(err)
		}
		sum := e.PriorWeight
		for _, c := range e.Comparisons {
			sum += c.Weight + c.TFAdjustment
			if c.Level == NullLabel && (c.Weight != 0 || c.TFAdjustment != 0) {
				t.Errorf("null level contributes %+v", c)
			}
		}
		if math.Abs(e.Weight-p.Weight) > 1e-9 || math.Abs(sum-e.Weight) > 1e-9 || e.Decision != p.Decision {
			t.Fatalf("pair %d-%d: Score weight %.6f (%v), Explain %.6f (%v), parts sum to %.6f", p.A, p.B, p.Weight, p.Decision, e.Weight, e.Decision, sum)
		}
		if e.A != ix.ID(int(p.A)) || e.B != ix.ID(int(p.B)) {
			t.Fatalf("explanation names %s, %s", e.A, e.B)
		}
	}
	p := res.Pairs[0]
	e, _ := res.Model.Explain(ix, int(p.A), int(p.B))
	var b strings.Builder
	for _, c := range e.Comparisons {
		fmt.Fprintf(&b, "\n  %-14s %-22s %-20q %-20q %+7.2f %+6.2f", c.Comparison, c.Level, c.ValueA, c.ValueB, c.Weight, c.TFAdjustment)
	}
	t.Logf("%s vs %s: prior %.2f, weight %.2f, p %.6f, %v%s", e.A, e.B, e.PriorWeight, e.Weight, e.Probability, e.Decision, b.String())
}

func TestReadCSV(t *testing.T) {
	s, recs, err := ReadCSV(strings.NewReader("rec_id, postcode, name\nr1, 0420, ann lee\nr2, , bob"), "rec_id")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Fields, []string{"postcode", "name"}) || len(recs) != 2 {
		t.Fatalf("schema %v, %d records", s.Fields, len(recs))
	}
	if recs[0].ID != "r1" || !slices.Equal(recs[0].Fields, []string{"0420", "ann lee"}) || !slices.Equal(recs[1].Fields, []string{"", "bob"}) {
		t.Errorf("records %+v", recs)
	}
	if _, _, err := ReadCSV(strings.NewReader("id, a\n1, 2"), "rec_id"); err == nil {
		t.Error("missing ID column accepted")
	}
	if _, _, err := ReadCSV(strings.NewReader("rec_id, a\n1, 2, 3"), "rec_id"); err == nil {
		t.Error("ragged row accepted")
	}
}

func TestNewIndexErrors(t *testing.T) {
	s := NewSchema("a", "b")
	ok := Settings{Comparisons: []Comparison{ExactMatch("a")}, Blocking: []BlockingRule{On("b")}}
	for _, tc := range []struct {
		name   string
		schema Schema
		edit   func(*Settings)
	}{
		{"empty schema", Schema{}, func(*Settings) {}},
		{"duplicate field", NewSchema("a", "a"), func(*Settings) {}},
		{"no comparisons", s, func(x *Settings) { x.Comparisons = nil }},
		{"no blocking", s, func(x *Settings) { x.Blocking = nil }},
		{"unknown comparison field", s, func(x *Settings) { x.Comparisons = []Comparison{ExactMatch("c")} }},
		{"duplicate comparison", s, func(x *Settings) { x.Comparisons = append(x.Comparisons, ExactMatch("a")) }},
		{"unknown blocking field", s, func(x *Settings) { x.Blocking = []BlockingRule{On("c")} }},
		{"empty rule", s, func(x *Settings) { x.Blocking = []BlockingRule{{}} }},
		{"zero prefix", s, func(x *Settings) { x.Blocking = []BlockingRule{Rule(PrefixKey("a", 0))} }},
		{"thresholds", s, func(x *Settings) { x.Review, x.AutoMerge = 0.9, 0.8 }},
		{"mode", s, func(x *Settings) { x.Mode = 7 }},
		{"combined clash", s, func(x *Settings) { x.Combined = []CombinedField{{Name: "a", Fields: []string{"b"}}} }},
		{"combined part", s, func(x *Settings) { x.Combined = []CombinedField{{Name: "c", Fields: []string{"z"}}} }},
	} {
		set := ok
		tc.edit(&set)
		if _, err := NewIndex(tc.schema, set); err == nil {
			t.Errorf("%s: NewIndex succeeded", tc.name)
		}
	}
	ix, err := NewIndex(s, ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(0, Record{ID: "x", Fields: []string{"1"}}); err == nil {
		t.Error("short record accepted")
	}
	if _, err := ix.Add(1, Record{ID: "x", Fields: []string{"1", "2"}}); err == nil {
		t.Error("source 1 accepted in Dedupe mode")
	}
	if _, _, err := ix.Train(ix.CandidatePairs()); err == nil {
		t.Error("training without pairs succeeded")
	}
	ix.Add(0, Record{ID: "x", Fields: []string{"1", "2"}})
	ix.Add(0, Record{ID: "y", Fields: []string{"1", "2"}})
	set := ok
	set.Training = [][]string{{"nope"}}
	ix2, _ := NewIndex(s, set)
	ix2.Add(0, Record{ID: "x", Fields: []string{"1", "2"}})
	ix2.Add(0, Record{ID: "y", Fields: []string{"1", "2"}})
	if _, _, err := ix2.Train(ix2.CandidatePairs()); err == nil {
		t.Error("training session on an unknown comparison accepted")
	}
	model, _, err := ix.Train(ix.CandidatePairs())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIndex(s, Settings{Comparisons: []Comparison{ExactMatch("b")}, Blocking: []BlockingRule{On("b")}})
	if _, err := model.ScoreRecord(other, Record{ID: "z", Fields: []string{"1", "2"}}, 0); err == nil {
		t.Error("model used on an index with other comparisons")
	}
}

func TestGenerateSynthetic(t *testing.T) {
	a := GenerateSynthetic(SyntheticConfig{Records: 2000, Seed: 1})
	b := GenerateSynthetic(SyntheticConfig{Records: 2000, Seed: 1})
	if len(a) != 2000 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%d records, repeatable %v", len(a), fmt.Sprint(a) == fmt.Sprint(b))
	}
	dups, perOrg := 0, map[string]int{}
	for _, r := range a {
		if len(r.Fields) != len(SyntheticSchema().Fields) || febrlEntity(r.ID) == "" {
			t.Fatalf("bad record %+v", r)
		}
		if strings.Contains(r.ID, "-dup-") {
			dups++
			perOrg[febrlEntity(r.ID)]++
		}
	}
	if dups != 600 || slices.Max(mapValues(perOrg)) > 5 {
		t.Errorf("%d duplicates (want 600), at most %d per original", dups, slices.Max(mapValues(perOrg)))
	}
	if c := GenerateSynthetic(SyntheticConfig{Records: 2000, Seed: 2}); fmt.Sprint(c) == fmt.Sprint(a) {
		t.Error("seed ignored")
	}
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestEvaluatePairs(t *testing.T) {
	m := EvaluatePairs([][2]int32{{1, 2}, {4, 3}, {5, 6}, {2, 1}}, [][2]int32{{1, 2}, {3, 4}, {7, 8}, {9, 10}})
	if m.TruePositives != 2 || m.FalsePositives != 1 || m.FalseNegatives != 2 ||
		math.Abs(m.Precision-2.0/3) > 1e-12 || m.Recall != 0.5 || math.Abs(m.F1-4.0/7) > 1e-12 {
		t.Errorf("%+v", m)
	}
}
