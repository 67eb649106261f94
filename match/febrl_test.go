package match

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// febrlEntity reads the entity number from a Febrl record ID
// ("rec-12-org", "rec-12-dup-0" → "12").
func febrlEntity(id string) string {
	rest, ok := strings.CutPrefix(id, "rec-")
	if !ok {
		return ""
	}
	n, _, _ := strings.Cut(rest, "-")
	return n
}

func loadFebrl(t testing.TB, name string) (Schema, []Record) {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, recs, err := ReadCSV(f, "rec_id")
	if err != nil {
		t.Fatal(err)
	}
	return s, recs
}

// febrlSettings are the comparisons and blocking rules used on Febrl, close
// to Splink's febrl4 tutorial: names with Jaro–Winkler levels and TF, date
// of birth closeness, social security number with Damerau–Levenshtein,
// and the address parts compared apart (Febrl has no households, so they
// are nearly independent there). EM runs once over all candidate pairs.
func febrlSettings(mode Mode) Settings {
	return Settings{
		Mode: mode,
		Comparisons: []Comparison{
			NameComparison("given_name").WithTF(),
			NameComparison("surname").WithTF(),
			DateComparison("date_of_birth"),
			DamerauAtThresholds("soc_sec_id", 1, 2),
			LevenshteinAtThresholds("street_number", 1).WithTF(),
			LevenshteinAtThresholds("postcode", 1).WithTF(),
			JaroWinklerAtThresholds("address_1", 0.9, 0.7).WithTF(),
			JaroWinklerAtThresholds("suburb", 0.9, 0.7).WithTF(),
		},
		Blocking: []BlockingRule{
			On("given_name", "surname"),
			On("given_name", "surname").Unordered(),
			On("date_of_birth"),
			On("soc_sec_id"),
			On("state", "address_1"),
			On("street_number", "address_1"),
			On("postcode"),
		},
		Seed: 1,
	}
}

// febrlIndex loads Febrl files into an index: one file deduplicates, two
// link the first (source 0) with the second (source 1).
func febrlIndex(t testing.TB, files ...string) *Index {
	t.Helper()
	mode := Dedupe
	if len(files) == 2 {
		mode = Link
	}
	var ix *Index
	for src, f := range files {
		s, recs := loadFebrl(t, f)
		if ix == nil {
			var err error
			if ix, err = NewIndex(s, febrlSettings(mode)); err != nil {
				t.Fatal(err)
			}
		}
		if err := ix.AddAll(src, recs); err != nil {
			t.Fatal(err)
		}
	}
	return ix
}

// candidateRecall is the share of true pairs among the candidate pairs.
func candidateRecall(c *Candidates, truth [][2]int32) float64 {
	found := make([][2]int32, len(c.Pairs))
	for i, p := range c.Pairs {
		found[i] = [2]int32{p.A, p.B}
	}
	return EvaluatePairs(found, truth).Recall
}

