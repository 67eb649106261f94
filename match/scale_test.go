package match

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// scaleSettings are the settings of the synthetic runs, whose data have
// households (same surname and address, different people): the address
// parts are compared as one combined field, since compared apart they
// would count one shared address as four independent agreements, and EM
// trains in sessions on identifying fields so that households do not pass
// for the match class. The blocking rules are selective enough for a
// million records.
func scaleSettings() Settings {
	return Settings{
		Mode:     Dedupe,
		Combined: []CombinedField{{Name: "address", Fields: []string{"street_number", "address_1", "suburb", "postcode"}}},
		Comparisons: []Comparison{
			NameComparison("given_name").WithTF(),
			NameComparison("surname").WithTF(),
			DateComparison("date_of_birth"),
			DamerauAtThresholds("soc_sec_id", 1, 2),
			JaroWinklerAtThresholds("address", 0.95, 0.9).WithTF(),
		},
		Training: [][]string{{"date_of_birth"}, {"soc_sec_id"}, {"given_name", "surname"}},
		Blocking: []BlockingRule{
			On("given_name", "surname"),
			On("given_name", "surname").Unordered(),
			On("soc_sec_id"),
			Rule(Key("date_of_birth"), PrefixKey("surname", 2)),
			Rule(Key("date_of_birth"), PrefixKey("given_name", 2)),
			On("date_of_birth", "postcode"),
			On("postcode", "street_number", "address_1"),
		},
		Seed: 1,
	}
}

// scaleRun generates n synthetic records, runs the batch job and returns
// the pairwise and cluster metrics at the auto-merge threshold.
func scaleRun(t testing.TB, n int, set Settings) (pairs, clusters Metrics) {
	t.Helper()
	t0 := time.Now()
	recs := GenerateSynthetic(SyntheticConfig{Records: n, Seed: 7})
	gen := time.Since(t0)
	t1 := time.Now()
	ix, err := NewIndex(SyntheticSchema(), set)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.AddAll(0, recs); err != nil {
		t.Fatal(err)
	}
	load := time.Since(t1)
	res, err := ix.Run()
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(t1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	truth := TruePairs(ix, febrlEntity)
	pairs = EvaluatePairs(PairsAbove(res.Pairs, ix.Settings().AutoMerge), truth)
	clusters = EvaluatePairs(res.Clusters.Pairs(), truth)
	t.Logf("%d records: generate %v; index %v + run %v (block %v, train %v, score %v, cluster %v) = %v; heap %d MiB",
		n, gen.Round(time.Millisecond), load.Round(time.Millisecond), res.Timings.Total().Round(time.Millisecond),
		res.Timings.Block.Round(time.Millisecond), res.Timings.Train.Round(time.Millisecond),
		res.Timings.Score.Round(time.Millisecond), res.Timings.Cluster.Round(time.Millisecond),
		total.Round(time.Millisecond), ms.HeapAlloc>>20)
	t.Logf("blocking: %d candidate pairs (%.2g of all), %d true pairs", res.Blocking.Pairs, float64(res.Blocking.Pairs)/res.Blocking.TotalPairs, len(truth))
	for _, r := range res.Blocking.Rules {
		t.Logf("  %-42s %9d pairs, %7d blocks, largest %4d, skipped %d (%d pairs)", r.Rule, r.Pairs, r.Blocks, r.LargestBlock, r.SkippedBlocks, r.SkippedPairs)
	}
	t.Logf("training: %d u samples, %d patterns, %d iterations, converged %v, %.0f expected matches", res.Training.USamples, res.Training.Patterns, res.Training.Iterations, res.Training.Converged, res.Training.ExpectedMatches)
	for _, s := range res.Training.Sessions {
		t.Logf("  session %v: %d pairs, λ %.3f, %d iterations, converged %v", s.Agree, s.Pairs, s.Lambda, s.Iterations, s.Converged)
	}
	t.Logf("pairs p >= %.2f: %v", ix.Settings().AutoMerge, pairs)
	t.Logf("clusters:       %v", clusters)
	return pairs, clusters
}

// TestScale runs the synthetic pipeline on 20,000 records, or on
// MATCH_SCALE records for the scale check:
//
//	MATCH_SCALE=1000000 go test ./match -run TestScale -v
func TestScale(t *testing.T) {
	n := 20000
	if v := os.Getenv("MATCH_SCALE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	pairs, clusters := scaleRun(t, n, scaleSettings())
	for _, m := range []Metrics{pairs, clusters} {
		if m.F1 < 0.99 || m.Precision < 0.99 {
			t.Errorf("F1 %.4f, precision %.4f: want both >= 0.99", m.F1, m.Precision)
		}
	}
}

// TestHouseholdsNeedSessions shows why the scale settings train in
// sessions: with one EM over all candidate pairs, the many household pairs
// (same surname and address) are taken for matches.
func TestHouseholdsNeedSessions(t *testing.T) {
	set := scaleSettings()
	set.Training = nil
	pairs, _ := scaleRun(t, 20000, set)
	if pairs.Precision > 0.9 {
		t.Errorf("precision %.4f without sessions: households no longer fool one EM; is the test still useful?", pairs.Precision)
	}
}
