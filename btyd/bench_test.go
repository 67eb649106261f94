package btyd

import "testing"

// benchCustomers summarises CDNOW once, outside the benchmark timer.
func benchCustomers(b *testing.B) []Customer {
	b.Helper()
	cs := Customers(cdnowSummaries(b))
	b.ReportAllocs()
	b.ResetTimer()
	return cs
}

// BenchmarkFitBGNBD fits BG/NBD to CDNOW; the target is 50 ms.
func BenchmarkFitBGNBD(b *testing.B) {
	cs := benchCustomers(b)
	for b.Loop() {
		if _, _, err := FitBGNBD(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFitGammaGamma fits Gamma-Gamma to CDNOW's 946 repeat buyers.
func BenchmarkFitGammaGamma(b *testing.B) {
	cs := benchCustomers(b)
	for b.Loop() {
		if _, _, err := FitGammaGamma(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFitParetoNBD fits Pareto/NBD to CDNOW.
func BenchmarkFitParetoNBD(b *testing.B) {
	cs := benchCustomers(b)
	for b.Loop() {
		if _, _, err := FitParetoNBD(cs); err != nil {
			b.Fatal(err)
		}
	}
}