// TestFebrl evaluates the batch run on Febrl: deduplication of febrl1 and
// febrl2, linkage of febrl4a with febrl4b, at the auto-merge threshold
// (0.99), pair by pair and by cluster.
func TestFebrl(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      []string
		truePairs  int
		minF1      float64
		minPrecise float64
	}{
		{"febrl1", []string{"dataset1.csv"}, 500, 0.99, 0.99},
		{"febrl2", []string{"dataset2.csv"}, 1934, 0.99, 0.99},
		{"febrl4", []string{"dataset4a.csv", "dataset4b.csv"}, 5000, 0.99, 0.995},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := febrlIndex(t, tc.files...)
			truth := TruePairs(ix, febrlEntity)
			if len(truth) != tc.truePairs {
				t.Fatalf("%d true pairs, want %d", len(truth), tc.truePairs)
			}
			cands := ix.CandidatePairs()
			res, err := ix.Run()
			if err != nil {
				t.Fatal(err)
			}
			th := ix.Settings().AutoMerge
			pairs := EvaluatePairs(PairsAbove(res.Pairs, th), truth)
			clusters := EvaluatePairs(res.Clusters.Pairs(), truth)
			t.Logf("%d records, %d candidate pairs (blocking recall %.4f), %d patterns, EM %d iterations (converged %v, max change %.2g), λ %.3g (%.0f expected matches), %v",
				ix.Len(), res.Blocking.Pairs, candidateRecall(cands, truth), res.Training.Patterns,
				res.Training.Iterations, res.Training.Converged, res.Training.MaxChange,
				res.Model.Lambda, res.Training.ExpectedMatches, res.Timings.Total())
			t.Logf("pairs p >= %.2f: %v", th, pairs)
			t.Logf("clusters:       %v", clusters)
			for _, m := range []Metrics{pairs, clusters} {
				if m.F1 < tc.minF1 || m.Precision < tc.minPrecise {
					t.Errorf("F1 %.4f (want >= %.3f), precision %.4f (want >= %.3f)", m.F1, tc.minF1, m.Precision, tc.minPrecise)
				}
			}
			if !res.Training.Converged {
				t.Errorf("EM did not converge: %+v", res.Training)
			}
		})
	}
}

// TestIncrementalFebrl holds records back from the batch run, then scores
// each against the index with the model estimated without it: the top
// match must be its true counterpart, merged with its evidence.
func TestIncrementalFebrl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"dedupe febrl1", []string{"dataset1.csv"}},
		{"link febrl4", []string{"dataset4a.csv", "dataset4b.csv"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var held []Record
			var ix *Index
			for src, f := range tc.files {
				s, recs := loadFebrl(t, f)
				if ix == nil {
					var err error
					if ix, err = NewIndex(s, febrlSettings(map[bool]Mode{false: Dedupe, true: Link}[len(tc.files) == 2])); err != nil {
						t.Fatal(err)
					}
				}
				if src == len(tc.files)-1 {
					// Hold back the first 20 duplicates of the last file.
					var keep []Record
					for _, r := range recs {
						if strings.Contains(r.ID, "-dup-") && len(held) < 20 {
							held = append(held, r)
						} else {
							keep = append(keep, r)
						}
					}
					recs = keep
				}
				if err := ix.AddAll(src, recs); err != nil {
					t.Fatal(err)
				}
			}
			res, err := ix.Run()
			if err != nil {
				t.Fatal(err)
			}
			// The model survives a round trip through JSON, as it would
			// between the batch job and the incremental service.
			blob, err := json.Marshal(res.Model)
			if err != nil {
				t.Fatal(err)
			}
			var model Model
			if err := json.Unmarshal(blob, &model); err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, r := range held {
				cands, err := ix.Candidates(r)
				if err != nil {
					t.Fatal(err)
				}
				matches, err := model.ScoreRecord(ix, r, model.Review)
				if err != nil {
					t.Fatal(err)
				}
				if len(matches) > 0 && febrlEntity(matches[0].B) == febrlEntity(r.ID) && matches[0].Decision == Merge {
					found++
					m := matches[0]
					if len(m.Comparisons) != len(ix.Settings().Comparisons) || m.A != r.ID {
						t.Errorf("explanation of %s incomplete: %+v", r.ID, m.Explanation)
					}
				} else {
					t.Logf("%s: %d candidates, matches %+v", r.ID, len(cands), matches)
				}
				pos, err := ix.Add(len(tc.files)-1, r)
				if err != nil {
					t.Fatal(err)
				}
				if ix.ID(pos) != r.ID {
					t.Fatalf("added %s at %d, found %s", r.ID, pos, ix.ID(pos))
				}
			}
			t.Logf("%d of %d held-back records merged with their counterpart", found, len(held))
			if found < len(held)-1 {
				t.Errorf("only %d of %d held-back records found their counterpart", found, len(held))
			}
		})
	}
}
