package match

import (
	"testing"
	"time"
)

// BenchmarkFebrl4 measures the febrl4 linkage end to end: read both CSV
// files, index, block, estimate u and m by EM, score and cluster.
//
//	go test ./match -run XXX -bench Febrl4 -count 5
func BenchmarkFebrl4(b *testing.B) {
	var f1 float64
	for i := 0; i < b.N; i++ {
		ix := febrlIndex(b, "dataset4a.csv", "dataset4b.csv")
		res, err := ix.Run()
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.StopTimer()
			f1 = EvaluatePairs(PairsAbove(res.Pairs, ix.Settings().AutoMerge), TruePairs(ix, febrlEntity)).F1
			b.StartTimer()
		}
	}
	b.ReportMetric(f1, "F1")
}

// BenchmarkScale1M measures the batch job on one million synthetic records
// (generated outside the timer): index, block, EM, score, cluster. It does
// not run under -short, and like every benchmark not in a plain go test.
//
//	go test ./match -run XXX -bench Scale1M -benchtime 1x -v
func BenchmarkScale1M(b *testing.B) {
	if testing.Short() {
		b.Skip("one million records: not with -short")
	}
	b.StopTimer()
	t0 := time.Now()
	recs := GenerateSynthetic(SyntheticConfig{Records: 1_000_000, Seed: 7})
	b.Logf("generated %d records in %v", len(recs), time.Since(t0).Round(time.Millisecond))
	var pm, cm Metrics
	for i := 0; i < b.N; i++ {
		b.StartTimer()
		ix, err := NewIndex(SyntheticSchema(), scaleSettings())
		if err != nil {
			b.Fatal(err)
		}
		if err := ix.AddAll(0, recs); err != nil {
			b.Fatal(err)
		}
		res, err := ix.Run()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		truth := TruePairs(ix, febrlEntity)
		pm = EvaluatePairs(PairsAbove(res.Pairs, ix.Settings().AutoMerge), truth)
		cm = EvaluatePairs(res.Clusters.Pairs(), truth)
		b.Logf("candidate pairs %d, run %+v; pairs %v; clusters %v", res.Blocking.Pairs, res.Timings, pm, cm)
	}
	b.ReportMetric(pm.F1, "pairF1")
	b.ReportMetric(cm.F1, "clusterF1")
}
